//! Properties of the `/oz` grammar over generated input: nothing panics, options given
//! anywhere on the line are read back as given, text after `--` is prompt, and a
//! command inside code or a quote is never found.

use ozbridge::command::{Command, CommandLine, find_command, parse};
use proptest::prelude::*;

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./:-]{1,12}".prop_filter("not an option", |w| !w.starts_with("--"))
}

fn line(args: &str) -> CommandLine {
    CommandLine {
        args: args.to_owned(),
        continuation: String::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_text_is_searched_and_parsed_without_panicking(text in any::<String>()) {
        if let Some(found) = find_command(&text, "/oz") {
            let _ = parse(&found);
        }
    }

    #[test]
    fn options_anywhere_on_the_line_are_read_back(
        before in proptest::collection::vec(word(), 1..4),
        after in proptest::collection::vec(word(), 0..4),
        model in word(),
        env in word(),
        new in any::<bool>(),
    ) {
        let mut parts = before.clone();
        parts.push(format!("--model {model}"));
        parts.extend(after.clone());
        parts.push(format!("--env {env}"));
        if new {
            parts.push("--new".into());
        }
        let Ok(Command::Run { prompt, options }) = parse(&line(&parts.join(" "))) else {
            return Err(TestCaseError::fail(format!("not a run: {parts:?}")));
        };
        prop_assert_eq!(options.model, Some(model));
        prop_assert_eq!(options.environment, Some(env));
        prop_assert_eq!(options.new_conversation, new);
        for word in before.iter().chain(&after) {
            prop_assert!(prompt.contains(word.as_str()), "{prompt:?} lost {word:?}");
        }
    }

    #[test]
    fn text_after_a_double_dash_is_prompt(head in word(), tail in "[ -~]{0,40}") {
        let args = format!("{head} -- --model {tail}");
        let Ok(Command::Run { prompt, options }) = parse(&line(&args)) else {
            return Err(TestCaseError::fail(format!("not a run: {args:?}")));
        };
        prop_assert_eq!(options.model, None);
        prop_assert!(prompt.contains("--model"), "{prompt:?}");
    }

    #[test]
    fn commands_in_code_or_quotes_are_never_found(task in "[a-z ]{1,30}", indent in 4usize..8) {
        let fenced = format!("look:\n```\n/oz {task}\n```\n");
        let quoted = format!("> /oz {task}\n");
        let indented = format!("text\n\n{}/oz {task}\n", " ".repeat(indent));
        prop_assert_eq!(find_command(&fenced, "/oz"), None);
        prop_assert_eq!(find_command(&quoted, "/oz"), None);
        prop_assert_eq!(find_command(&indented, "/oz"), None);
        let plain = format!("hello\n/oz {task}\n");
        prop_assert!(find_command(&plain, "/oz").is_some());
    }
}
