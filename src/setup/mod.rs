//! `ozbridge setup`: registering the GitHub App (GitHub's manifest flow, from a page on
//! loopback) and the Slack app (Slack's create-from-manifest link), and writing the
//! credentials where the deploy steps read them.

pub mod env_file;
pub mod github;
pub mod slack;
