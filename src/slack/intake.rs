//! Slack requests: signature with its timestamp window, and the three payload kinds
//! (slash commands, Events API callbacks, interactive button presses).

use crate::command::CommandLine;
use crate::domain::{
    Author, ButtonAction, InboxCommand, Origin, Request, ResponseUrl, SlackOrigin, ThreadContext,
};
use crate::intake::shape::{Object, is_slack_id, is_slack_ts, without_nul};
use crate::intake::signature::{SignatureError, hex_hmac, verify_hex_hmac};
use crate::slack::render::{ACTION_CANCEL, ACTION_DROP, ACTION_RETRY};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

/// Requests more than this far from now, either way, are refused (replay window).
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a Slack request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlackAuthError {
    #[error("the request timestamp is missing or malformed")]
    BadTimestamp,
    #[error("the request timestamp is more than five minutes away from now")]
    Stale,
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// Checks `X-Slack-Signature` over `v0:{timestamp}:{body}` and the timestamp window.
pub fn verify(
    secrets: &[SecretString],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SlackAuthError> {
    let ts_text = timestamp.ok_or(SlackAuthError::BadTimestamp)?;
    let ts: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| SlackAuthError::BadTimestamp)?;
    if (now - ts).abs() > MAX_SKEW_SECS {
        return Err(SlackAuthError::Stale);
    }
    verify_hex_hmac(
        secrets,
        signature,
        "v0=",
        &[b"v0:", ts_text.as_bytes(), b":", body],
    )?;
    Ok(())
}

/// `v0=<hex>` for a body at a timestamp, as Slack signs it.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex_hmac(
            secret,
            &[b"v0:", timestamp.to_string().as_bytes(), b":", body]
        )
    )
}

/// What intake decided about a Slack request.
#[derive(Debug, Clone, PartialEq)]
pub enum SlackIntake {
    /// `url_verification`: echo the challenge.
    Challenge(String),
    Ignored(&'static str),
    Command {
        dedupe_key: String,
        command: Box<InboxCommand>,
    },
}

/// A payload that is not what Slack sends.
#[derive(Debug, thiserror::Error)]
#[error("the Slack payload could not be read: {0}")]
pub struct PayloadError(String);

fn form_field<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Parses a form body.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A Slack id field, refused unless it is of Slack's alphabet.
fn slack_id(value: String, name: &str) -> Result<String, PayloadError> {
    if is_slack_id(&value) {
        Ok(value)
    } else {
        Err(PayloadError(format!("malformed {name}")))
    }
}

/// A message timestamp field, refused unless it is one.
fn slack_ts(value: String, name: &str) -> Result<String, PayloadError> {
    if is_slack_ts(&value) {
        Ok(value)
    } else {
        Err(PayloadError(format!("malformed {name}")))
    }
}

/// An opaque token Slack made (trigger ids): letters, digits, `.`, `-`, `_`.
fn is_token(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn line_of(text: &str) -> CommandLine {
    let mut lines = text.trim().splitn(2, '\n');
    let args = lines.next().unwrap_or_default().trim().to_owned();
    let continuation = lines.next().unwrap_or_default().trim().to_owned();
    CommandLine { args, continuation }
}

fn author(user: &str) -> Author {
    Author::Slack {
        user: user.to_owned(),
    }
}

/// A slash command (`/oz ...`).
pub fn parse_slash(body: &[u8]) -> Result<SlackIntake, PayloadError> {
    let pairs = form(body);
    let field = |key: &str| {
        form_field(&pairs, key)
            .map(str::to_owned)
            .ok_or_else(|| PayloadError(format!("missing {key}")))
    };
    let (team, channel, user, trigger) = (
        slack_id(field("team_id")?, "team_id")?,
        slack_id(field("channel_id")?, "channel_id")?,
        slack_id(field("user_id")?, "user_id")?,
        field("trigger_id")?,
    );
    if !is_token(&trigger) {
        return Err(PayloadError("malformed trigger_id".into()));
    }
    let text = without_nul(form_field(&pairs, "text").unwrap_or_default());
    let direct = channel.starts_with('D');
    let origin = Origin::Slack(SlackOrigin {
        team,
        channel,
        channel_name: form_field(&pairs, "channel_name").map(str::to_owned),
        thread_ts: None,
        message_ts: None,
        user: user.clone(),
        direct,
        response_url: form_field(&pairs, "response_url").map(|u| ResponseUrl(u.to_owned())),
    });
    let command = InboxCommand {
        origin,
        author: author(&user),
        request: Request::Typed {
            line: line_of(&text),
        },
        context: ThreadContext::default(),
        editor: None,
        approved_by: None,
    };
    Ok(SlackIntake::Command {
        dedupe_key: format!("slack:slash:{trigger}"),
        command: Box::new(command),
    })
}

/// An Events API request body.
#[derive(Deserialize)]
struct EventEnvelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    challenge: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    /// Read as [`EventHead`] first, so that events ozbridge does not handle (of other
    /// shapes) are ignored rather than refused.
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    authorizations: Vec<Object<Authorization>>,
}

/// Whom an event was delivered for: the bot's own user among them.
#[derive(Deserialize)]
struct Authorization {
    #[serde(default)]
    user_id: Option<String>,
}

/// What every event says about itself.
#[derive(Deserialize)]
struct EventHead {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    channel_type: Option<String>,
}

/// An `app_mention`, or a `message` in a direct conversation with the bot.
#[derive(Deserialize)]
struct MessageEvent {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    text: Option<String>,
    channel: Option<String>,
    ts: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
    /// Set on messages a bot posted (whatever its value).
    #[serde(default, deserialize_with = "present")]
    bot_id: bool,
    /// Set on edits, joins, bot messages and the like: not a person's plain message
    /// (`file_share`, a message with files, is one).
    #[serde(default)]
    subtype: Option<String>,
    /// Files shared with the message.
    #[serde(default)]
    files: Vec<Object<SharedFile>>,
}

/// A file shared with a message, as the Events API describes it.
#[derive(Deserialize)]
struct SharedFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mimetype: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    url_private_download: Option<String>,
    #[serde(default)]
    url_private: Option<String>,
}

