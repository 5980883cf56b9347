//! Texts written to users, the same on every surface (in Markdown, which each surface
//! turns into its own markup): help, command errors, status answers, lists, refusals.

use crate::domain::RunView;
use crate::oz::types::RunState;
use crate::oz::types::{ListAgentsResponse, ListModelsResponse};

/// Usage of the command, for `/oz help`; `who` is the surface's note on who may start
/// agents and how.
pub fn help(trigger: &str, who: &str) -> String {
    format!(
        "**Oz agent commands**\n\n\
         - `{t} <what to do>`: start an agent on this thread. Options: `--model ID`, `--env ENVIRONMENT_ID`, \
           `--skill owner/repo:path/SKILL.md`, `--harness oz|claude|gemini`, `--new` (start a fresh conversation instead of continuing \
           the thread's last run).\n\
         - `{t} cancel`: stop the agent working on this thread.\n\
         - `{t} status`: show the state of the thread's latest run.\n\
         - `{t} retry`: start the thread's last run again, when it failed with an error that retrying may fix.\n\
         - `{t} drop`: remove the instructions queued behind the current run.\n\
         - `{t} models`: list the models you can pass to `--model`.\n\
         - `{t} agents`: list the skills you can pass to `--skill`.\n\
         - `{t} help`: this message.\n\n\
         {who} Options go anywhere on the command's line; write `--` to end them.",
        t = trigger
    )
}

/// A command that could not be understood.
pub fn command_error(who: &str, error: &dyn std::fmt::Display, trigger: &str) -> String {
    format!(
        "{who}, I could not run that command: {error}\n\nWrite `{trigger} help` to see what I understand. Nothing was started."
    )
}

/// A run is already active in the thread.
pub fn busy(who: &str, trigger: &str) -> String {
    format!(
        "{who}, an Oz agent is already working on this thread. Wait for it to finish, or write \
         `{trigger} cancel` to stop it, then ask again. Nothing new was started."
    )
}

/// A command kept until the run before it ends.
pub fn queued(who: &str, position: usize, fresh: bool, trigger: &str) -> String {
    let how = if fresh {
        "as a fresh conversation"
    } else {
        "continuing its conversation"
    };
    format!(
        "{who}, queued: this starts when the current run ends, {how} \
         (position {position} in this thread's queue). `{trigger} cancel` stops the current run; \
         `{trigger} drop` removes what is queued."
    )
}

/// The thread's queue is full.
pub fn queue_full(who: &str, cap: u64, trigger: &str) -> String {
    format!(
        "{who}, an Oz agent is working on this thread and {cap} instructions are already queued \
         behind it, the most a thread holds. Nothing was added: wait for the queue to move, \
         or `{trigger} drop` empties it."
    )
}

/// Answer to `/oz drop` (or the Drop button).
pub fn dropped(who: &str, count: u64) -> String {
    match count {
        0 => format!("{who}, there is nothing queued here."),
        1 => format!("{who}, dropped the queued instruction."),
        n => format!("{who}, dropped {n} queued instructions."),
    }
}

/// How long an outsider's request waits for approval before it expires.
pub const APPROVAL_WAIT_DAYS: i64 = 7;

/// An outsider's request, kept until someone with write access approves it.
pub fn awaiting_approval(who: &str, trigger: &str) -> String {
    format!(
        "{who}, thanks for asking! Only people with write access can start Oz agents here. \
         Waiting for someone with write access to reply `{trigger} approve` (or `{trigger} deny`); \
         the request expires in {APPROVAL_WAIT_DAYS} days."
    )
}

/// An outsider's command that is not a run request: nothing to approve.
pub fn outsider_refused(who: &str) -> String {
    format!("{who}, thanks for asking! Only people with write access can use this command here.")
}

/// `/oz approve`: whose requests now go ahead.
pub fn approved(who: &str, requesters: &[String]) -> String {
    match requesters {
        [] => format!("{who}, there is no request waiting for approval here."),
        [one] => format!("{who} approved the request of {one}: it goes ahead now."),
        many => format!(
            "{who} approved the requests of {}: they go ahead now, one after the other.",
            many.join(", ")
        ),
    }
}

/// `/oz deny` where nothing waits.
pub fn nothing_to_deny(who: &str) -> String {
    format!("{who}, there is no request waiting for approval here.")
}

/// A waiting request turned down.
pub fn denied_by(requester: &str, who: &str) -> String {
    format!("{requester}, {who} turned this request down; nothing was started.")
}

/// A waiting request nobody approved in time.
pub fn approval_expired(requester: &str, trigger: &str) -> String {
    format!(
        "{requester}, nobody with write access approved your request within {APPROVAL_WAIT_DAYS} days, \
         so it was not started. Ask again with `{trigger}` if it is still needed."
    )
}

/// The approver of a waiting request lost their access before it started.
pub fn approval_void(requester: &str) -> String {
    format!(
        "{requester}, the person who approved your request can no longer start agents here, \
         so it was not started."
    )
}

/// What an added label asks the agent to do.
pub fn label_request(label: &str) -> String {
    format!(
        "The label `{}` was added to ask you to work on this. Do what the title, description \
         and conversation below ask.",
        crate::pipeline::prompt::fence_safe(label)
    )
}

/// `/oz retry` where no run has been.
pub fn nothing_to_retry(who: &str) -> String {
    format!("{who}, no Oz agent has run on this thread yet, so there is nothing to retry.")
}

