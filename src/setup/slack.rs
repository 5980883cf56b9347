//! `ozbridge setup slack`: the link that opens Slack's "create app from manifest" with
//! ozbridge's manifest filled in, and the steps that remain.

/// Slack's page that creates an app from the manifest in its query.
const CREATE_FROM_MANIFEST: &str = "https://api.slack.com/apps?new_app=1&manifest_json=";

/// The link that creates the Slack app for a deployment at `public_url`.
pub fn create_app_link(public_url: &str) -> String {
    let manifest = crate::slack::manifest::manifest(public_url).to_string();
    let encoded: String = url::form_urlencoded::byte_serialize(manifest.as_bytes()).collect();
    format!("{CREATE_FROM_MANIFEST}{encoded}")
}

/// What to do, step by step, for a deployment at `public_url`.
pub fn steps(public_url: &str) -> String {
    format!(
        "1. Create the app (Slack opens with the manifest filled in; pick the workspace, review, Create):\n   {link}\n\
         2. Install it: Settings > Install App > Install to Workspace, and allow.\n\
         3. Copy the Bot User OAuth Token (xoxb-...) from that page and the Signing Secret from\n   \
            Basic Information > App Credentials, and give them to ozbridge, e.g. on Fly.io:\n   \
            fly secrets set SLACK_BOT_TOKEN=xoxb-... SLACK_SIGNING_SECRET=...\n   \
            (or add both lines to ozbridge.env).\n\
         4. Invite the bot where it should work: /invite @oz in each channel.\n\
         5. With both set here too, `ozbridge setup slack` (or `ozbridge check-config --online`)\n   \
            checks them against Slack.\n",
        link = create_app_link(public_url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_carries_the_whole_manifest() {
        let link = create_app_link("https://oz.example.com");
        let query = link.split_once('?').unwrap().1;
        let pairs: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(pairs["new_app"], "1");
        let manifest: serde_json::Value = serde_json::from_str(&pairs["manifest_json"]).unwrap();
        assert_eq!(
            manifest,
            crate::slack::manifest::manifest("https://oz.example.com")
        );
        assert_eq!(
            manifest["features"]["slash_commands"][0]["url"],
            "https://oz.example.com/slack/commands"
        );
    }
}
