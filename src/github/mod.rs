//! Everything GitHub: the REST client (App or token auth), the status-comment
//! rendering, and an in-process fake GitHub for the demo and the tests.

mod auth;
mod client;
pub mod fake;
pub mod render;

pub use client::{CommentRef, GithubClient, GithubError, Permission};
