//! GitHub webhook payloads: which events carry a command, and the command they carry.

use crate::command::find_command;
use crate::config::GithubPolicy;
use crate::domain::{Author, CommentKind, GithubOrigin, InboxCommand, Origin, ThreadContext};
use crate::ids::RepoFullName;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Most of an issue body that is kept for the prompt.
const MAX_BODY_CHARS: usize = 8_000;

/// What intake decided about a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum GithubIntake {
    /// `ping`: answer 200.
    Ping,
    /// Nothing to do; the reason is for logs and metrics.
    Ignored(&'static str),
    /// A command to store under `dedupe_key`.
    Command {
        dedupe_key: String,
        command: Box<InboxCommand>,
    },
}

/// What intake needs to know from the configuration.
pub struct IntakeRules<'a> {
    pub trigger: &'a str,
    pub policy: &'a GithubPolicy,
    pub bot_login: Option<&'a str>,
}

/// A payload that is not what its event type promises.
#[derive(Debug, thiserror::Error)]
#[error("the {event} payload could not be read: {reason}")]
pub struct PayloadError {
    event: String,
    reason: String,
}

#[derive(Deserialize)]
struct User {
    login: String,
    id: u64,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: User,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct GitRef {
    #[serde(rename = "ref")]
    name: String,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: String,
    head: GitRef,
    base: GitRef,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Deserialize)]
struct BodyChange {
    from: String,
}

#[derive(Deserialize)]
struct Changes {
    body: Option<BodyChange>,
}

#[derive(Deserialize)]
struct CommentPayload {
    action: String,
    comment: Comment,
    issue: Option<Issue>,
    pull_request: Option<PullRequest>,
    repository: Repository,
    installation: Option<Installation>,
    changes: Option<Changes>,
}

/// Decides what a verified delivery means.
pub fn parse_event(
    event: &str,
    body: &[u8],
    rules: &IntakeRules<'_>,
) -> Result<GithubIntake, PayloadError> {
    let kind = match event {
        "ping" => return Ok(GithubIntake::Ping),
        "issue_comment" => CommentKind::Issue,
        "pull_request_review_comment" => CommentKind::Review,
        _ => return Ok(GithubIntake::Ignored("event type not handled")),
    };
    let payload: CommentPayload = serde_json::from_slice(body).map_err(|e| PayloadError {
        event: event.to_owned(),
        reason: e.to_string(),
    })?;
    let comment_body = payload.comment.body.as_deref().unwrap_or_default();
    let Some(line) = find_command(comment_body, rules.trigger) else {
        return Ok(GithubIntake::Ignored("no command"));
    };
    match payload.action.as_str() {
        "created" => {}
        "edited" => {
            // An edit runs only a command that was not in the previous body.
            let Some(previous) = payload.changes.as_ref().and_then(|c| c.body.as_ref()) else {
                return Ok(GithubIntake::Ignored("edit without a body change"));
            };
            if find_command(&previous.from, rules.trigger)
                .is_some_and(|old| old.full_text() == line.full_text())
            {
                return Ok(GithubIntake::Ignored("edit kept the same command"));
            }
        }
        _ => return Ok(GithubIntake::Ignored("comment action not handled")),
    }
    let user = &payload.comment.user;
    if crate::github::render::is_own_comment(comment_body)
        || rules
            .bot_login
            .is_some_and(|bot| bot.eq_ignore_ascii_case(&user.login))
    {
        return Ok(GithubIntake::Ignored("own comment"));
    }
    let is_bot = user.kind == "Bot" || user.login.ends_with("[bot]");
    if is_bot
        && !rules
            .policy
            .allow_bots
            .iter()
            .any(|b| b.eq_ignore_ascii_case(&user.login))
    {
        return Ok(GithubIntake::Ignored("comment by a bot"));
    }
    let repo = RepoFullName(payload.repository.full_name.clone());
    if !rules.policy.repo_enabled(repo.as_str()) {
        return Ok(GithubIntake::Ignored("repository not enabled"));
    }
    let (context, number) = match (payload.pull_request, payload.issue) {
        (Some(pr), _) => (
            ThreadContext {
                title: pr.title,
                body: bounded(pr.body.unwrap_or_default()),
                url: pr.html_url,
                is_pull_request: true,
                head_ref: Some(pr.head.name),
                base_ref: Some(pr.base.name),
            },
            pr.number,
        ),
        (None, Some(issue)) => (
            ThreadContext {
                title: issue.title,
                body: bounded(issue.body.unwrap_or_default()),
                url: issue.html_url,
                is_pull_request: issue.pull_request.is_some(),
                head_ref: None,
                base_ref: None,
            },
            issue.number,
        ),
        (None, None) => {
            return Err(PayloadError {
                event: event.to_owned(),
                reason: "neither issue nor pull_request".into(),
            });
        }
    };
    let digest = hex::encode(&Sha256::digest(line.full_text().as_bytes())[..8]);
    let dedupe_key = format!(
        "github:{}:comment:{}:{digest}",
        repo.as_str().to_ascii_lowercase(),
        payload.comment.id
    );
    let command = InboxCommand {
        action: None,
        origin: Origin::Github(GithubOrigin {
            repo,
            installation_id: payload.installation.map(|i| i.id),
            number,
            comment_id: payload.comment.id,
            comment_kind: kind,
        }),
        author: Author {
            login: user.login.clone(),
            id: user.id,
            is_bot,
        },
        line,
        context,
    };
    Ok(GithubIntake::Command {
        dedupe_key,
        command: Box::new(command),
    })
}

