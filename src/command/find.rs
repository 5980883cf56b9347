//! Finding the command line in a markdown comment: a line that starts with the trigger,
//! outside fenced or indented code and quotes.

/// The command found in a message: the text after the trigger on its line, plus the
/// lines of the same paragraph that follow it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandLine {
    /// Arguments on the trigger's line (options are parsed here).
    pub args: String,
    /// Following lines of the same paragraph, kept verbatim as more prompt text.
    pub continuation: String,
}

impl CommandLine {
    /// The command as one string, for comparing an edited message with its previous body.
    pub fn full_text(&self) -> String {
        if self.continuation.is_empty() {
            self.args.clone()
        } else {
            format!("{}\n{}", self.args, self.continuation)
        }
    }
}

/// Finds the first command in `body`. `trigger` is e.g. `/oz`; it must be followed by
/// whitespace or the end of the line.
pub fn find_command(body: &str, trigger: &str) -> Option<CommandLine> {
    let mut fence: Option<(char, usize)> = None;
    let mut lines = body.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some((marker, width)) = fence_marker(trimmed) {
            match fence {
                None if indent < 4 => fence = Some((marker, width)),
                Some((open, open_width))
                    if open == marker
                        && width >= open_width
                        && trimmed.trim_end().chars().all(|c| c == marker) =>
                {
                    fence = None
                }
                _ => {}
            }
            continue;
        }
        if fence.is_some() || indent >= 4 || trimmed.starts_with('>') {
            continue;
        }
        let Some(rest) = trimmed.strip_prefix(trigger) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
            continue;
        }
        let continuation: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.trim().is_empty() && fence_marker(l.trim_start()).is_none())
            .collect();
        return Some(CommandLine {
            args: rest.trim().to_owned(),
            continuation: continuation.join("\n").trim_end().to_owned(),
        });
    }
    None
}

/// `(marker char, run length)` when the line opens or closes a fenced code block.
fn fence_marker(trimmed: &str) -> Option<(char, usize)> {
    let first = trimmed.chars().next()?;
    if first != '`' && first != '~' {
        return None;
    }
    let width = trimmed.chars().take_while(|&c| c == first).count();
    (width >= 3).then_some((first, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(body: &str) -> Option<String> {
        find_command(body, "/oz").map(|c| c.args)
    }

    #[test]
    fn finds_a_command_at_line_start() {
        assert_eq!(args("/oz fix this").as_deref(), Some("fix this"));
        assert_eq!(
            args("Hi!\n  /oz fix the flaky test  \nthanks").as_deref(),
            Some("fix the flaky test")
        );
        assert_eq!(args("/oz").as_deref(), Some(""));
    }

    #[test]
    fn ignores_code_quotes_and_lookalikes() {
        assert_eq!(args("```\n/oz fix this\n```"), None);
        assert_eq!(args("~~~~sh\n/oz fix\n~~~\n/oz inside still\n~~~~"), None);
        assert_eq!(args("> /oz fix this"), None);
        assert_eq!(args("    /oz fix this"), None);
        assert_eq!(args("use `/oz fix this` to start"), None);
        assert_eq!(args("/ozzy fix"), None);
        assert_eq!(args("please /oz fix"), None);
        assert_eq!(
            args("```\ncode\n```\n/oz after the fence").as_deref(),
            Some("after the fence")
        );
    }

    #[test]
    fn takes_the_rest_of_the_paragraph() {
        let found = find_command(
            "/oz fix the login test\nIt fails on CI.\n\nUnrelated.",
            "/oz",
        )
        .unwrap();
        assert_eq!(found.args, "fix the login test");
        assert_eq!(found.continuation, "It fails on CI.");
        assert_eq!(found.full_text(), "fix the login test\nIt fails on CI.");
    }

    #[test]
    fn trigger_is_configurable() {
        assert_eq!(
            find_command("@oz do it", "@oz").map(|c| c.args).as_deref(),
            Some("do it")
        );
    }
}
