//! Everything GitHub: webhook intake, the REST client (App or token auth), the
//! status-comment rendering, and the surface the pipeline talks to.

mod auth;
mod client;
pub mod intake;
pub mod policy;
pub mod render;
mod surface;

pub use client::{CommentRef, GithubClient, GithubError, Permission};
pub use surface::{GithubSurface, GithubSurfaceSettings};
