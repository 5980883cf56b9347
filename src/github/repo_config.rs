//! A repository's settings: the server's `[github.defaults]` and `[github.repos."o/n"]`
//! tables, and the repository's own `.github/ozbridge.toml` for the keys the server lets
//! it set (`repo_overrides`), merged into the [`RepoRules`] a command is judged by.

use crate::oz::types::{HarnessKind, PublicAccess};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Where a repository's own settings live, on its default branch.
pub const REPO_FILE: &str = ".github/ozbridge.toml";

/// What happens to a command from someone without write access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outsiders {
    /// One polite refusal.
    Refuse,
    /// Kept until someone with write access answers `/oz approve` (or `/oz deny`).
    #[default]
    Approval,
}

/// The triggers beyond a `/oz` comment, each on or off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// `/oz` at a line start of a submitted review's body (default on).
    pub review_body: Option<bool>,
    /// `/oz` in the opening body of an issue or pull request (default off).
    pub opening_body: Option<bool>,
    /// A label whose addition starts a run on the issue or pull request (default none).
    pub label: Option<String>,
}

/// Settings of one repository; every key is optional and an unset one falls through
/// (repository file, then the server's table for the repository, then its defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSettings {
    pub environment_id: Option<String>,
    pub model_id: Option<String>,
    /// A skill spec given to every run.
    pub skill: Option<String>,
    /// `oz`, `claude` or `gemini`.
    pub harness: Option<HarnessKind>,
    /// `viewer` or `editor`: people in the repository's threads may open runs'
    /// sessions by link without being on the Warp team.
    pub session_access: Option<PublicAccess>,
    /// Tell the requester in a new comment when a run ends (default true: GitHub
    /// notifies on new comments, not on the status comment's edits).
    pub notify_on_finish: Option<bool>,
    pub triggers: Option<Triggers>,
    /// `refuse` or `approval` (the default).
    pub outsiders: Option<Outsiders>,
    /// More logins or ids that may always start runs here.
    pub allow_users: Option<Vec<String>>,
    /// More logins or ids that may never start runs here.
    pub deny_users: Option<Vec<String>>,
}

/// The keys a repository file may set unless the server says otherwise: those a person
/// with write access could choose per command anyway, or that only narrow access.
pub const DEFAULT_OVERRIDES: [&str; 7] = [
    "environment_id",
    "model_id",
    "skill",
    "harness",
    "notify_on_finish",
    "triggers",
    "deny_users",
];

/// Every key of [`RepoSettings`].
pub const KEYS: [&str; 10] = [
    "environment_id",
    "model_id",
    "skill",
    "harness",
    "session_access",
    "notify_on_finish",
    "triggers",
    "outsiders",
    "allow_users",
    "deny_users",
];

impl RepoSettings {
    /// `self`, with what it leaves unset taken from `under`.
    fn over(self, under: &RepoSettings) -> RepoSettings {
        let triggers = match (self.triggers, &under.triggers) {
            (Some(top), Some(low)) => Some(Triggers {
                review_body: top.review_body.or(low.review_body),
                opening_body: top.opening_body.or(low.opening_body),
                label: top.label.or_else(|| low.label.clone()),
            }),
            (top, low) => top.or_else(|| low.clone()),
        };
        RepoSettings {
            environment_id: self.environment_id.or_else(|| under.environment_id.clone()),
            model_id: self.model_id.or_else(|| under.model_id.clone()),
            skill: self.skill.or_else(|| under.skill.clone()),
            harness: self.harness.or(under.harness),
            session_access: self.session_access.or(under.session_access),
            notify_on_finish: self.notify_on_finish.or(under.notify_on_finish),
            triggers,
            outsiders: self.outsiders.or(under.outsiders),
            allow_users: join(self.allow_users, &under.allow_users),
            deny_users: join(self.deny_users, &under.deny_users),
        }
    }
}

/// Both lists: a file's users are added to the server's, never put in their place.
fn join(top: Option<Vec<String>>, under: &Option<Vec<String>>) -> Option<Vec<String>> {
    match (top, under) {
        (None, low) => low.clone(),
        (Some(top), None) => Some(top),
        (Some(mut top), Some(low)) => {
            top.extend(low.iter().cloned());
            Some(top)
        }
    }
}

/// The server's repository settings: defaults, per-repository tables, and the keys a
/// repository's own file may set.
#[derive(Debug, Clone, Default)]
pub struct GithubRepos {
    pub defaults: RepoSettings,
    /// Keyed by lower-case `owner/name`.
    pub repos: BTreeMap<String, RepoSettings>,
    /// `repo_overrides`: the keys `.github/ozbridge.toml` may set.
    pub overrides: Vec<String>,
}

