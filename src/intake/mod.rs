//! Intake helpers every surface's intake shares: signature checks and the shape checks of
//! untrusted payloads. Each surface turns its own requests into commands
//! (`github::intake`, `slack::intake`); nothing here does I/O.

pub mod shape;
pub mod signature;

#[cfg(test)]
mod robustness {
    //! Arbitrary input never panics intake (a seeded random walk over near-valid payloads).

    fn mutate(rng: &mut fastrand::Rng, seed: &[u8]) -> Vec<u8> {
        let mut bytes = seed.to_vec();
        for _ in 0..rng.usize(1..8) {
            match rng.u8(0..3) {
                0 if !bytes.is_empty() => {
                    let i = rng.usize(..bytes.len());
                    bytes[i] = rng.u8(..);
                }
                1 if !bytes.is_empty() => {
                    let i = rng.usize(..bytes.len());
                    bytes.truncate(i);
                }
                _ => bytes.extend((0..rng.usize(1..16)).map(|_| rng.u8(..))),
            }
        }
        bytes
    }

    #[test]
    fn random_payloads_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        let policy = crate::config::GithubPolicy::default();
        let repos = crate::config::GithubRepos::default();
        let rules = crate::github::intake::IntakeRules {
            trigger: "/oz",
            policy: &policy,
            bot_login: None,
            repos: &repos,
            delivery: "d",
        };
        let github_seed = serde_json::json!({
            "action": "created",
            "comment": { "id": 7, "body": "/oz fix `it` --model x\n```\n/oz no\n```", "user": { "login": "a", "id": 1, "type": "User" } },
            "issue": { "number": 1, "title": "t", "body": "b", "html_url": "u", "pull_request": {} },
            "repository": { "full_name": "o/r" },
            "changes": { "body": { "from": "/oz old" } }
        })
        .to_string();
        let mention = crate::testkit::payloads::slack::mention_event(
            "E",
            "C",
            "U",
            "<@B> <@C> fix --new",
            "1.1",
            Some("1.0"),
        )
        .to_string();
        let slash = crate::testkit::payloads::slack::slash_command_body(
            "C",
            "U",
            "fix --env e",
            "https://hooks.slack.com/x",
            "t",
        );
        let press = crate::testkit::payloads::slack::button_body(
            "oz_cancel",
            "r",
            "C",
            "U",
            "1.1",
            None,
            "https://hooks.slack.com/y",
        );
        for _ in 0..3_000 {
            for event in ["issue_comment", "pull_request_review_comment"] {
                let _ = crate::github::intake::parse_event(
                    event,
                    &mutate(&mut rng, github_seed.as_bytes()),
                    &rules,
                );
            }
            let _ = crate::slack::intake::parse_event(&mutate(&mut rng, mention.as_bytes()));
            let _ = crate::slack::intake::parse_slash(&mutate(&mut rng, slash.as_bytes()));
            let _ = crate::slack::intake::parse_interaction(&mutate(&mut rng, press.as_bytes()));
            let text = String::from_utf8_lossy(&mutate(
                &mut rng,
                b"/oz fix it --model m --env e --skill s --new -- x",
            ))
            .into_owned();
            if let Some(line) = crate::command::find_command(&text, "/oz") {
                let _ = crate::command::parse(&line);
            }
        }
    }
}
