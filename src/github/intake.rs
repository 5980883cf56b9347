//! GitHub webhook payloads: which events carry a command, and the command they carry.

use crate::command::find_command;
use crate::config::GithubPolicy;
use crate::domain::{
    Author, CommentKind, GithubOrigin, InboxCommand, Origin, Request, ThreadContext,
};
use crate::ids::RepoFullName;
use crate::intake::shape::{Object, is_repo_full_name, without_nul};
use serde::Deserialize;
use serde::de::IgnoredAny;
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

impl User {
    fn is_bot(&self) -> bool {
        self.kind == "Bot" || self.login.ends_with("[bot]")
    }

    fn author(&self) -> Author {
        Author::Github {
            login: self.login.clone(),
            id: self.id,
            is_bot: self.is_bot(),
        }
    }
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    /// Nullable in GitHub's schema (a deleted account); the sender speaks then.
    #[serde(default)]
    user: Option<Object<User>>,
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
    pull_request: Option<Object<IgnoredAny>>,
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
    head: Object<GitRef>,
    base: Object<GitRef>,
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
    #[serde(default)]
    body: Option<Object<BodyChange>>,
}

#[derive(Deserialize)]
struct CommentPayload {
    action: String,
    comment: Object<Comment>,
    #[serde(default)]
    issue: Option<Object<Issue>>,
    #[serde(default)]
    pull_request: Option<Object<PullRequest>>,
    repository: Object<Repository>,
    #[serde(default)]
    installation: Option<Object<Installation>>,
    #[serde(default)]
    changes: Option<Object<Changes>>,
    /// Who caused the event: for an edit, the editor, who may not be the author.
    #[serde(default)]
    sender: Option<Object<User>>,
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
    let bad = |reason: &str| PayloadError {
        event: event.to_owned(),
        reason: reason.to_owned(),
    };
    let comment = payload.comment.0;
    let comment_body = without_nul(comment.body.as_deref().unwrap_or_default());
    let Some(line) = find_command(&comment_body, rules.trigger) else {
        return Ok(GithubIntake::Ignored("no command"));
    };
    match payload.action.as_str() {
        "created" => {}
        "edited" => {
            // An edit runs only a command that was not in the previous body.
            let Some(previous) = payload.changes.as_ref().and_then(|c| c.0.body.as_ref()) else {
                return Ok(GithubIntake::Ignored("edit without a body change"));
            };
            if find_command(&without_nul(&previous.0.from), rules.trigger)
                .is_some_and(|old| old.full_text() == line.full_text())
            {
                return Ok(GithubIntake::Ignored("edit kept the same command"));
            }
        }
        _ => return Ok(GithubIntake::Ignored("comment action not handled")),
    }
    let sender = payload.sender.map(|s| s.0);
    let Some(user) = comment.user.map(|u| u.0).or_else(|| {
        sender.as_ref().map(|s| User {
            login: s.login.clone(),
            id: s.id,
            kind: s.kind.clone(),
        })
    }) else {
        return Err(bad("neither comment.user nor sender"));
    };
    let is_own = |login: &str| {
        rules
            .bot_login
            .is_some_and(|bot| bot.eq_ignore_ascii_case(login))
    };
    if crate::github::render::is_own_comment(&comment_body) || is_own(&user.login) {
        return Ok(GithubIntake::Ignored("own comment"));
    }
    let bot_allowed = |login: &str| {
        rules
            .policy
            .allow_bots
            .iter()
            .any(|b| b.eq_ignore_ascii_case(login))
    };
    if user.is_bot() && !bot_allowed(&user.login) {
        return Ok(GithubIntake::Ignored("comment by a bot"));
    }
    // The sender wrote the command when it is not the comment's author (an edit of
    // someone else's comment): they must be allowed as well, and a bot's edit is
    // never a command.
    let editor = match &sender {
        Some(sender) if sender.id != user.id => {
            if sender.is_bot() || is_own(&sender.login) {
                return Ok(GithubIntake::Ignored("edited by a bot"));
            }
            Some(sender.author())
        }
        _ => None,
    };
    let full_name = payload.repository.0.full_name;
    if !is_repo_full_name(&full_name) {
        return Err(bad("repository.full_name is not owner/name"));
    }
    let repo = RepoFullName(full_name);
    if !rules.policy.repo_enabled(repo.as_str()) {
        return Ok(GithubIntake::Ignored("repository not enabled"));
    }
    let (context, number) = match (payload.pull_request, payload.issue) {
        (Some(Object(pr)), _) => (
            ThreadContext {
                title: without_nul(&pr.title),
                body: bounded(pr.body.unwrap_or_default()),
                url: pr.html_url,
                is_pull_request: true,
                head_ref: Some(pr.head.0.name),
                base_ref: Some(pr.base.0.name),
                attachments: Vec::new(),
            },
            pr.number,
        ),
        (None, Some(Object(issue))) => (
            ThreadContext {
                title: without_nul(&issue.title),
                body: bounded(issue.body.unwrap_or_default()),
                url: issue.html_url,
                is_pull_request: issue.pull_request.is_some(),
                head_ref: None,
                base_ref: None,
                attachments: Vec::new(),
            },
            issue.number,
        ),
        (None, None) => return Err(bad("neither issue nor pull_request")),
    };
    let mut context = context;
    context.attachments = linked_images(&comment_body);
    let digest = hex::encode(&Sha256::digest(line.full_text().as_bytes())[..8]);
    let dedupe_key = format!(
        "github:{}:comment:{}:{digest}",
        repo.as_str().to_ascii_lowercase(),
        comment.id
    );
    let command = InboxCommand {
        origin: Origin::Github(GithubOrigin {
            repo,
            installation_id: payload.installation.map(|i| i.0.id),
            number,
            comment_id: comment.id,
            comment_kind: kind,
        }),
        author: user.author(),
        editor,
        request: Request::Typed { line },
        context,
    };
    Ok(GithubIntake::Command {
        dedupe_key,
        command: Box::new(command),
    })
}

