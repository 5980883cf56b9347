//! GitHub webhook payloads: which events carry a command, and the command they carry.
//! Comments (`issue_comment`, `pull_request_review_comment`), a submitted review's body
//! (`pull_request_review`), an issue's or pull request's opening body and an added label
//! (`issues`, `pull_request`). Whether a repository has a trigger on is the pipeline's
//! question (its `.github/ozbridge.toml` may say); intake takes what could be one.

use crate::command::{CommandLine, find_command};
use crate::config::{GithubPolicy, GithubRepos};
use crate::domain::{
    Author, CommentKind, GithubOrigin, InboxCommand, Origin, Request, ReviewSpot, ThreadContext,
};
use crate::ids::RepoFullName;
use crate::intake::shape::{Object, is_repo_full_name, without_nul};
use serde::Deserialize;
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};

/// Most of a review comment's diff hunk that is kept for the prompt.
const MAX_HUNK_CHARS: usize = 3_000;

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

/// What intake needs to know from the configuration and the delivery's headers.
pub struct IntakeRules<'a> {
    pub trigger: &'a str,
    pub policy: &'a GithubPolicy,
    pub bot_login: Option<&'a str>,
    /// Which labels may start runs where.
    pub repos: &'a GithubRepos,
    /// `X-GitHub-Delivery`: the same for a redelivery, so a label's run is not started
    /// twice by one.
    pub delivery: &'a str,
}

/// A payload that is not what its event type promises.
#[derive(Debug, thiserror::Error)]
#[error("the {event} payload could not be read: {reason}")]
pub struct PayloadError {
    event: String,
    reason: String,
}

#[derive(Clone, Deserialize)]
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
    /// A review comment's thread: the comment it answers.
    #[serde(default)]
    in_reply_to_id: Option<u64>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    original_line: Option<u64>,
    #[serde(default)]
    diff_hunk: Option<String>,
}

