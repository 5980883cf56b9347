//! The model and skill catalog: Oz's lists, cached for a while, against which `--model`
//! and `--skill` are checked before a run is recorded.

use crate::command::{CommandError, RunOptions, suggest};
use crate::oz::{ListAgentsQuery, OzClient, OzError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long model and skill lists are trusted.
const CATALOG_TTL: Duration = Duration::from_secs(600);

/// Cached model ids and skill specs, for validating `--model` and `--skill`.
#[derive(Default)]
pub struct Catalog {
    models: Mutex<Option<(Instant, Vec<String>)>>,
    skills: Mutex<Option<(Instant, Vec<String>)>>,
}

impl Catalog {
    /// Checks `--model` and `--skill` against Oz's lists when they can be fetched.
    pub async fn validate(&self, oz: &OzClient, options: &RunOptions) -> Result<(), CommandError> {
        if let Some(model) = &options.model
            && let Some(known) = self
                .known(&self.models, || async {
                    Ok(oz
                        .list_models()
                        .await?
                        .models
                        .into_iter()
                        .map(|m| m.id)
                        .collect())
                })
                .await
            && !known.contains(model)
        {
            return Err(CommandError::UnknownModel {
                given: model.clone(),
                suggestion: suggest(model, known.iter().map(String::as_str)),
            });
        }
        if let Some(skill) = &options.skill
            && let Some(known) = self
                .known(&self.skills, || async {
                    let agents = oz.list_agents(&ListAgentsQuery::default()).await?;
                    Ok(agents
                        .agents
                        .iter()
                        .flat_map(|a| {
                            a.variants
                                .iter()
                                .map(|v| v.skill_spec())
                                .chain([a.name.clone()])
                        })
                        .collect())
                })
                .await
            && !known.contains(skill)
        {
            return Err(CommandError::UnknownSkill {
                given: skill.clone(),
                suggestion: suggest(skill, known.iter().map(String::as_str)),
            });
        }
        Ok(())
    }

    /// A cached list, refreshed when stale; `None` when it cannot be had (then
    /// anything is accepted and Oz has the last word).
    async fn known<F, Fut>(
        &self,
        slot: &Mutex<Option<(Instant, Vec<String>)>>,
        fetch: F,
    ) -> Option<Vec<String>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<String>, OzError>>,
    {
        {
            let cached = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, list)) = cached.as_ref()
                && at.elapsed() < CATALOG_TTL
            {
                return Some(list.clone());
            }
        }
        match fetch().await {
            Ok(list) => {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), list.clone()));
                Some(list)
            }
            Err(error) => {
                tracing::warn!(%error, "could not fetch a list to validate a command; accepting it");
                None
            }
        }
    }
}
