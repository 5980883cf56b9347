//! Slack requests: signature with its timestamp window, and the three payload kinds
//! (slash commands, Events API callbacks, interactive button presses).

use crate::command::CommandLine;
use crate::domain::{
    Author, ButtonAction, InboxCommand, Origin, ResponseUrl, SlackOrigin, ThreadContext,
};
use crate::intake::shape::{is_slack_id, is_slack_ts, without_nul};
use crate::intake::signature::{SignatureError, hex_hmac, verify_hex_hmac};
use crate::slack::render::{ACTION_CANCEL, ACTION_RETRY};
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
    Author {
        login: user.to_owned(),
        id: 0,
        is_bot: false,
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
        line: line_of(&text),
        context: ThreadContext::default(),
        action: None,
        editor: None,
    };
    Ok(SlackIntake::Command {
        dedupe_key: format!("slack:slash:{trigger}"),
        command: Box::new(command),
    })
}

#[derive(Deserialize)]
struct EventEnvelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    challenge: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    authorizations: Vec<Value>,
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

/// An Events API callback: `app_mention`, or a direct message to the bot.
pub fn parse_event(body: &[u8]) -> Result<SlackIntake, PayloadError> {
    let envelope: EventEnvelope =
        serde_json::from_slice(body).map_err(|e| PayloadError(e.to_string()))?;
    match envelope.kind.as_str() {
        "url_verification" => {
            return Ok(SlackIntake::Challenge(
                envelope.challenge.unwrap_or_default(),
            ));
        }
        "event_callback" => {}
        _ => return Ok(SlackIntake::Ignored("envelope type not handled")),
    }
    let event = envelope.event.unwrap_or(Value::Null);
    let text_of = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
    let kind = text_of("type").unwrap_or_default();
    let direct = kind == "message" && text_of("channel_type").as_deref() == Some("im");
    if kind != "app_mention" && !direct {
        return Ok(SlackIntake::Ignored("event type not handled"));
    }
    let bot_user = envelope
        .authorizations
        .iter()
        .find_map(|a| a.get("user_id").and_then(Value::as_str));
    let user = text_of("user").unwrap_or_default();
    if event.get("bot_id").is_some()
        || text_of("subtype").is_some()
        || user.is_empty()
        || Some(user.as_str()) == bot_user
    {
        return Ok(SlackIntake::Ignored(
            "message by a bot or not a plain message",
        ));
    }
    let (Some(channel), Some(ts)) = (text_of("channel"), text_of("ts")) else {
        return Err(PayloadError("event without channel or ts".into()));
    };
    let channel = slack_id(channel, "channel")?;
    let ts = slack_ts(ts, "ts")?;
    let user = slack_id(user, "user")?;
    let team = match envelope.team_id {
        Some(team) => slack_id(team, "team_id")?,
        None => String::new(),
    };
    let text = without_nul(&text_of("text").unwrap_or_default());
    let thread_ts = match text_of("thread_ts") {
        Some(thread) => slack_ts(thread, "thread_ts")?,
        None => ts.clone(),
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
        line: line_of(strip_mentions(&text)),
        context: ThreadContext::default(),
        action: None,
        editor: None,
    };
    // One key per message: Slack's retries and a re-send under a new event_id collapse.
    Ok(SlackIntake::Command {
        dedupe_key: format!("slack:{team}:{channel}:{ts}"),
        command: Box::new(command),
    })
}

/// A button press (`payload` form field of type `block_actions`).
pub fn parse_interaction(body: &[u8]) -> Result<SlackIntake, PayloadError> {
    let pairs = form(body);
    let payload =
        form_field(&pairs, "payload").ok_or_else(|| PayloadError("missing payload".into()))?;
    let value: Value = serde_json::from_str(payload).map_err(|e| PayloadError(e.to_string()))?;
    if value.get("type").and_then(Value::as_str) != Some("block_actions") {
        return Ok(SlackIntake::Ignored("interaction type not handled"));
    }
    let get = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let Some(action_id) = get("/actions/0/action_id") else {
        return Ok(SlackIntake::Ignored("no action"));
    };
    if !matches!(action_id.as_str(), ACTION_CANCEL | ACTION_RETRY) {
        return Ok(SlackIntake::Ignored("link button"));
    }
    let (Some(team), Some(channel), Some(user), Some(message_ts)) = (
        get("/team/id"),
        get("/channel/id"),
        get("/user/id"),
        get("/message/ts"),
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
    let thread_ts = match get("/message/thread_ts") {
        Some(thread) => slack_ts(thread, "message.thread_ts")?,
        None => message_ts.clone(),
    };
    // The button acts on the run whose status message it was pressed on; the value
    // only names that run, and the dispatcher checks the two agree.
    let run = crate::ids::RunRef(without_nul(&get("/actions/0/value").unwrap_or_default()));
    let pressed_on = crate::domain::PostId::SlackMessage {
        ts: message_ts.clone(),
    };
    let action = match action_id.as_str() {
        ACTION_CANCEL => ButtonAction::Cancel { run, pressed_on },
        _ => ButtonAction::Retry { run, pressed_on },
    };
    let trigger = match get("/trigger_id") {
        Some(trigger) if is_token(&trigger) => trigger,
        Some(_) => return Err(PayloadError("malformed trigger_id".into())),
        None => format!("{message_ts}:{user}:{action_id}"),
    };
    let origin = Origin::Slack(SlackOrigin {
        team,
        channel: channel.clone(),
        channel_name: get("/channel/name"),
        thread_ts: Some(thread_ts),
        message_ts: None,
        user: user.clone(),
        direct: channel.starts_with('D'),
        response_url: get("/response_url").map(ResponseUrl),
    });
    let command = InboxCommand {
        origin,
        author: author(&user),
        line: CommandLine {
            args: String::new(),
            continuation: String::new(),
        },
        context: ThreadContext::default(),
        action: Some(action),
        editor: None,
    };
    Ok(SlackIntake::Command {
        dedupe_key: format!("slack:action:{trigger}"),
        command: Box::new(command),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::slack as fake;

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
        assert_eq!(command.line.args, "summarize this --new");
        assert_eq!(
            command.origin.thread_key().as_str(),
            "slack:T0ACME:C1:100.0"
        );
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
            command.action,
            Some(ButtonAction::Cancel {
                run: crate::ids::RunRef("run-1".into()),
                pressed_on: crate::domain::PostId::SlackMessage { ts: "5.5".into() },
            })
        );
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
        assert!(!command.line.full_text().contains(nul));
        let event = fake::mention_event("E1", &bad_channel, "U1", "<@B> fix", "1.1", None);
        assert!(parse_event(event.to_string().as_bytes()).is_err());
        let event = fake::mention_event("E1", "C1", "U1", "<@B> fix", "1.1", Some("x.y"));
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