fn bounded(text: String) -> String {
    crate::text::truncate(&text, MAX_BODY_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(action: &str, body: &str, user_type: &str) -> serde_json::Value {
        json!({
            "action": action,
            "comment": { "id": 7, "body": body, "user": { "login": "alice", "id": 1, "type": user_type } },
            "issue": { "number": 42, "title": "Login flaky", "body": "It fails", "html_url": "https://github.com/acme/widgets/issues/42" },
            "repository": { "full_name": "acme/widgets" },
            "installation": { "id": 99 }
        })
    }

    fn decide(event: &str, value: &serde_json::Value, policy: &GithubPolicy) -> GithubIntake {
        let rules = IntakeRules {
            trigger: "/oz",
            policy,
            bot_login: None,
        };
        parse_event(event, value.to_string().as_bytes(), &rules).unwrap()
    }

    #[test]
    fn a_created_comment_with_a_command_is_taken() {
        let policy = GithubPolicy::default();
        let GithubIntake::Command {
            dedupe_key,
            command,
        } = decide(
            "issue_comment",
            &payload("created", "/oz fix it", "User"),
            &policy,
        )
        else {
            panic!("expected a command");
        };
        assert!(dedupe_key.starts_with("github:acme/widgets:comment:7:"));
        assert_eq!(command.line.args, "fix it");
        assert_eq!(command.context.title, "Login flaky");
        assert_eq!(
            command.origin.thread_key().as_str(),
            "github:acme/widgets#42"
        );
    }

    #[test]
    fn edits_run_only_new_commands() {
        let policy = GithubPolicy::default();
        let mut same = payload("edited", "/oz fix it\n\ntypo fixed", "User");
        same["changes"] = json!({ "body": { "from": "/oz fix it\n\ntypo fxed" } });
        assert_eq!(
            decide("issue_comment", &same, &policy),
            GithubIntake::Ignored("edit kept the same command")
        );
        let mut unchanged = payload("edited", "/oz fix it", "User");
        unchanged["changes"] = json!({});
        assert_eq!(
            decide("issue_comment", &unchanged, &policy),
            GithubIntake::Ignored("edit without a body change")
        );
        let mut added = payload("edited", "/oz fix it", "User");
        added["changes"] = json!({ "body": { "from": "please look" } });
        assert!(matches!(
            decide("issue_comment", &added, &policy),
            GithubIntake::Command { .. }
        ));
    }

    #[test]
    fn bots_own_comments_and_other_repos_are_ignored() {
        let policy = GithubPolicy::default();
        assert_eq!(
            decide(
                "issue_comment",
                &payload("created", "/oz x", "Bot"),
                &policy
            ),
            GithubIntake::Ignored("comment by a bot")
        );
        let allowed = GithubPolicy {
            allow_bots: vec!["alice".into()],
            ..GithubPolicy::default()
        };
        assert!(matches!(
            decide(
                "issue_comment",
                &payload("created", "/oz x", "Bot"),
                &allowed
            ),
            GithubIntake::Command { .. }
        ));
        let own = payload("created", "<!-- ozbridge:reply:x -->\n/oz help", "User");
        assert_eq!(
            decide("issue_comment", &own, &policy),
            GithubIntake::Ignored("own comment")
        );
        let elsewhere = GithubPolicy {
            enabled_repos: vec!["acme/other".into()],
            ..GithubPolicy::default()
        };
        assert_eq!(
            decide(
                "issue_comment",
                &payload("created", "/oz x", "User"),
                &elsewhere
            ),
            GithubIntake::Ignored("repository not enabled")
        );
        assert_eq!(
            decide("push", &json!({}), &policy),
            GithubIntake::Ignored("event type not handled")
        );
        assert_eq!(
            decide(
                "issue_comment",
                &payload("deleted", "/oz x", "User"),
                &policy
            ),
            GithubIntake::Ignored("comment action not handled")
        );
    }

    #[test]
    fn review_comments_carry_branches() {
        let value = json!({
            "action": "created",
            "comment": { "id": 8, "body": "/oz tidy this", "user": { "login": "bob", "id": 2, "type": "User" } },
            "pull_request": { "number": 5, "title": "Refactor", "body": null, "html_url": "u",
                              "head": { "ref": "feature" }, "base": { "ref": "main" } },
            "repository": { "full_name": "acme/widgets" }
        });
        let GithubIntake::Command { command, .. } = decide(
            "pull_request_review_comment",
            &value,
            &GithubPolicy::default(),
        ) else {
            panic!("expected a command");
        };
        assert_eq!(command.context.head_ref.as_deref(), Some("feature"));
        assert!(command.context.is_pull_request);
        assert!(matches!(
            command.origin,
            Origin::Github(GithubOrigin {
                comment_kind: CommentKind::Review,
                number: 5,
                ..
            })
        ));
    }
}
