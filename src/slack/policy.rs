//! Who may start runs from Slack: workspaces, channels, users and direct messages, and the
//! sentence each refused person is told.

use serde::Deserialize;

/// Who may start runs from Slack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackPolicy {
    /// Workspace (team) ids; empty means any workspace that reaches this app.
    #[serde(default)]
    pub allowed_teams: Vec<String>,
    /// Channel ids; empty means every channel the bot is in.
    #[serde(default)]
    pub allowed_channels: Vec<String>,
    /// User ids; empty means every user of an allowed workspace.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// Whether direct messages to the bot may start runs.
    #[serde(default = "yes")]
    pub allow_direct_messages: bool,
}

fn yes() -> bool {
    true
}

impl Default for SlackPolicy {
    fn default() -> Self {
        Self {
            allowed_teams: Vec::new(),
            allowed_channels: Vec::new(),
            allowed_users: Vec::new(),
            allow_direct_messages: true,
        }
    }
}

impl SlackPolicy {
    /// Why a user may not start runs here, if they may not (shown to them privately).
    pub fn refusal(&self, team: &str, channel: &str, user: &str, direct: bool) -> Option<String> {
        let listed = |list: &[String], id: &str| list.is_empty() || list.iter().any(|x| x == id);
        if !listed(&self.allowed_teams, team) {
            Some(
                "This Slack workspace is not allowed to start Oz agents through this ozbridge."
                    .into(),
            )
        } else if direct && !self.allow_direct_messages {
            Some("Oz agents cannot be started from direct messages here; mention me in a channel instead.".into())
        } else if !direct && !listed(&self.allowed_channels, channel) {
            Some("Oz agents cannot be started from this channel. Ask an admin to add it to ozbridge's allowed channels.".into())
        } else if !listed(&self.allowed_users, user) {
            Some("You are not on the list of people who may start Oz agents. Ask an admin of ozbridge to add you.".into())
        } else {
            None
        }
    }
}
