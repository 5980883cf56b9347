//! The Slack app manifest: slash command, event subscriptions, interactivity and bot
//! scopes, so creating the app is one paste.

use serde_json::{Value, json};

/// The manifest for a deployment reachable at `base_url`.
pub fn manifest(base_url: &str) -> Value {
    let base = base_url.trim_end_matches('/');
    json!({
        "display_information": {
            "name": "Oz",
            "description": "Start and follow Warp Oz cloud agents from Slack",
            "background_color": "#1d1d1d"
        },
        "features": {
            "bot_user": { "display_name": "oz", "always_online": true },
            "slash_commands": [{
                "command": "/oz",
                "url": format!("{base}/slack/commands"),
                "description": "Start an Oz agent, or cancel / status / help",
                "usage_hint": "fix the flaky login test --env ENV_ID",
                "should_escape": false
            }]
        },
        "oauth_config": {
            "scopes": {
                "bot": [
                    "app_mentions:read", "channels:history", "groups:history", "im:history",
                    "mpim:history", "chat:write", "commands", "reactions:write", "files:read"
                ]
            }
        },
        "settings": {
            "event_subscriptions": {
                "request_url": format!("{base}/slack/events"),
                "bot_events": ["app_mention", "message.im"]
            },
            "interactivity": { "is_enabled": true, "request_url": format!("{base}/slack/interactions") },
            "org_deploy_enabled": false,
            "socket_mode_enabled": false,
            "token_rotation_enabled": false
        }
    })
}