impl GithubRepos {
    /// The server's settings for `repo` (its table over the defaults).
    pub fn server_settings(&self, repo: &str) -> RepoSettings {
        match self.repos.get(&repo.to_ascii_lowercase()) {
            Some(table) => table.clone().over(&self.defaults),
            None => self.defaults.clone(),
        }
    }

    /// The rules of `repo` with its file's settings (already parsed) applied.
    pub fn rules(&self, repo: &str, file: Option<&RepoFile>) -> RepoRules {
        let server = self.server_settings(repo);
        let (merged, ignored) = match file {
            Some(file) => (file.settings.clone().over(&server), file.ignored.clone()),
            None => (server, Vec::new()),
        };
        RepoRules::from_settings(merged, ignored)
    }

    /// True when a label of this name, added in `repo`, may start a run: the server's
    /// label for the repository, or any label when the repository's file may name one
    /// (its file is read then, in the pipeline).
    pub fn label_may_trigger(&self, repo: &str, label: &str) -> bool {
        let server = self.server_settings(repo);
        let named = server
            .triggers
            .and_then(|t| t.label)
            .is_some_and(|name| name.eq_ignore_ascii_case(label));
        named || self.overrides.iter().any(|k| k == "triggers")
    }

    /// Reads a repository's file: its settings for the keys it may set, the other keys
    /// it sets (ignored), or why it cannot be read (naming the line).
    pub fn parse_file(&self, text: &str) -> Result<RepoFile, FileProblem> {
        let mut settings: RepoSettings =
            toml::from_str(text).map_err(|e| FileProblem::of(text, &e))?;
        let mut ignored = Vec::new();
        let mut drop_unless_allowed = |key: &str, set: bool| {
            let allowed = self.overrides.iter().any(|k| k == key);
            if set && !allowed {
                ignored.push(key.to_owned());
            }
            !allowed
        };
        macro_rules! gate {
            ($($field:ident),*) => {$(
                if drop_unless_allowed(stringify!($field), settings.$field.is_some()) {
                    settings.$field = None;
                }
            )*};
        }
        gate!(
            environment_id,
            model_id,
            skill,
            harness,
            session_access,
            notify_on_finish,
            triggers,
            outsiders,
            allow_users,
            deny_users
        );
        Ok(RepoFile { settings, ignored })
    }
}

/// A repository's file as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoFile {
    /// The keys it may set.
    pub settings: RepoSettings,
    /// Keys it sets that the server does not let it set.
    pub ignored: Vec<String>,
}

/// Why a repository's file cannot be used: shown to the repository's people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub line: Option<usize>,
    pub problem: String,
}

impl FileProblem {
    fn of(text: &str, error: &toml::de::Error) -> Self {
        let line = error
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        Self {
            line,
            problem: error.message().trim().to_owned(),
        }
    }
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "`{REPO_FILE}` line {line}: {}", self.problem),
            None => write!(f, "`{REPO_FILE}`: {}", self.problem),
        }
    }
}

/// What a repository's settings come to, every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRules {
    pub environment_id: Option<String>,
    pub model_id: Option<String>,
    pub skill: Option<String>,
    pub harness: Option<HarnessKind>,
    pub session_access: Option<PublicAccess>,
    pub notify_on_finish: bool,
    pub review_body: bool,
    pub opening_body: bool,
    pub label: Option<String>,
    pub outsiders: Outsiders,
    pub allow_users: Vec<String>,
    pub deny_users: Vec<String>,
    /// Keys the repository's file sets that the server does not let it set.
    pub ignored: Vec<String>,
}

impl RepoRules {
    fn from_settings(s: RepoSettings, ignored: Vec<String>) -> Self {
        let triggers = s.triggers.unwrap_or_default();
        Self {
            environment_id: s.environment_id,
            model_id: s.model_id,
            skill: s.skill,
            harness: s.harness,
            session_access: s.session_access,
            notify_on_finish: s.notify_on_finish.unwrap_or(true),
            review_body: triggers.review_body.unwrap_or(true),
            opening_body: triggers.opening_body.unwrap_or(false),
            label: triggers.label.filter(|l| !l.trim().is_empty()),
            outsiders: s.outsiders.unwrap_or_default(),
            allow_users: s.allow_users.unwrap_or_default(),
            deny_users: s.deny_users.unwrap_or_default(),
            ignored,
        }
    }