/// The images a comment links (`![alt](url)`, `<img src="url">`), in order, at most a
/// few more than Oz takes (the rest could only be left out).
fn linked_images(body: &str) -> Vec<crate::attachments::AttachmentRef> {
    let mut urls: Vec<&str> = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("](") {
        let after = &rest[start + 2..];
        let is_image = rest[..start]
            .rfind("![")
            .is_some_and(|open| !rest[open..start].contains(']'));
        if let Some(end) = after.find([')', ' ']) {
            if is_image {
                urls.push(&after[..end]);
            }
            rest = &after[end..];
        } else {
            break;
        }
    }
    let mut rest = body;
    while let Some(start) = rest.find("src=\"") {
        let after = &rest[start + 5..];
        let Some(end) = after.find('"') else { break };
        if rest[..start].rfind("<img").is_some() {
            urls.push(&after[..end]);
        }
        rest = &after[end..];
    }
    let mut seen = std::collections::HashSet::new();
    urls.into_iter()
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
        .filter(|url| seen.insert(*url))
        .take(crate::attachments::MAX_ATTACHMENTS + 5)
        .map(|url| crate::attachments::AttachmentRef {
            name: url
                .rsplit('/')
                .next()
                .filter(|name| !name.is_empty())
                .unwrap_or("image")
                .chars()
                .take(100)
                .collect(),
            url: url.chars().take(2_000).collect(),
            mime_type: None,
            size: None,
        })
        .collect()
}