#[derive(Deserialize)]
struct Label {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    pull_request: Option<Object<IgnoredAny>>,
    #[serde(default)]
    labels: Option<Vec<Object<Label>>>,
    #[serde(default)]
    user: Option<Object<User>>,
    #[serde(default)]
    updated_at: Option<String>,
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
    html_url: String,
    head: Object<GitRef>,
    base: Object<GitRef>,
    #[serde(default)]
    labels: Option<Vec<Object<Label>>>,
    #[serde(default)]
    user: Option<Object<User>>,
    #[serde(default)]
    updated_at: Option<String>,
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
struct Review {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<Object<User>>,
}

/// The description of the issue or pull request an `opened` event is about: read from
/// the delivery only for that event, so that the others (every comment) never copy it.
#[derive(Deserialize)]
struct Opened {
    #[serde(default)]
    issue: Option<Object<Described>>,
    #[serde(default)]
    pull_request: Option<Object<Described>>,
}

#[derive(Deserialize)]
struct Described {
    #[serde(default)]
    body: Option<String>,
}

/// The fields every event ozbridge reads carries.
#[derive(Deserialize)]
struct Payload {
    action: String,
    #[serde(default)]
    comment: Option<Object<Comment>>,
    #[serde(default)]
    review: Option<Object<Review>>,
    #[serde(default)]
    label: Option<Object<Label>>,
    #[serde(default)]
    issue: Option<Object<Issue>>,
    #[serde(default)]
    pull_request: Option<Object<PullRequest>>,
    repository: Object<Repository>,
    #[serde(default)]
    installation: Option<Object<Installation>>,
    #[serde(default)]
    changes: Option<Object<Changes>>,
    /// Who caused the event: for an edit, the editor, who may not be the author; for a
    /// label, who added it.
    #[serde(default)]
    sender: Option<Object<User>>,
}

/// What carried a command, found in a payload.
struct Spoken {
    kind: CommentKind,
    /// The comment's or review's id; 0 for an opening body or a label.
    id: u64,
    /// Who wrote it (for a label: who added it).
    user: Option<User>,
    request: Request,
    /// The message's body, for images it links.
    body: String,
    /// What makes a redelivery the same command.
    dedupe: String,
}

/// Decides what a verified delivery means.
pub fn parse_event(
    event: &str,
    body: &[u8],
    rules: &IntakeRules<'_>,
) -> Result<GithubIntake, PayloadError> {
    if event == "ping" {
        return Ok(GithubIntake::Ping);
    }
    if !matches!(
        event,
        "issue_comment"
            | "pull_request_review_comment"
            | "pull_request_review"
            | "issues"
            | "pull_request"
    ) {
        return Ok(GithubIntake::Ignored("event type not handled"));
    }
    let bad = |reason: &str| PayloadError {
        event: event.to_owned(),
        reason: reason.to_owned(),
    };
    let payload: Payload = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let spoken = match event {
        "issue_comment" | "pull_request_review_comment" => comment(event, &payload, rules)?,
        "pull_request_review" => review(&payload, rules)?,
        _ => opened_or_labeled(&payload, body, rules)?,
    };
    let spoken = match spoken {
        Ok(spoken) => spoken,
        Err(reason) => return Ok(GithubIntake::Ignored(reason)),
    };
    let sender = payload.sender.map(|s| s.0);
    let Some(user) = spoken.user.or_else(|| sender.clone()) else {
        return Err(bad("neither the author nor sender"));
    };
    let is_own = |login: &str| {
        rules
            .bot_login
            .is_some_and(|bot| bot.eq_ignore_ascii_case(login))
    };
    if crate::github::render::is_own_comment(&spoken.body) || is_own(&user.login) {
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
    if let Request::Labeled { label } = &spoken.request
        && !rules.repos.label_may_trigger(repo.as_str(), label)
    {
        return Ok(GithubIntake::Ignored("label starts nothing"));
    }
    // The description is not kept: it is most of what a delivery weighs (up to 65,536
    // characters) and would make the answer's one write many times larger; the
    // surface reads it, as it reads then, when the run is recorded.
    let (mut context, number) = match (payload.pull_request, payload.issue) {
        (Some(Object(pr)), _) => (
            ThreadContext {
                title: without_nul(&pr.title),
                url: pr.html_url,
                is_pull_request: true,
                head_ref: Some(pr.head.0.name),
                base_ref: Some(pr.base.0.name),
                labels: label_names(pr.labels),
                ..ThreadContext::default()
            },
            pr.number,
        ),
        (None, Some(Object(issue))) => (
            ThreadContext {
                title: without_nul(&issue.title),
                url: issue.html_url,
                is_pull_request: issue.pull_request.is_some(),
                labels: label_names(issue.labels),
                ..ThreadContext::default()
            },
            issue.number,
        ),
        (None, None) => return Err(bad("neither issue nor pull_request")),
    };
    context.attachments = linked_images(&spoken.body);
    let mut review_thread = None;
    if spoken.kind == CommentKind::Review
        && let Some(Object(comment)) = payload.comment
    {
        review_thread = Some(comment.in_reply_to_id.unwrap_or(comment.id));
        context.review = comment.path.map(|path| ReviewSpot {
            path: without_nul(&path),
            line: comment.line.or(comment.original_line),
            diff_hunk: crate::text::truncate(
                &without_nul(comment.diff_hunk.as_deref().unwrap_or_default()),
                MAX_HUNK_CHARS,
            ),
        });
    }
    let dedupe_key = format!(
        "github:{}:{}",
        repo.as_str().to_ascii_lowercase(),
        spoken.dedupe
    );
    let command = InboxCommand {
        origin: Origin::Github(GithubOrigin {
            repo,
            installation_id: payload.installation.map(|i| i.0.id),
            number,
            comment_id: spoken.id,
            comment_kind: spoken.kind,
            review_thread,
        }),
        author: user.author(),
        editor,
        request: spoken.request,
        context,
        approved_by: None,
    };
    Ok(GithubIntake::Command {
        dedupe_key,
        command: Box::new(command),
    })
}

/// A typed command found in `body`, deduplicated by `place` (what carried it) and a
/// short digest of the command: an edit that changes the command is a new one.
fn typed(
    kind: CommentKind,
    id: u64,
    user: Option<User>,
    place: String,
    line: CommandLine,
    body: String,
) -> Spoken {
    let digest = hex::encode(&Sha256::digest(line.full_text().as_bytes())[..8]);
    Spoken {
        kind,
        id,
        user,
        dedupe: format!("{place}:{digest}"),
        request: Request::Typed { line },
        body,
    }
}

/// A comment that may carry a command (`Err`: why it does not).
fn comment(
    event: &str,
    payload: &Payload,
    rules: &IntakeRules<'_>,
) -> Result<Result<Spoken, &'static str>, PayloadError> {
    let Some(Object(comment)) = &payload.comment else {
        return Err(PayloadError {
            event: event.to_owned(),
            reason: "missing field `comment`".into(),
        });
    };
    let body = without_nul(comment.body.as_deref().unwrap_or_default());
    let Some(line) = find_command(&body, rules.trigger) else {
        return Ok(Err("no command"));
    };
    match payload.action.as_str() {
        "created" => {}
        "edited" => {
            // An edit runs only a command that was not in the previous body.
            let Some(previous) = payload.changes.as_ref().and_then(|c| c.0.body.as_ref()) else {
                return Ok(Err("edit without a body change"));
            };
            if find_command(&without_nul(&previous.0.from), rules.trigger)
                .is_some_and(|old| old.full_text() == line.full_text())
            {
                return Ok(Err("edit kept the same command"));
            }
        }
        _ => return Ok(Err("comment action not handled")),
    }
    let kind = if event == "pull_request_review_comment" {
        CommentKind::Review
    } else {
        CommentKind::Issue
    };
    let user = comment.user.as_ref().map(|u| u.0.clone());
    let dedupe = format!("comment:{}", comment.id);
    Ok(Ok(typed(kind, comment.id, user, dedupe, line, body)))
}

/// A submitted review whose body holds a command.
fn review(
    payload: &Payload,
    rules: &IntakeRules<'_>,
) -> Result<Result<Spoken, &'static str>, PayloadError> {
    let Some(Object(review)) = &payload.review else {
        return Err(PayloadError {
            event: "pull_request_review".into(),
            reason: "missing field `review`".into(),
        });
    };
    if payload.action != "submitted" {
        return Ok(Err("review action not handled"));
    }
    let body = without_nul(review.body.as_deref().unwrap_or_default());
    let Some(line) = find_command(&body, rules.trigger) else {
        return Ok(Err("no command"));
    };
    let user = review.user.as_ref().map(|u| u.0.clone());
    let dedupe = format!("review:{}", review.id);
    Ok(Ok(typed(
        CommentKind::ReviewBody,
        review.id,
        user,
        dedupe,
        line,
        body,
    )))
}

