//! Everything GitHub: webhook intake, the REST client (App or token auth), the
//! status-comment rendering, the surface the pipeline talks to, and the App manifest.

mod auth;
mod client;
pub mod intake;
pub mod manifest;
pub mod policy;
pub mod render;
mod surface;

pub use client::{CommentRef, GithubClient, GithubError, Permission};
pub use surface::{GithubSurface, GithubSurfaceSettings};
