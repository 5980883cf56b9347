//! The `/oz` command grammar shared by every surface. Pure: no I/O, no clock.

mod find;
mod parse;

pub use find::{CommandLine, find_command};
pub use parse::{Command, CommandError, RunOptions, parse, suggest};
