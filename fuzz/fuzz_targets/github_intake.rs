//! GitHub intake: any headers and body, signed or not, never panic; what is accepted
//! as a command is of the documented shape (an `owner/name` repository).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ozbridge::github::intake::{GithubIntake, IntakeRules, parse_event};

const EVENTS: [&str; 4] = ["issue_comment", "pull_request_review_comment", "ping", "push"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // The signature check over arbitrary header text and body.
    let split = rest.len().min(usize::from(selector) % 80);
    let (header, body) = rest.split_at(split);
    let secrets = [secrecy::SecretString::from("s3cret".to_owned())];
    let header = String::from_utf8_lossy(header);
    let _ = ozbridge::intake::signature::verify_hex_hmac(&secrets, Some(&header), "sha256=", &[body]);
    let policy = ozbridge::config::GithubPolicy::default();
    let rules = IntakeRules { trigger: "/oz", policy: &policy, bot_login: Some("ozbridge[bot]") };
    let event = EVENTS[usize::from(selector) % EVENTS.len()];
    if let Ok(GithubIntake::Command { command, .. }) = parse_event(event, body, &rules)
        && let ozbridge::domain::Origin::Github(origin) = &command.origin
    {
        assert!(ozbridge::intake::shape::is_repo_full_name(origin.repo.as_str()));
        assert!(!serde_json::to_string(&command.request).unwrap().contains("\\u0000"));
    }
});
