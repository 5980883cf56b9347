//! Who may start runs from GitHub beyond write access: allow and deny lists of users,
//! the bots whose commands count, and the repositories where commands are accepted.

use serde::Deserialize;

/// Who may start runs, beyond write access.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubPolicy {
    /// Logins or numeric user ids that may always trigger.
    #[serde(default)]
    pub allow_users: Vec<String>,
    /// Logins or numeric user ids that may never trigger.
    #[serde(default)]
    pub deny_users: Vec<String>,
    /// Bot logins whose commands are accepted (other bots are ignored).
    #[serde(default)]
    pub allow_bots: Vec<String>,
    /// `owner/repo` names where commands are accepted; empty means every repository.
    #[serde(default)]
    pub enabled_repos: Vec<String>,
}

impl GithubPolicy {
    /// True when `list` names the user by login (any case) or numeric id.
    pub fn listed(list: &[String], login: &str, id: u64) -> bool {
        let id = id.to_string();
        list.iter()
            .any(|entry| entry.eq_ignore_ascii_case(login) || *entry == id)
    }
    /// True when the user is on the allow list.
    pub fn allows(&self, login: &str, id: u64) -> bool {
        Self::listed(&self.allow_users, login, id)
    }
    /// True when the user is on the deny list.
    pub fn denies(&self, login: &str, id: u64) -> bool {
        Self::listed(&self.deny_users, login, id)
    }
    /// True when commands in this repository are accepted.
    pub fn repo_enabled(&self, full_name: &str) -> bool {
        self.enabled_repos.is_empty()
            || self
                .enabled_repos
                .iter()
                .any(|r| r.eq_ignore_ascii_case(full_name))
    }
}
