//! Requests as Slack sends them to ozbridge: slash-command forms, Events API callbacks
//! and `block_actions` interactions, shaped as Slack's documentation shows them.

use serde_json::{Value, json};

/// The bot's user id in the fake workspace.
pub const BOT_USER: &str = "UOZBOT";
/// The fake workspace.
pub const TEAM: &str = "T0ACME";
/// The Slack app's id, as Slack names it in every request.
pub const APP_ID: &str = "A0OZ";

/// Form body of a slash command as Slack sends it.
pub fn slash_command_body(
    channel: &str,
    user: &str,
    text: &str,
    response_url: &str,
    trigger_id: &str,
) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", "deprecated-verification-token")
        .append_pair("team_id", TEAM)
        .append_pair("team_domain", "acme")
        .append_pair("channel_id", channel)
        .append_pair("channel_name", "eng")
        .append_pair("user_id", user)
        .append_pair("user_name", user)
        .append_pair("command", "/oz")
        .append_pair("text", text)
        .append_pair("response_url", response_url)
        .append_pair("trigger_id", trigger_id)
        .append_pair("api_app_id", APP_ID)
        .finish()
}

/// An Events API `app_mention` callback as Slack sends it.
pub fn mention_event(
    event_id: &str,
    channel: &str,
    user: &str,
    text: &str,
    ts: &str,
    thread_ts: Option<&str>,
) -> Value {
    let mut event = json!({ "type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts });
    if let Some(thread) = thread_ts {
        event["thread_ts"] = json!(thread);
    }
    json!({
        "token": "deprecated", "team_id": TEAM, "api_app_id": APP_ID, "type": "event_callback",
        "event_id": event_id, "event_time": 1_700_000_000, "event": event,
        "authorizations": [{ "team_id": TEAM, "user_id": BOT_USER, "is_bot": true }],
    })
}

/// A direct message to the bot.
pub fn direct_message_event(
    event_id: &str,
    channel: &str,
    user: &str,
    text: &str,
    ts: &str,
) -> Value {
    let mut value = mention_event(event_id, channel, user, text, ts, None);
    value["event"]["type"] = json!("message");
    value["event"]["channel_type"] = json!("im");
    value
}

/// Form body of a button press (`block_actions`).
pub fn button_body(
    action_id: &str,
    value: &str,
    channel: &str,
    user: &str,
    message_ts: &str,
    thread_ts: Option<&str>,
    response_url: &str,
) -> String {
    let mut message = json!({
        "type": "message", "user": BOT_USER, "bot_id": "BOZ", "ts": message_ts,
        "text": "Oz agent", "team": TEAM, "blocks": [],
    });
    if let Some(thread) = thread_ts {
        message["thread_ts"] = json!(thread);
    }
    let mut container = json!({
        "type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false,
    });
    if let Some(thread) = thread_ts {
        container["thread_ts"] = json!(thread);
    }
    let payload = json!({
        "type": "block_actions",
        "user": { "id": user, "username": user, "name": user, "team_id": TEAM },
        "api_app_id": APP_ID,
        "token": "deprecated-verification-token",
        "container": container,
        "team": { "id": TEAM, "domain": "acme" },
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": { "id": channel, "name": "eng" },
        "message": message,
        "state": { "values": {} },
        "response_url": response_url,
        "trigger_id": format!("trig-{}", crate::ids::new_uuid()),
        "actions": [{ "action_id": action_id, "block_id": "b", "value": value, "type": "button", "action_ts": "1700000000.1" }],
    });
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}