fn bounded(text: String) -> String {
    crate::text::truncate(&without_nul(&text), MAX_BODY_CHARS)
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
        assert_eq!(command.typed_line().unwrap().args, "fix it");
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

    fn rules(policy: &GithubPolicy) -> IntakeRules<'_> {
        IntakeRules {
            trigger: "/oz",
            policy,
            bot_login: None,
        }
    }

    fn try_decide(value: &serde_json::Value) -> Result<GithubIntake, PayloadError> {
        let policy = GithubPolicy::default();
        parse_event(
            "issue_comment",
            value.to_string().as_bytes(),
            &rules(&policy),
        )
    }

    #[test]
    fn structs_arrive_as_objects_only() {
        for (pointer, shape) in [
            ("/issue", json!([42])),
            ("/installation", json!([1])),
            ("/comment", json!([7, "/oz fix it"])),
            ("/comment/user", json!(["alice", 1])),
            ("/repository", json!(["acme/widgets"])),
            ("/sender", json!(["alice", 1])),
        ] {
            let mut value = payload("created", "/oz fix it", "User");
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            value.pointer_mut(parent).unwrap()[key] = shape;
            assert!(try_decide(&value).is_err(), "{pointer} as an array");
        }
    }

    #[test]
    fn a_null_comment_user_is_the_sender() {
        let mut value = payload("created", "/oz fix it", "User");
        value["comment"]["user"] = json!(null);
        value["sender"] = json!({ "login": "alice", "id": 1, "type": "User" });
        let Ok(GithubIntake::Command { command, .. }) = try_decide(&value) else {
            panic!("expected a command");
        };
        assert_eq!(command.author.name(), "alice");
    }

    #[test]
    fn the_editor_of_someone_elses_comment_must_be_allowed_too() {
        let mut edit = payload("edited", "/oz fix it", "User");
        edit["changes"] = json!({ "body": { "from": "please look" } });
        edit["sender"] = json!({ "login": "mallory", "id": 66, "type": "User" });
        let Ok(GithubIntake::Command { command, .. }) = try_decide(&edit) else {
            panic!("expected a command");
        };
        assert_eq!(command.author.name(), "alice");
        assert_eq!(command.editor.as_ref().map(|e| e.name()), Some("mallory"));
        edit["sender"] = json!({ "login": "helper[bot]", "id": 67, "type": "Bot" });
        assert_eq!(
            try_decide(&edit).unwrap(),
            GithubIntake::Ignored("edited by a bot")
        );
        // The author editing their own comment is one actor.
        edit["sender"] = json!({ "login": "alice", "id": 1, "type": "User" });
        let Ok(GithubIntake::Command { command, .. }) = try_decide(&edit) else {
            panic!("expected a command");
        };
        assert_eq!(command.editor, None);
    }

    #[test]
    fn images_linked_in_a_comment_are_found_in_order_once() {
        let body = "/oz fix the layout\n\n![before](https://github.com/user-attachments/assets/a1)\n\
                    See [the docs](https://example.com/docs) and\n\
                    <img width=\"300\" alt=\"after\" src=\"https://github.com/user-attachments/assets/b2\" />\n\
                    ![again](https://github.com/user-attachments/assets/a1) ![bad](javascript:alert(1))";
        let found: Vec<(String, String)> = linked_images(body)
            .into_iter()
            .map(|a| (a.name, a.url))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "a1".to_owned(),
                    "https://github.com/user-attachments/assets/a1".to_owned()
                ),
                (
                    "b2".to_owned(),
                    "https://github.com/user-attachments/assets/b2".to_owned()
                ),
            ],
            "a plain link is not an image, a repeat is counted once, only http(s)"
        );
    }

    #[test]
    fn nul_characters_never_reach_the_store() {
        let mut value = payload("created", "/oz fix it", "User");
        value["repository"]["full_name"] =
            serde_json::Value::String(format!("acme/wid{}gets", '\0'));
        assert!(
            try_decide(&value).is_err(),
            "a NUL in the repository name is refused"
        );
        let nul = '\0';
        let value = payload("created", &format!("/oz fix{nul} it"), "User");
        let Ok(GithubIntake::Command { command, .. }) = try_decide(&value) else {
            panic!("expected a command");
        };
        assert!(!command.typed_line().unwrap().full_text().contains(nul));
        let mut value = payload("created", "/oz fix it", "User");
        value["issue"]["title"] = json!(format!("a{nul}b"));
        let Ok(GithubIntake::Command { command, .. }) = try_decide(&value) else {
            panic!("expected a command");
        };
        assert_eq!(command.context.title, "a\u{FFFD}b");
    }
}
