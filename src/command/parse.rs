//! Parsing a command line into a typed [`Command`], with errors written for the user.

use super::CommandLine;
use crate::oz::types::HarnessKind;

/// Options of a run request.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// `--model ID`
    pub model: Option<String>,
    /// `--env ID`
    pub environment: Option<String>,
    /// `--skill SPEC`
    pub skill: Option<String>,
    /// `--new`: do not continue the thread's previous conversation.
    pub new_conversation: bool,
    /// `--harness oz|claude|gemini`
    #[serde(default)]
    pub harness: Option<HarnessKind>,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start a run.
    Run { prompt: String, options: RunOptions },
    /// Cancel the thread's active run.
    Cancel,
    /// Report the thread's latest run.
    Status,
    /// Start the thread's last run again, when it failed with a retryable error.
    Retry,
    /// Empty the thread's queue of instructions.
    Drop,
    /// Let the outsiders' requests waiting in the thread run.
    Approve,
    /// Turn the outsiders' requests waiting in the thread down.
    Deny,
    /// Show usage.
    Help,
    /// List models.
    Models,
    /// List agents (skills).
    Agents,
}

/// A command the user must correct; the text is shown to them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("`{option}` is not an option I know.{}", did_you_mean(suggestion))]
    UnknownOption {
        option: String,
        suggestion: Option<String>,
    },
    #[error("`{option}` needs a value, for example `{option} {example}`.")]
    MissingValue { option: String, example: String },
    #[error("`{option}` is given twice.")]
    DuplicateOption { option: String },
    #[error("There is nothing to do: add what you want the agent to do after the options.")]
    EmptyPrompt,
    #[error("`{given}` is not a model I know.{}", did_you_mean(suggestion))]
    UnknownModel {
        given: String,
        suggestion: Option<String>,
    },
    #[error("`{given}` is not a skill I know.{}", did_you_mean(suggestion))]
    UnknownSkill {
        given: String,
        suggestion: Option<String>,
    },
    #[error(
        "`{given}` is not a harness: use `oz`, `claude` or `gemini`.{}",
        did_you_mean(suggestion)
    )]
    UnknownHarness {
        given: String,
        suggestion: Option<String>,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" Did you mean `{s}`?"))
        .unwrap_or_default()
}

const OPTIONS: [&str; 5] = ["--model", "--env", "--skill", "--new", "--harness"];

/// Parses a found command line.
pub fn parse(line: &CommandLine) -> Result<Command, CommandError> {
    let words: Vec<&str> = line.args.split_whitespace().collect();
    if words.is_empty() && line.continuation.is_empty() {
        return Ok(Command::Help);
    }
    if words.len() == 1 && line.continuation.is_empty() {
        match words[0].to_ascii_lowercase().as_str() {
            "cancel" | "stop" => return Ok(Command::Cancel),
            "status" => return Ok(Command::Status),
            "retry" => return Ok(Command::Retry),
            "drop" => return Ok(Command::Drop),
            "approve" => return Ok(Command::Approve),
            "deny" => return Ok(Command::Deny),
            "help" => return Ok(Command::Help),
            "models" => return Ok(Command::Models),
            "agents" | "skills" => return Ok(Command::Agents),
            _ => {}
        }
    }
    let mut options = RunOptions::default();
    let mut prompt_words = Vec::new();
    let mut rest = words.into_iter();
    let mut options_ended = false;
    while let Some(word) = rest.next() {
        if options_ended || !word.starts_with("--") {
            prompt_words.push(word);
            continue;
        }
        if word == "--" {
            options_ended = true;
            continue;
        }
        let (name, inline_value) = match word.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (word, None),
        };
        let mut value = |example: &str| -> Result<String, CommandError> {
            inline_value
                .clone()
                .filter(|v| !v.is_empty())
                .or_else(|| {
                    rest.next()
                        .filter(|v| !v.starts_with("--"))
                        .map(str::to_owned)
                })
                .ok_or_else(|| CommandError::MissingValue {
                    option: name.to_owned(),
                    example: example.to_owned(),
                })
        };
        let slot = match name {
            "--model" => (&mut options.model, value("claude-4-sonnet")?),
            "--env" => (&mut options.environment, value("ENVIRONMENT_ID")?),
            "--skill" => (&mut options.skill, value("owner/repo:path/to/SKILL.md")?),
            "--harness" => {
                let given = value("claude")?;
                let Some(kind) = HarnessKind::named(&given) else {
                    return Err(CommandError::UnknownHarness {
                        suggestion: suggest(
                            &given.to_ascii_lowercase(),
                            HarnessKind::ALL.iter().map(|(name, _)| *name),
                        ),
                        given,
                    });
                };
                if options.harness.replace(kind).is_some() {
                    return Err(CommandError::DuplicateOption {
                        option: name.into(),
                    });
                }
                continue;
            }
            "--new" => {
                if options.new_conversation {
                    return Err(CommandError::DuplicateOption {
                        option: name.into(),
                    });
                }
                options.new_conversation = true;
                continue;
            }
            unknown => {
                return Err(CommandError::UnknownOption {
                    option: unknown.to_owned(),
                    suggestion: suggest(unknown, OPTIONS.iter().copied()),
                });
            }
        };
        if slot.0.replace(slot.1).is_some() {
            return Err(CommandError::DuplicateOption {
                option: name.into(),
            });
        }
    }
    let mut prompt = prompt_words.join(" ");
    if !line.continuation.is_empty() {
        if !prompt.is_empty() {
            prompt.push('\n');
        }
        prompt.push_str(&line.continuation);
    }
    if prompt.trim().is_empty() && options.skill.is_none() {
        return Err(CommandError::EmptyPrompt);
    }
    Ok(Command::Run { prompt, options })
}