/// An issue or pull request opened with a command in its body, or given a label.
fn opened_or_labeled(
    payload: &Payload,
    delivery: &[u8],
    rules: &IntakeRules<'_>,
) -> Result<Result<Spoken, &'static str>, PayloadError> {
    let bad = |reason: String| PayloadError {
        event: "issues".into(),
        reason,
    };
    let (number, opener, updated_at) = match (&payload.pull_request, &payload.issue) {
        (Some(Object(pr)), _) => (pr.number, &pr.user, &pr.updated_at),
        (None, Some(Object(issue))) => (issue.number, &issue.user, &issue.updated_at),
        (None, None) => return Err(bad("neither issue nor pull_request".into())),
    };
    match payload.action.as_str() {
        "opened" => {
            let opened: Opened =
                serde_json::from_slice(delivery).map_err(|e| bad(e.to_string()))?;
            let described = opened.pull_request.or(opened.issue);
            let body = described.and_then(|d| d.0.body).unwrap_or_default();
            let body = without_nul(&body);
            let Some(line) = find_command(&body, rules.trigger) else {
                return Ok(Err("no command"));
            };
            let user = opener.as_ref().map(|u| u.0.clone());
            let dedupe = format!("opened:{number}");
            Ok(Ok(typed(CommentKind::Opening, 0, user, dedupe, line, body)))
        }
        "labeled" => {
            let Some(Object(label)) = &payload.label else {
                return Ok(Err("labeled without a label"));
            };
            let name = without_nul(&label.name);
            // One run per addition: a redelivery carries the same delivery id.
            let occasion = if rules.delivery.is_empty() {
                updated_at.clone().unwrap_or_default()
            } else {
                rules.delivery.to_owned()
            };
            Ok(Ok(Spoken {
                kind: CommentKind::Label,
                id: 0,
                // The sender added the label: they are the requester.
                user: None,
                dedupe: format!(
                    "label:{number}:{}:{}",
                    name.to_ascii_lowercase(),
                    crate::text::truncate(&without_nul(&occasion), 100)
                ),
                request: Request::Labeled { label: name },
                body: String::new(),
            }))
        }
        _ => Ok(Err("action not handled")),
    }
}

