//! Stored commands as the intakes make them, for tests and benchmarks that write to the
//! store directly.

use crate::command::CommandLine;
use crate::domain::{
    Author, CommentKind, GithubOrigin, InboxCommand, Origin, Request, ThreadContext,
};

/// `/oz <args>` written by alice in a comment (whose id is the issue's number) on issue
/// `number` of acme/widgets.
pub fn github_command(number: u64, args: &str) -> InboxCommand {
    InboxCommand {
        origin: Origin::Github(GithubOrigin {
            repo: "acme/widgets".into(),
            installation_id: None,
            number,
            comment_id: number,
            comment_kind: CommentKind::Issue,
            review_thread: None,
        }),
        author: Author::Github {
            login: "alice".into(),
            id: 1,
            is_bot: false,
        },
        request: Request::Typed {
            line: CommandLine {
                args: args.into(),
                continuation: String::new(),
            },
        },
        context: ThreadContext::default(),
        editor: None,
        approved_by: None,
    }
}
