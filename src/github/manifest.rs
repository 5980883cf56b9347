//! The GitHub App manifest: what `ozbridge setup github` asks GitHub to register (the
//! webhook, the permissions and the events ozbridge needs), so creating the App is one
//! click.

use serde_json::{Value, json};

/// Repository permissions: comments and reactions on issues and pull requests, the
/// pull request's branches, the collaborator-permission check (metadata), and reading
/// the repository.
pub const PERMISSIONS: [(&str, &str); 4] = [
    ("issues", "write"),
    ("pull_requests", "write"),
    ("metadata", "read"),
    ("contents", "read"),
];

/// The webhook events ozbridge acts on.
pub const EVENTS: [&str; 5] = [
    "issue_comment",
    "pull_request_review_comment",
    "pull_request_review",
    "issues",
    "pull_request",
];

/// The manifest of an App named `name` for a deployment at `public_url`, whose
/// registration sends the browser back to `redirect_url`.
pub fn manifest(name: &str, public_url: &str, redirect_url: &str) -> Value {
    let base = public_url.trim_end_matches('/');
    let permissions: serde_json::Map<String, Value> = PERMISSIONS
        .iter()
        .map(|(what, level)| ((*what).to_owned(), Value::from(*level)))
        .collect();
    json!({
        "name": name,
        "description": "Start and follow Warp Oz cloud agents from issues and pull requests: comment `/oz <what to do>`.",
        "url": base,
        "hook_attributes": { "url": format!("{base}/github/webhook"), "active": true },
        "redirect_url": redirect_url,
        "public": false,
        "default_permissions": permissions,
        "default_events": EVENTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_points_at_the_deployment_and_the_app_is_private() {
        let manifest = manifest(
            "ozbridge-acme",
            "https://oz.example.com/",
            "http://127.0.0.1:4000/t/done",
        );
        assert_eq!(
            manifest["hook_attributes"]["url"],
            "https://oz.example.com/github/webhook"
        );
        assert_eq!(manifest["url"], "https://oz.example.com");
        assert_eq!(manifest["redirect_url"], "http://127.0.0.1:4000/t/done");
        assert_eq!(manifest["public"], false);
        assert_eq!(manifest["default_permissions"]["issues"], "write");
        assert_eq!(manifest["default_permissions"]["contents"], "read");
        assert_eq!(
            manifest["default_events"],
            json!([
                "issue_comment",
                "pull_request_review_comment",
                "pull_request_review",
                "issues",
                "pull_request"
            ])
        );
    }
}