fn label_names(labels: Option<Vec<Object<Label>>>) -> Vec<String> {
    let labels = labels.unwrap_or_default();
    super::context::bounded_labels(labels.iter().map(|l| l.0.name.as_str()))
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
        let repos = GithubRepos::default();
        let rules = IntakeRules {
            trigger: "/oz",
            policy,
            bot_login: None,
            repos: &repos,
            delivery: "d-1",
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
    fn the_description_is_not_kept_with_the_command() {
        let described = payload("created", "/oz fix it", "User");
        let GithubIntake::Command { command, .. } =
            decide("issue_comment", &described, &GithubPolicy::default())
        else {
            panic!("a command");
        };
        assert_eq!(command.context.title, "Login flaky");
        assert_eq!(command.context.body, "", "read when the run is recorded");
        let stored = serde_json::to_string(&command).unwrap();
        assert!(!stored.contains("It fails"), "{stored}");
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

    fn try_decide(value: &serde_json::Value) -> Result<GithubIntake, PayloadError> {
        let policy = GithubPolicy::default();
        let repos = GithubRepos::default();
        let rules = IntakeRules {
            trigger: "/oz",
            policy: &policy,
            bot_login: None,
            repos: &repos,
            delivery: "d-1",
        };
        parse_event("issue_comment", value.to_string().as_bytes(), &rules)
    }

    fn decide_with(event: &str, value: &serde_json::Value, delivery: &str) -> GithubIntake {
        let policy = GithubPolicy::default();
        let repos = GithubRepos {
            overrides: vec!["triggers".into()],
            ..GithubRepos::default()
        };
        let rules = IntakeRules {
            trigger: "/oz",
            policy: &policy,
            bot_login: None,
            repos: &repos,
            delivery,
        };
        parse_event(event, value.to_string().as_bytes(), &rules).unwrap()
    }

    #[test]
    fn reviews_openings_and_labels_carry_commands_with_their_own_keys() {
        let pull = json!({ "number": 5, "title": "T", "body": "/oz in the body", "html_url": "u",
                           "head": { "ref": "f" }, "base": { "ref": "main" },
                           "user": { "login": "alice", "id": 1, "type": "User" } });
        let review = json!({ "action": "submitted", "pull_request": pull, "repository": { "full_name": "acme/widgets" },
                             "review": { "id": 77, "body": "Nice.\n/oz tidy up", "user": { "login": "bob", "id": 2, "type": "User" } } });
        let GithubIntake::Command {
            dedupe_key,
            command,
        } = decide_with("pull_request_review", &review, "d-1")
        else {
            panic!("a review body with a command");
        };
        assert!(
            dedupe_key.starts_with("github:acme/widgets:review:77:"),
            "{dedupe_key}"
        );
        assert_eq!(command.author.name(), "bob");
        assert!(
            matches!(&command.origin, Origin::Github(g) if g.comment_kind == CommentKind::ReviewBody && g.comment_id == 77)
        );
        let mut dismissed = review.clone();
        dismissed["action"] = json!("dismissed");
        assert_eq!(
            decide_with("pull_request_review", &dismissed, "d-1"),
            GithubIntake::Ignored("review action not handled")
        );

        let opened = json!({ "action": "opened", "pull_request": pull, "repository": { "full_name": "acme/widgets" },
                             "sender": { "login": "alice", "id": 1, "type": "User" } });
        let GithubIntake::Command {
            dedupe_key,
            command,
        } = decide_with("pull_request", &opened, "d-2")
        else {
            panic!("an opening body with a command");
        };
        assert!(
            dedupe_key.starts_with("github:acme/widgets:opened:5:"),
            "{dedupe_key}"
        );
        assert_eq!(command.typed_line().unwrap().args, "in the body");

        let labeled = json!({ "action": "labeled", "label": { "name": "oz" },
                              "issue": { "number": 9, "title": "T", "body": "b", "html_url": "u", "labels": [{ "name": "oz" }] },
                              "repository": { "full_name": "acme/widgets" },
                              "sender": { "login": "carol", "id": 3, "type": "User" } });
        let key = |delivery| match decide_with("issues", &labeled, delivery) {
            GithubIntake::Command {
                dedupe_key,
                command,
            } => {
                assert_eq!(command.author.name(), "carol", "who added the label asks");
                assert_eq!(command.request, Request::Labeled { label: "oz".into() });
                assert_eq!(command.context.labels, ["oz"]);
                dedupe_key
            }
            other => panic!("{other:?}"),
        };
        // A redelivery is the same request; a new addition is a new one.
        assert_eq!(key("d-3"), key("d-3"));
        assert_ne!(key("d-3"), key("d-4"));
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