/// Why a run is not started again.
pub fn not_retryable(who: &str, view: &RunView, active: bool, trigger: &str) -> String {
    if active {
        return format!(
            "{who}, the last run here is still going, so there is nothing to retry. \
             `{trigger} cancel` stops it."
        );
    }
    let why = match view.state {
        Some(RunState::Succeeded) => "it succeeded".to_owned(),
        Some(RunState::Cancelled) => "it was cancelled".to_owned(),
        Some(RunState::Failed | RunState::Error) => match &view.status_message {
            Some(status) if !status.message.trim().is_empty() => format!(
                "its error is not one that retrying fixes (Oz said: {})",
                crate::text::truncate(&status.message.replace('\n', " "), 200)
            ),
            _ => "its error is not one that retrying fixes".to_owned(),
        },
        _ if view.start_error.is_some() => "it could not be started".to_owned(),
        _ => "it did not fail".to_owned(),
    };
    format!(
        "{who}, the last run here cannot be retried: {why}. Ask again with \
         `{trigger} <what to do>` to start a new one."
    )
}

/// Answer to `/oz status`.
pub fn status(view: Option<&RunView>) -> String {
    let Some(view) = view else {
        return "No Oz agent has run on this thread yet.".into();
    };
    let mut text = format!("The latest Oz run here is **{}**", view.label());
    if let Some(id) = &view.oz_run_id {
        text.push_str(&format!(" (run `{id}`)"));
    }
    text.push('.');
    if let Some(line) = view.figures.and_then(|figures| figures.line()) {
        text.push_str(&format!(" {line}."));
    }
    if let Some(link) = &view.session_link {
        text.push_str(&format!(" [Open the session]({link})."));
    }
    text
}

/// Answer to `/oz models`.
pub fn models(list: &ListModelsResponse) -> String {
    let mut text = String::from(
        "**Models** (pass one with `--model ID`)\n\n| id | name | provider | note |\n|---|---|---|---|\n",
    );
    for model in &list.models {
        let mut note = model
            .disable_reason
            .clone()
            .map(|r| format!("unavailable: {r}"))
            .unwrap_or_default();
        if model.id == list.default_model_id {
            note = format!("default {note}").trim().to_owned();
        }
        text.push_str(&format!(
            "| `{}` | {} | {} | {note} |\n",
            model.id, model.display_name, model.provider
        ));
    }
    text
}

/// Answer to `/oz agents`.
pub fn agents(list: &ListAgentsResponse) -> String {
    if list.agents.is_empty() {
        return "No agents (skills) are available to this API key.".into();
    }
    let mut text = String::from("**Agents** (pass one with `--skill SPEC`)\n\n");
    for agent in &list.agents {
        for variant in &agent.variants {
            text.push_str(&format!(
                "- **{}**: `{}`: {}\n",
                agent.name,
                variant.skill_spec(),
                variant.description
            ));
        }
    }
    text
}

/// A command given up on: it failed in a way retrying will not fix.
pub fn gave_up(who: &str, explanation: Option<&str>) -> String {
    match explanation {
        Some(explanation) => {
            format!("{who}, sorry: I could not handle this command. {explanation}")
        }
        None => format!(
            "{who}, sorry: I could not handle this command, and trying again will not help. \
             Nothing was started."
        ),
    }
}

/// A command set aside after a service it needs did not answer within the retry budget.
pub fn parked(who: &str, id: &str) -> String {
    format!(
        "{who}, sorry: a service this command needs has not answered for a long time, so I set \
         the command aside. Nothing was started. The operator of ozbridge can resume it \
         (`ozbridge admin retry {id}`), or you can ask again later."
    )
}

/// A command set aside because handling it failed inside ozbridge (a bug): taking it
/// again would fail the same way.
pub fn broke(who: &str, id: &str) -> String {
    format!(
        "{who}, sorry: something went wrong inside ozbridge while handling this command, so I \
         set it aside. Its operator has the details and can resume it \
         (`ozbridge admin retry {id}`) once it is fixed."
    )
}

/// New runs are refused because an operator paused ozbridge.
pub fn paused(who: &str) -> String {
    format!(
        "{who}, ozbridge is paused by its operator: no new Oz agents are started right now. \
         Agents already working go on. Nothing was started; ask again later."
    )
}

/// The reply to a run refused by `limit`; `place` names where ("this repository").
pub fn over_limit(who: &str, place: &str, limit: &Limit) -> String {
    let reason = match limit {
        Limit::UserActive(max) => format!(
            "you already have as many Oz agents working as one person may have at once \
             ({max}). Wait for one to finish, or cancel one, then ask again."
        ),
        Limit::PlaceActive(max) => format!(
            "as many Oz agents are already working in {place} as are allowed at once \
             ({max}). Ask again when one has finished."
        ),
        Limit::UserHourly(max) => format!(
            "you have started as many Oz agents in the last hour as one person may ({max}). \
             Try again later."
        ),
        Limit::PlaceDaily { spent, max } => format!(
            "the Oz agents of {place} have cost {spent:.2} in the last 24 hours, past the \
             daily budget of {max:.2} (as Oz reports costs). New agents start here again as \
             the budget frees up."
        ),
    };
    format!("{who}, {reason} Nothing was started.")
}

/// Which limit refused a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// Runs of one person at once.
    UserActive(u64),
    /// Runs of one repository or channel at once.
    PlaceActive(u64),
    /// Runs one person may start in an hour.
    UserHourly(u64),
    /// Cost of a repository's or channel's runs in a day.
    PlaceDaily { spent: f64, max: f64 },
}