impl SharedFile {
    fn reference(self) -> Option<crate::attachments::AttachmentRef> {
        let url = self.url_private_download.or(self.url_private)?;
        Some(crate::attachments::AttachmentRef {
            name: without_nul(self.name.as_deref().unwrap_or("file"))
                .chars()
                .take(100)
                .collect(),
            url,
            mime_type: self.mimetype,
            size: self.size,
        })
    }
}

/// True when the field is there, whatever it holds.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The request of a mention: the text from the line that starts by addressing the bot
/// (`<@BOT> fix …`, as `/oz` starts a line on GitHub); `None` when the bot is only named
/// inside a sentence ("you can count on @oz"). Without the bot's id (older payloads),
/// a line that starts with any mention counts.
fn addressed<'a>(text: &'a str, bot: Option<&str>) -> Option<&'a str> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(after) = trimmed.strip_prefix("<@") {
            let id = after.split(['>', '|']).next().unwrap_or_default();
            if bot.is_none_or(|bot| bot == id) {
                return Some(&text[offset + line.len() - trimmed.len()..]);
            }
        }
        offset += line.len();
    }
    None
}

/// Removes the leading `<@BOT>` mentions of a message.
fn strip_mentions(text: &str) -> &str {
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix("<@") {
        match after.find('>') {
            Some(end) => rest = after[end + 1..].trim_start(),
            None => break,
        }
    }
    rest
}

fn unreadable(error: serde_json::Error) -> PayloadError {
    PayloadError(error.to_string())
}

