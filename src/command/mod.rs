//! The `/oz` command grammar shared by every surface. Pure: no I/O, no clock.

mod find;
mod parse;

pub use find::{find_command, CommandLine};
pub use parse::{parse, suggest, Command, CommandError, RunOptions};