    /// The rules as lines of text (`check-config --online --repo`, `/oz status`).
    pub fn describe(&self) -> Vec<String> {
        let or_default =
            |v: &Option<String>| v.clone().unwrap_or_else(|| "(service default)".into());
        let mut lines = vec![
            format!("environment_id: {}", or_default(&self.environment_id)),
            format!("model_id: {}", or_default(&self.model_id)),
            format!("skill: {}", or_default(&self.skill)),
            format!(
                "harness: {}",
                self.harness
                    .map(|h| h.name().to_owned())
                    .unwrap_or_else(|| "(service default)".into())
            ),
            format!(
                "session_access: {}",
                self.session_access
                    .map(|a| format!("{a:?}").to_ascii_lowercase())
                    .unwrap_or_else(|| "(Warp team only)".into())
            ),
            format!("notify_on_finish: {}", self.notify_on_finish),
            format!("triggers.review_body: {}", self.review_body),
            format!("triggers.opening_body: {}", self.opening_body),
            format!(
                "triggers.label: {}",
                self.label.clone().unwrap_or_else(|| "(off)".into())
            ),
            format!("outsiders: {:?}", self.outsiders).to_ascii_lowercase(),
            format!("allow_users: {}", self.allow_users.join(", ")),
            format!("deny_users: {}", self.deny_users.join(", ")),
        ];
        if !self.ignored.is_empty() {
            lines.push(format!(
                "ignored (not in repo_overrides): {}",
                self.ignored.join(", ")
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repos(overrides: &[&str]) -> GithubRepos {
        GithubRepos {
            defaults: RepoSettings {
                model_id: Some("gpt-5".into()),
                deny_users: Some(vec!["spammer".into()]),
                ..RepoSettings::default()
            },
            repos: BTreeMap::from([(
                "acme/widgets".to_owned(),
                RepoSettings {
                    environment_id: Some("env-server".into()),
                    ..RepoSettings::default()
                },
            )]),
            overrides: overrides.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    #[test]
    fn the_file_beats_the_repository_table_which_beats_the_defaults() {
        let repos = repos(&DEFAULT_OVERRIDES);
        let file = repos
            .parse_file("environment_id = \"env-file\"\ndeny_users = [\"troll\"]\n[triggers]\nlabel = \"oz\"\n")
            .unwrap();
        let rules = repos.rules("Acme/Widgets", Some(&file));
        assert_eq!(rules.environment_id.as_deref(), Some("env-file"));
        assert_eq!(rules.model_id.as_deref(), Some("gpt-5"));
        assert_eq!(rules.label.as_deref(), Some("oz"));
        assert_eq!(rules.deny_users, ["troll", "spammer"]);
        assert!(rules.review_body && !rules.opening_body && rules.notify_on_finish);
        assert_eq!(rules.outsiders, Outsiders::Approval);
        let plain = repos.rules("acme/widgets", None);
        assert_eq!(plain.environment_id.as_deref(), Some("env-server"));
        assert_eq!(plain.label, None);
    }

    #[test]
    fn keys_the_server_does_not_allow_are_ignored_and_named() {
        let repos = repos(&["model_id"]);
        let file = repos
            .parse_file(
                "model_id = \"claude\"\nallow_users = [\"mallory\"]\noutsiders = \"refuse\"\n",
            )
            .unwrap();
        assert_eq!(file.ignored, ["outsiders", "allow_users"]);
        let rules = repos.rules("acme/widgets", Some(&file));
        assert_eq!(rules.model_id.as_deref(), Some("claude"));
        assert!(rules.allow_users.is_empty());
        assert!(
            rules
                .describe()
                .iter()
                .any(|l| l.contains("ignored") && l.contains("allow_users"))
        );
    }

    #[test]
    fn problems_name_their_line() {
        let repos = repos(&DEFAULT_OVERRIDES);
        let broken = repos
            .parse_file("model_id = \"a\"\nharness = \"codex\"\n")
            .unwrap_err();
        assert_eq!(broken.line, Some(2), "{broken}");
        assert!(
            broken
                .to_string()
                .starts_with("`.github/ozbridge.toml` line 2:"),
            "{broken}"
        );
        let unknown = repos
            .parse_file("model_id = \"a\"\n\nmodle = \"b\"\n")
            .unwrap_err();
        assert_eq!(unknown.line, Some(3), "{unknown}");
        assert!(unknown.problem.contains("modle"), "{unknown}");
        let syntax = repos.parse_file("model_id = \n").unwrap_err();
        assert_eq!(syntax.line, Some(1), "{syntax}");
    }

    #[test]
    fn labels_trigger_only_where_a_label_may_be_named() {
        let mut repos = repos(&[]);
        assert!(!repos.label_may_trigger("acme/widgets", "oz"));
        repos.defaults.triggers = Some(Triggers {
            label: Some("oz".into()),
            ..Triggers::default()
        });
        assert!(repos.label_may_trigger("acme/widgets", "OZ"));
        assert!(!repos.label_may_trigger("acme/widgets", "bug"));
        repos.overrides.push("triggers".into());
        assert!(repos.label_may_trigger("acme/widgets", "bug"));
    }
}
