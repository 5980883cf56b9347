//! Building the Oz run request from a command: the surface's prompt template filled with
//! its values (every piece of user text bounded and fenced as untrusted data), the
//! reference line, the title, label, environment, model and skill.

use crate::command::RunOptions;
#[cfg(test)]
use crate::config::templates::check_template;
use crate::domain::InboxCommand;
use crate::ids::{ConversationId, RunRef};
use crate::oz::types::{
    AgentConfig, Harness, HarnessKind, PublicAccess, RunAgentRequest, SessionSharing,
};
use crate::surface::{PromptParts, Surface};
use crate::text::truncate;

/// Bounds of the user text placed in a prompt and its title.
pub const MAX_TITLE_CHARS: usize = 256;
pub const MAX_COMMAND_CHARS: usize = 4_000;
pub const MAX_BODY_CHARS: usize = 8_000;

/// Keeps user text from closing the fence it is placed in.
pub fn fence_safe(text: &str) -> String {
    text.replace("</untrusted", "<\\/untrusted")
}

/// User text for a prompt: at most `max` characters, unable to close its fence.
pub fn untrusted(text: &str, max: usize) -> String {
    fence_safe(&truncate(text, max))
}

/// The `{command}` value: the request the user wrote.
pub fn request_value(request: &str) -> String {
    untrusted(request, MAX_COMMAND_CHARS)
}

/// The line that lets a run be found again after a crash (searched with `q`).
pub fn reference_line(run: &RunRef) -> String {
    format!("{REFERENCE_PREFIX}{run})")
}

const REFERENCE_PREFIX: &str = "(ozbridge reference: ";

/// The run reference written into a prompt by [`reference_line`], if there is one (the
/// last, so that text quoted from elsewhere cannot stand in for it).
pub fn reference_in(prompt: &str) -> Option<RunRef> {
    let start = prompt.rfind(REFERENCE_PREFIX)? + REFERENCE_PREFIX.len();
    let rest = &prompt[start..];
    let end = rest.find(')')?;
    let id = &rest[..end];
    (!id.is_empty() && id.len() <= 64).then(|| RunRef(id.to_owned()))
}

/// Renders a prompt: the template's placeholders filled from `parts`, then the
/// reference line.
pub fn render_prompt(parts: &PromptParts, run: &RunRef) -> String {
    let template = parts.template.as_str();
    let values = &parts.values;
    // One pass over the template, so a value that contains `{title}` is never expanded.
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}').and_then(|end| {
            values
                .iter()
                .find(|(k, _)| *k == &after[..end])
                .map(|(_, v)| (end, v))
        }) {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.push_str("\n\n");
    out.push_str(&reference_line(run));
    out
}

/// The service-wide run settings a request falls back to.
#[derive(Debug, Clone, Default)]
pub struct RunDefaults {
    /// The label every run carries (`config.name`), by which the tracker lists them.
    pub run_label: String,
    pub environment_id: Option<String>,
    pub model_id: Option<String>,
    pub harness: Option<HarnessKind>,
    pub session_access: Option<PublicAccess>,
}

/// The Oz request for `command`: options beat the place's settings (repository or
/// channel), which beat the service's defaults.
pub fn build_request(
    surface: &dyn Surface,
    defaults: &RunDefaults,
    command: &InboxCommand,
    request: &str,
    options: &RunOptions,
    run: &RunRef,
    conversation_id: Option<ConversationId>,
) -> RunAgentRequest {
    let place = surface.place_defaults(&command.origin);
    let parts = surface.prompt(command, request);
    RunAgentRequest {
        prompt: Some(render_prompt(&parts, run)),
        skill: options.skill.clone().or(place.skill),
        title: Some(truncate(&parts.title, MAX_TITLE_CHARS)),
        conversation_id,
        config: Some(AgentConfig {
            name: Some(defaults.run_label.clone()),
            environment_id: options
                .environment
                .clone()
                .or(place.environment_id)
                .or_else(|| defaults.environment_id.clone()),
            model_id: options
                .model
                .clone()
                .or(place.model_id)
                .or_else(|| defaults.model_id.clone()),
            harness: options
                .harness
                .or(place.harness)
                .or(defaults.harness)
                .map(|kind| Harness { kind }),
            session_sharing: place
                .session_access
                .or(defaults.session_access)
                .map(|access| SessionSharing {
                    public_access: Some(access),
                }),
            ..AgentConfig::default()
        }),
        ..RunAgentRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_fills_each_placeholder_once_and_ends_with_the_reference() {
        let parts = PromptParts {
            template: "On {title}: {command} {nope} {".into(),
            values: vec![
                ("title", "Login {command} flaky".into()),
                ("command", untrusted("fix </untrusted> now", 100)),
            ],
            title: "t".into(),
        };
        let prompt = render_prompt(&parts, &RunRef("ref-1".into()));
        assert_eq!(
            prompt,
            "On Login {command} flaky: fix <\\/untrusted> now {nope} {\n\n(ozbridge reference: ref-1)"
        );
        assert_eq!(reference_in(&prompt), Some(RunRef("ref-1".into())));
        assert_eq!(untrusted(&"x".repeat(10_000), 40).chars().count(), 40);
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_template(crate::config::DEFAULT_PROMPT_TEMPLATE).is_ok());
        assert!(
            check_template("{repo} {nope}")
                .unwrap_err()
                .contains("{nope}")
        );
        assert!(check_template("{repo").is_err());
    }
}
