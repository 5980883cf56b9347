//! Webhook deliveries as GitHub sends them to ozbridge.

use serde_json::json;

/// An `issue_comment` webhook payload as GitHub sends it (the fields ozbridge reads,
/// plus a few it ignores).
pub struct CommentEventSpec<'a> {
    pub action: &'a str,
    pub repo: &'a str,
    pub number: u64,
    pub title: &'a str,
    pub issue_body: &'a str,
    pub is_pull_request: bool,
    pub comment_id: u64,
    pub author: &'a str,
    pub author_id: u64,
    pub author_type: &'a str,
    pub body: &'a str,
    pub previous_body: Option<&'a str>,
    pub installation: Option<u64>,
}

impl<'a> CommentEventSpec<'a> {
    /// A comment created by a user on an issue; the other fields hold plain defaults
    /// (override them with struct update syntax).
    pub fn created(
        repo: &'a str,
        number: u64,
        comment_id: u64,
        author: &'a str,
        body: &'a str,
    ) -> Self {
        Self {
            action: "created",
            repo,
            number,
            title: "Login test is flaky",
            issue_body: "",
            is_pull_request: false,
            comment_id,
            author,
            author_id: 1001,
            author_type: "User",
            body,
            previous_body: None,
            installation: None,
        }
    }

    /// The JSON payload.
    pub fn payload(&self) -> serde_json::Value {
        let kind = if self.is_pull_request {
            "pull"
        } else {
            "issues"
        };
        let mut issue = json!({
            "number": self.number,
            "title": self.title,
            "body": self.issue_body,
            "html_url": format!("https://github.com/{}/{kind}/{}", self.repo, self.number),
            "state": "open",
            "user": { "login": "reporter", "id": 500, "type": "User" },
        });
        if self.is_pull_request {
            issue["pull_request"] = json!({ "url": format!("https://api.github.com/repos/{}/pulls/{}", self.repo, self.number) });
        }
        let mut payload = json!({
            "action": self.action,
            "issue": issue,
            "comment": {
                "id": self.comment_id,
                "body": self.body,
                "html_url": format!("https://github.com/{}/issues/{}#issuecomment-{}", self.repo, self.number, self.comment_id),
                "author_association": "MEMBER",
                "user": { "login": self.author, "id": self.author_id, "type": self.author_type },
            },
            "repository": { "full_name": self.repo, "private": false, "owner": { "login": self.repo.split('/').next().unwrap_or_default() } },
            "sender": { "login": self.author, "id": self.author_id, "type": self.author_type },
        });
        if let Some(previous) = self.previous_body {
            payload["changes"] = json!({ "body": { "from": previous } });
        }
        if let Some(id) = self.installation {
            payload["installation"] = json!({ "id": id });
        }
        payload
    }
}