/// An Events API callback: `app_mention`, or a direct message to the bot.
pub fn parse_event(body: &[u8]) -> Result<SlackIntake, PayloadError> {
    let envelope: EventEnvelope = serde_json::from_slice(body).map_err(unreadable)?;
    match envelope.kind.as_str() {
        "url_verification" => {
            return Ok(SlackIntake::Challenge(
                envelope.challenge.unwrap_or_default(),
            ));
        }
        "event_callback" => {}
        _ => return Ok(SlackIntake::Ignored("envelope type not handled")),
    }
    let Some(event) = envelope.event else {
        return Ok(SlackIntake::Ignored("callback without an event"));
    };
    let Object(head) = Object::<EventHead>::deserialize(&event).map_err(unreadable)?;
    let direct = head.kind == "message" && head.channel_type.as_deref() == Some("im");
    if head.kind != "app_mention" && !direct {
        return Ok(SlackIntake::Ignored("event type not handled"));
    }
    let Object(message) = Object::<MessageEvent>::deserialize(&event).map_err(unreadable)?;
    let bot_user = envelope
        .authorizations
        .iter()
        .find_map(|Object(a)| a.user_id.as_deref());
    let user = message.user.unwrap_or_default();
    if message.bot_id
        || message
            .subtype
            .as_deref()
            .is_some_and(|s| s != "file_share")
        || user.is_empty()
        || Some(user.as_str()) == bot_user
    {
        return Ok(SlackIntake::Ignored(
            "message by a bot or not a plain message",
        ));
    }
    let (Some(channel), Some(ts)) = (message.channel, message.ts) else {
        return Err(PayloadError("event without channel or ts".into()));
    };
    let channel = slack_id(channel, "channel")?;
    let ts = slack_ts(ts, "ts")?;
    let user = slack_id(user, "user")?;
    let team = match envelope.team_id {
        Some(team) => slack_id(team, "team_id")?,
        None => String::new(),
    };
    let text = without_nul(&message.text.unwrap_or_default());
    let thread_ts = match message.thread_ts {
        Some(thread) => slack_ts(thread, "thread_ts")?,
        None => ts.clone(),
    };
    // In a direct message everything is for the bot; elsewhere only a line that
    // addresses it.
    let request = if direct {
        strip_mentions(&text)
    } else {
        match addressed(&text, bot_user) {
            Some(from_mention) => strip_mentions(from_mention),
            None => return Ok(SlackIntake::Ignored("the bot is named, not addressed")),
        }
    };
    let origin = Origin::Slack(SlackOrigin {
        team: team.clone(),
        channel: channel.clone(),
        channel_name: None,
        thread_ts: Some(thread_ts),
        message_ts: Some(ts.clone()),
        user: user.clone(),
        direct,
        response_url: None,
    });
    let command = InboxCommand {
        origin,
        author: author(&user),
        request: Request::Typed {
            line: line_of(request),
        },
        context: ThreadContext {
            attachments: message
                .files
                .into_iter()
                .filter_map(|Object(file)| file.reference())
                .take(crate::attachments::MAX_ATTACHMENTS + 5)
                .collect(),
            ..ThreadContext::default()
        },
        editor: None,
        approved_by: None,
    };
    // One key per message: Slack's retries and a re-send under a new event_id collapse.
    Ok(SlackIntake::Command {
        dedupe_key: format!("slack:{team}:{channel}:{ts}"),
        command: Box::new(command),
    })
}

/// What every interaction payload says about itself.
#[derive(Deserialize)]
struct InteractionHead {
    #[serde(rename = "type", default)]
    kind: String,
}

/// A `block_actions` payload: a button pressed on one of the bot's messages.
#[derive(Deserialize)]
struct BlockActions {
    team: Option<Object<Named>>,
    channel: Option<Object<Named>>,
    user: Option<Object<Named>>,
    message: Option<Object<PressedMessage>>,
    #[serde(default)]
    actions: Vec<Object<Action>>,
    #[serde(default)]
    trigger_id: Option<String>,
    #[serde(default)]
    response_url: Option<String>,
}

