//! Everything GitHub: webhook intake, the REST client (App or token auth), the
//! status-comment rendering, the surface the pipeline talks to, and the App manifest.

mod auth;
mod client;
mod context;
pub mod intake;
pub mod manifest;
pub mod policy;
pub mod render;
pub mod repo_config;
mod surface;

pub use client::{CommentRef, GithubClient, GithubError, Permission, RepoFileFetch};

/// GitHub's web address for an API base: `https://github.com` for
/// `https://api.github.com`, `https://HOST` for a GitHub Enterprise `https://HOST/api/v3`.
pub fn web_url_of(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if api == "https://api.github.com" {
        return "https://github.com".into();
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_owned()
}
pub use surface::{GithubSurface, GithubSurfaceSettings};

#[cfg(test)]
mod tests {
    #[test]
    fn the_web_address_follows_the_api_base() {
        assert_eq!(
            super::web_url_of("https://api.github.com/"),
            "https://github.com"
        );
        assert_eq!(
            super::web_url_of("https://ghe.acme.dev/api/v3"),
            "https://ghe.acme.dev"
        );
    }
}