/// The closest candidate to `given`, when it is close enough to be a likely typo.
pub fn suggest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(given, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &str) -> Result<Command, CommandError> {
        parse(&CommandLine {
            args: args.into(),
            continuation: String::new(),
        })
    }

    #[test]
    fn prompts_with_options_anywhere() {
        let parsed = cmd("fix the flaky login test --env prod-mirror --model=gpt-5 --new").unwrap();
        assert_eq!(
            parsed,
            Command::Run {
                prompt: "fix the flaky login test".into(),
                options: RunOptions {
                    model: Some("gpt-5".into()),
                    environment: Some("prod-mirror".into()),
                    skill: None,
                    new_conversation: true,
                    harness: None,
                },
            }
        );
        let Command::Run { options, .. } = cmd("review this --harness Claude").unwrap() else {
            panic!()
        };
        assert_eq!(options.harness, Some(HarnessKind::Claude));
        assert_eq!(
            cmd("review --harness claud").unwrap_err().to_string(),
            "`claud` is not a harness: use `oz`, `claude` or `gemini`. Did you mean `claude`?"
        );
        assert!(matches!(
            cmd("review --harness gemini --harness oz"),
            Err(CommandError::DuplicateOption { .. })
        ));
        assert_eq!(
            cmd("-- --model is a flag in our CLI").unwrap(),
            Command::Run {
                prompt: "--model is a flag in our CLI".into(),
                options: RunOptions::default()
            }
        );
    }

    #[test]
    fn subcommands_are_single_words() {
        assert_eq!(cmd("cancel").unwrap(), Command::Cancel);
        assert_eq!(cmd("STATUS").unwrap(), Command::Status);
        assert_eq!(cmd("").unwrap(), Command::Help);
        assert_eq!(cmd("models").unwrap(), Command::Models);
        assert_eq!(cmd("agents").unwrap(), Command::Agents);
        assert!(matches!(
            cmd("help me fix the build").unwrap(),
            Command::Run { .. }
        ));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let err = cmd("fix it --modle gpt-5").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`--modle` is not an option I know. Did you mean `--model`?"
        );
        let err = cmd("fix it --model").unwrap_err();
        assert!(err.to_string().contains("needs a value"), "{err}");
        assert_eq!(cmd("--new").unwrap_err(), CommandError::EmptyPrompt);
        assert!(matches!(
            cmd("a --env x --env y").unwrap_err(),
            CommandError::DuplicateOption { .. }
        ));
        assert!(matches!(
            cmd("a --frobnicate").unwrap_err(),
            CommandError::UnknownOption {
                suggestion: None,
                ..
            }
        ));
    }

    #[test]
    fn skill_alone_is_enough() {
        let parsed = cmd("--skill acme/agents:triage/SKILL.md").unwrap();
        assert!(
            matches!(parsed, Command::Run { prompt, options } if prompt.is_empty() && options.skill.is_some())
        );
    }

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(
            suggest("gpt5", ["gpt-5", "claude-4-opus"]).as_deref(),
            Some("gpt-5")
        );
        assert_eq!(suggest("zzz", ["gpt-5", "claude-4-opus"]), None);
    }
}