/// A team, channel or user as an interaction names it.
#[derive(Deserialize)]
struct Named {
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The message whose button was pressed.
#[derive(Deserialize)]
struct PressedMessage {
    ts: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
}

/// One pressed element.
#[derive(Deserialize)]
struct Action {
    action_id: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// A button press (`payload` form field of type `block_actions`).
pub fn parse_interaction(body: &[u8]) -> Result<SlackIntake, PayloadError> {
    let pairs = form(body);
    let payload =
        form_field(&pairs, "payload").ok_or_else(|| PayloadError("missing payload".into()))?;
    let value: Value = serde_json::from_str(payload).map_err(unreadable)?;
    let Object(head) = Object::<InteractionHead>::deserialize(&value).map_err(unreadable)?;
    if head.kind != "block_actions" {
        return Ok(SlackIntake::Ignored("interaction type not handled"));
    }
    let Object(press) = Object::<BlockActions>::deserialize(&value).map_err(unreadable)?;
    let Some((action_id, button_value)) = press
        .actions
        .into_iter()
        .next()
        .and_then(|Object(a)| Some((a.action_id?, a.value)))
    else {
        return Ok(SlackIntake::Ignored("no action"));
    };
    if !matches!(
        action_id.as_str(),
        ACTION_CANCEL | ACTION_RETRY | ACTION_DROP
    ) {
        return Ok(SlackIntake::Ignored("link button"));
    }
    let id = |named: Option<Object<Named>>| named.and_then(|Object(n)| n.id);
    let channel_name = press.channel.as_ref().and_then(|c| c.0.name.clone());
    let message = press.message.map(|Object(m)| m);
    let (Some(team), Some(channel), Some(user), Some(message_ts)) = (
        id(press.team),
        id(press.channel),
        id(press.user),
        message.as_ref().and_then(|m| m.ts.clone()),
    ) else {
        return Err(PayloadError(
            "button press without team, channel, user or message".into(),
        ));
    };
    let (team, channel, user) = (
        slack_id(team, "team.id")?,
        slack_id(channel, "channel.id")?,
        slack_id(user, "user.id")?,
    );
    let message_ts = slack_ts(message_ts, "message.ts")?;
    let thread_ts = match message.and_then(|m| m.thread_ts) {
        Some(thread) => slack_ts(thread, "message.thread_ts")?,
        None => message_ts.clone(),
    };
    // The button acts on the run whose status message it was pressed on; the value
    // only names that run, and the dispatcher checks the two agree.
    let run = crate::ids::RunRef(without_nul(&button_value.unwrap_or_default()));
    let pressed_on = crate::domain::PostId::SlackMessage {
        ts: message_ts.clone(),
    };
    let action = match action_id.as_str() {
        ACTION_CANCEL => ButtonAction::Cancel { run, pressed_on },
        ACTION_DROP => ButtonAction::Drop { run, pressed_on },
        _ => ButtonAction::Retry { run, pressed_on },
    };
    let trigger = match press.trigger_id {
        Some(trigger) if is_token(&trigger) => trigger,
        Some(_) => return Err(PayloadError("malformed trigger_id".into())),
        None => format!("{message_ts}:{user}:{action_id}"),
    };
    let origin = Origin::Slack(SlackOrigin {
        team,
        channel: channel.clone(),
        channel_name,
        thread_ts: Some(thread_ts),
        message_ts: None,
        user: user.clone(),
        direct: channel.starts_with('D'),
        response_url: press.response_url.map(ResponseUrl),
    });
    let command = InboxCommand {
        origin,
        author: author(&user),
        request: Request::Pressed { action },
        context: ThreadContext::default(),
        editor: None,
        approved_by: None,
    };
    Ok(SlackIntake::Command {
        dedupe_key: format!("slack:action:{trigger}"),
        command: Box::new(command),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::payloads::slack as fake;

    fn secrets() -> Vec<SecretString> {
        vec![
            SecretString::from("s1".to_owned()),
            SecretString::from("s2".to_owned()),
        ]
    }

    #[test]
    fn signatures_and_the_time_window() {
        let body = b"a=b";
        let now = 1_700_000_000;
        assert_eq!(
            verify(
                &secrets(),
                Some(&now.to_string()),
                Some(&sign("s2", now, body)),
                body,
                now
            ),
            Ok(())
        );
        let old = now - 301;
        assert_eq!(
            verify(
                &secrets(),
                Some(&old.to_string()),
                Some(&sign("s1", old, body)),
                body,
                now
            ),
            Err(SlackAuthError::Stale)
        );
        let future = now + 301;
        assert_eq!(
            verify(
                &secrets(),
                Some(&future.to_string()),
                Some(&sign("s1", future, body)),
                body,
                now
            ),
            Err(SlackAuthError::Stale)
        );
        assert_eq!(
            verify(&secrets(), None, Some(&sign("s1", now, body)), body, now),
            Err(SlackAuthError::BadTimestamp)
        );
        let wrong = sign("nope", now, body);
        assert!(matches!(
            verify(&secrets(), Some(&now.to_string()), Some(&wrong), body, now),
            Err(SlackAuthError::Signature(_))
        ));
    }

    #[test]
    fn mentions_are_stripped_and_keyed_by_message() {
        let event = fake::mention_event(
            "Ev1",
            "C1",
            "U1",
            "<@UOZBOT> summarize this --new",
            "111.1",
            Some("100.0"),
        );
        let SlackIntake::Command {
            dedupe_key,
            command,
        } = parse_event(event.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(dedupe_key, "slack:T0ACME:C1:111.1");
        assert_eq!(command.typed_line().unwrap().args, "summarize this --new");
        assert_eq!(
            command.origin.thread_key().as_str(),
            "slack:T0ACME:C1:100.0"
        );
        // Addressed at the start of a later line: the request starts there.
        let later = fake::mention_event(
            "Ev3",
            "C1",
            "U1",
            "Thanks all!\n  <@UOZBOT> fix the login\nit fails on Safari",
            "112.1",
            None,
        );
        let SlackIntake::Command { command, .. } =
            parse_event(later.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        let line = command.typed_line().unwrap();
        assert_eq!(line.args, "fix the login");
        assert_eq!(line.continuation, "it fails on Safari");
        // Named inside a sentence, or someone else addressed: not a request.
        for text in [
            "you can count on <@UOZBOT> for this",
            "<@UALICE> could you ask <@UOZBOT>?",
        ] {
            let named = fake::mention_event("Ev4", "C1", "U1", text, "113.1", None);
            assert_eq!(
                parse_event(named.to_string().as_bytes()).unwrap(),
                SlackIntake::Ignored("the bot is named, not addressed"),
                "{text}"
            );
        }
        let mut bot = fake::mention_event("Ev2", "C1", "U1", "hi", "1.1", None);
        bot["event"]["bot_id"] = "B1".into();
        assert_eq!(
            parse_event(bot.to_string().as_bytes()).unwrap(),
            SlackIntake::Ignored("message by a bot or not a plain message")
        );
        let challenge = serde_json::json!({ "type": "url_verification", "challenge": "xyz" });
        assert_eq!(
            parse_event(challenge.to_string().as_bytes()).unwrap(),
            SlackIntake::Challenge("xyz".into())
        );
    }

    #[test]
    fn slash_commands_and_buttons() {
        let body = fake::slash_command_body(
            "C1",
            "U1",
            "fix it --env prod",
            "https://hooks.slack.com/x",
            "trig1",
        );
        let SlackIntake::Command {
            dedupe_key,
            command,
        } = parse_slash(body.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(dedupe_key, "slack:slash:trig1");
        assert!(!command.origin.has_thread());
        let debug = format!("{command:?}");
        assert!(
            !debug.contains("hooks.slack.com"),
            "response_url must not appear in Debug output"
        );
        let press = fake::button_body(
            ACTION_CANCEL,
            "run-1",
            "C1",
            "U1",
            "5.5",
            None,
            "https://hooks.slack.com/y",
        );
        let SlackIntake::Command { command, .. } = parse_interaction(press.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            command.request,
            Request::Pressed {
                action: ButtonAction::Cancel {
                    run: crate::ids::RunRef("run-1".into()),
                    pressed_on: crate::domain::PostId::SlackMessage { ts: "5.5".into() },
                }
            }
        );
    }

    /// Slack's documented `block_actions` example (api.slack.com, "block_actions
    /// payload"), with a message container as for a button in a thread.
    #[test]
    fn slacks_documented_block_actions_payload_is_read() {
        let payload = serde_json::json!({
            "type": "block_actions",
            "user": { "id": "U0CA5", "username": "Amy McGee", "name": "Amy McGee", "team_id": "T3MDE" },
            "api_app_id": "A0CA5",
            "token": "Shh_its_a_seekrit",
            "container": { "type": "message", "message_ts": "1548261231.000200",
                "channel_id": "C0CA5", "is_ephemeral": false, "thread_ts": "1548261000.000100" },
            "trigger_id": "12466734323.1395872398",
            "team": { "id": "T0CAG", "domain": "acme-creamery" },
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": { "id": "C0CA5", "name": "general" },
            "message": { "type": "message", "ts": "1548261231.000200",
                "thread_ts": "1548261000.000100", "bot_id": "B0CA5", "text": "Oz agent", "blocks": [] },
            "state": { "values": {} },
            "response_url": "https://hooks.slack.com/actions/AABA1ABCD/1232321423432/D09sSasdasdAS9",
            "actions": [{ "action_id": ACTION_RETRY, "block_id": "=qXel", "text": { "type": "plain_text",
                "text": "Retry", "emoji": true }, "value": "run-9", "type": "button",
                "action_ts": "1548426417.840180" }],
        });
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        let SlackIntake::Command {
            dedupe_key,
            command,
        } = parse_interaction(body.as_bytes()).unwrap()
        else {
            panic!("a retry press is a command")
        };
        assert_eq!(dedupe_key, "slack:action:12466734323.1395872398");
        assert_eq!(
            command.author,
            Author::Slack {
                user: "U0CA5".into()
            }
        );
        let Origin::Slack(origin) = &command.origin else {
            panic!("a Slack origin")
        };
        assert_eq!(
            (origin.team.as_str(), origin.channel.as_str()),
            ("T0CAG", "C0CA5")
        );
        assert_eq!(origin.thread_ts.as_deref(), Some("1548261000.000100"));
        assert_eq!(origin.channel_name.as_deref(), Some("general"));
        assert_eq!(
            command.request,
            Request::Pressed {
                action: ButtonAction::Retry {
                    run: crate::ids::RunRef("run-9".into()),
                    pressed_on: crate::domain::PostId::SlackMessage {
                        ts: "1548261231.000200".into()
                    },
                }
            }
        );
        // Other interaction types, and events of other shapes, are ignored, not refused.
        let shortcut = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "payload",
                r#"{"type":"shortcut","callback_id":"x","user":[1]}"#,
            )
            .finish();
        assert!(matches!(
            parse_interaction(shortcut.as_bytes()),
            Ok(SlackIntake::Ignored(_))
        ));
        let reaction = br#"{"type":"event_callback","team_id":"T1","event":{"type":"reaction_added","user":"U1","item":{"type":"message"},"reaction":"eyes"}}"#;
        assert!(matches!(parse_event(reaction), Ok(SlackIntake::Ignored(_))));
        let mention_as_array = br#"{"type":"event_callback","team_id":"T1","event":[1,2]}"#;
        assert!(parse_event(mention_as_array).is_err());
    }

    #[test]
    fn ids_of_another_alphabet_and_nul_are_refused_or_cleaned() {
        let nul = '\0';
        let bad_channel = format!("C1{nul}");
        let body =
            fake::slash_command_body(&bad_channel, "U1", "fix", "https://hooks.slack.com/x", "t1");
        assert!(parse_slash(body.as_bytes()).is_err());
        let body = fake::slash_command_body("C1", "U1:2", "fix", "https://hooks.slack.com/x", "t1");
        assert!(parse_slash(body.as_bytes()).is_err());
        let task = format!("fix{nul} it");
        let body = fake::slash_command_body("C1", "U1", &task, "https://hooks.slack.com/x", "t1");
        let SlackIntake::Command { command, .. } = parse_slash(body.as_bytes()).unwrap() else {
            panic!()
        };
        assert!(!command.typed_line().unwrap().full_text().contains(nul));
        let event = fake::mention_event("E1", &bad_channel, "U1", "<@UOZBOT> fix", "1.1", None);
        assert!(parse_event(event.to_string().as_bytes()).is_err());
        let event = fake::mention_event("E1", "C1", "U1", "<@UOZBOT> fix", "1.1", Some("x.y"));
        assert!(parse_event(event.to_string().as_bytes()).is_err());
        let press = fake::button_body(
            ACTION_CANCEL,
            "r",
            &bad_channel,
            "U1",
            "1.1",
            None,
            "https://hooks.slack.com/y",
        );
        assert!(parse_interaction(press.as_bytes()).is_err());
    }
}
