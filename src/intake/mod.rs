//! Intake: turning signed platform requests into verified commands. Pure functions over
//! headers and raw bytes; nothing here does I/O.

pub mod github;
pub mod signature;
pub mod slack;
