//! Slack intake (`parse_event`): any body never panics; what is accepted as a command names
//! its team, channel and user in Slack's alphabet and holds no NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ozbridge::slack::intake::{SlackIntake, parse_event};

fuzz_target!(|data: &[u8]| {
    if let Ok(SlackIntake::Command { command, dedupe_key }) = parse_event(data)
        && let ozbridge::domain::Origin::Slack(origin) = &command.origin
    {
        assert!(ozbridge::intake::shape::is_slack_id(&origin.channel));
        assert!(ozbridge::intake::shape::is_slack_id(&origin.user));
        assert!(!dedupe_key.contains('\0'));
        assert!(!serde_json::to_string(&command.request).unwrap().contains("\\u0000"));
    }
});
