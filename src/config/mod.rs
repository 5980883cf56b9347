//! Configuration: declared defaults < TOML file < environment, every setting declared
//! once in [`declared::SETTINGS`] (file key, environment name, default). Secrets are held
//! as `SecretString`, so they never reach a log line, and `check-config` redacts them.

pub use crate::github::policy::GithubPolicy;
pub use crate::github::repo_config::{GithubRepos, RepoSettings};
pub use crate::slack::policy::SlackPolicy;
pub use templates::{DEFAULT_PROMPT_TEMPLATE, DEFAULT_SLACK_PROMPT_TEMPLATE};

mod declared;
pub mod templates;

use crate::oz::types::{HarnessKind, PublicAccess};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, named by the key that caused it.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`: {reason}")]
pub struct ConfigError {
    /// Environment variable or TOML key.
    pub key: String,
    /// What is wrong, for the operator.
    pub reason: String,
}

fn config_error(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How ozbridge authenticates to GitHub.
#[derive(Clone)]
pub enum GithubAuthSettings {
    /// A single token (`GITHUB_TOKEN`), for one account or organisation.
    Token(SecretString),
    /// A GitHub App minting per-installation tokens.
    App {
        app_id: u64,
        private_key_pem: SecretString,
    },
}

/// Settings of the Oz API and of the runs ozbridge creates.
#[derive(Clone)]
pub struct OzSettings {
    pub api_url: String,
    pub api_key: Option<SecretString>,
    pub environment_id: Option<String>,
    pub model_id: Option<String>,
    /// Harness of every run unless a command or place says otherwise (`OZ_HARNESS`).
    pub harness: Option<HarnessKind>,
    /// Anyone-with-link access to runs' sessions unless a place says otherwise
    /// (`OZ_SESSION_ACCESS`: `viewer` or `editor`; unset: only the Warp team).
    pub session_access: Option<PublicAccess>,
    /// `config.name` given to every run; the tracker lists runs by it.
    pub run_label: String,
    /// Time for one Oz call (`OZ_REQUEST_TIMEOUT_SECS`, `oz.request_timeout_secs`; default
    /// 30). A create without an answer is looked up, and only then sent again, after
    /// twice this.
    pub request_timeout: Duration,
    pub tick_interval: Duration,
    /// A working run's conversation is read for its checklist at most this often
    /// (`OZ_CONVERSATION_REFRESH_SECS`, `oz.conversation_refresh_secs`; default 15).
    pub conversation_refresh: Duration,
    /// Conversations read per tracker tick at most, over all runs
    /// (`OZ_CONVERSATION_BUDGET`, `oz.conversation_budget`; default 10; 0: no checklists).
    pub conversation_budget: usize,
}

/// Settings of the GitHub side.
#[derive(Clone)]
pub struct GithubSettings {
    pub api_url: String,
    pub auth: Option<GithubAuthSettings>,
    pub webhook_secrets: Vec<SecretString>,
    pub trigger: String,
    pub permission_cache_ttl: Duration,
    /// How long a repository's `.github/ozbridge.toml` is used before it is read again
    /// (`GITHUB_REPO_FILE_CACHE_SECS`, `github.repo_file_cache_secs`; default 60; the
    /// read is conditional, so an unchanged file costs no rate limit).
    pub repo_file_ttl: Duration,
    /// Time for one GitHub call (`GITHUB_REQUEST_TIMEOUT_SECS`, `github.request_timeout_secs`;
    /// default 20). A create without an answer is looked up after twice this.
    pub request_timeout: Duration,
    /// The bot's own login, when it is not a `[bot]` account (token mode).
    pub bot_login: Option<String>,
    pub policy: GithubPolicy,
    /// Repository settings: defaults, per-repository tables, and what a repository's
    /// own `.github/ozbridge.toml` may set.
    pub repos: GithubRepos,
}

/// Settings of the Slack side.
#[derive(Clone)]
pub struct SlackSettings {
    /// Web API base, ending in `/` (default `https://slack.com/api/`).
    pub api_url: String,
    pub bot_token: Option<SecretString>,
    pub signing_secrets: Vec<SecretString>,
    /// `response_url`s are only ever posted to when they start with this.
    pub response_url_prefix: String,
    /// Time for one Slack call (`SLACK_REQUEST_TIMEOUT_SECS`, `slack.request_timeout_secs`;
    /// default 20). A post without an answer is looked up after twice this.
    pub request_timeout: Duration,
    pub policy: SlackPolicy,
    pub channels: BTreeMap<String, ChannelSettings>,
}

/// Per-channel run defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    pub environment_id: Option<String>,
    pub model_id: Option<String>,
    pub skill: Option<String>,
    /// `oz`, `claude` or `gemini`.
    pub harness: Option<HarnessKind>,
    /// `viewer` or `editor`: the channel's readers may open runs' sessions by link.
    pub session_access: Option<PublicAccess>,
}

/// The whole effective configuration.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// Public base URL of this service, for links it writes (artifact downloads).
    pub public_url: Option<String>,
    /// Where `/metrics` is served instead of on `listen` (a private port, so a public
    /// listener does not show them).
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub oz: OzSettings,
    pub github: GithubSettings,
    pub slack: SlackSettings,
    /// Prompt template; see `config/ozbridge.example.toml` for the placeholders.
    pub prompt_template: String,
    /// Prompt template of runs started from Slack.
    pub slack_prompt_template: String,
    /// Workers per pipeline stage (`OZBRIDGE_WORKERS`, default 4; 0 runs intake only).
    pub workers: usize,
    /// How long work keeps being retried while a service fails before it is parked
    /// (`OZBRIDGE_RETRY_FOR_SECS`, `retry_for_secs`; default 30 minutes).
    pub retry_for: Duration,
    /// How long finished work (handled commands, delivered messages, finished runs) is
    /// kept before a background task deletes it (`OZBRIDGE_RETENTION_DAYS`,
    /// `retention_days`; default 30; 0 keeps it forever).
    pub retention: Option<Duration>,
    /// Every commit reaches the disk before it is acknowledged (`OZBRIDGE_DURABLE`,
    /// `durable`; default off): SQLite syncs each commit (`synchronous = FULL`), and
    /// concurrent webhooks share a sync through group commit.
    pub durable: bool,
    /// Limits of the HTTP server.
    pub http: HttpLimits,
    /// How long claimed work stays claimed if its replica dies (`OZBRIDGE_LEASE_SECS`,
    /// `lease_secs`; default 60). Longer than any one call (the request timeouts).
    pub lease: Duration,
    /// Caps on runs per person, per place and per day.
    pub limits: RunLimits,
    /// New runs are refused with a message (`OZBRIDGE_PAUSED=1`); `ozbridge admin
    /// pause` does the same through the database, for every replica.
    pub paused: bool,
    /// Every declared setting, its value (secrets redacted) and where it came from.
    listing: Vec<String>,
}

/// Caps on what people may start, so that one person, repository or channel cannot
/// exhaust the team's agents or budget. Each refusal is a reply that says which.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLimits {
    /// Runs one person may have starting or working at once
    /// (`OZBRIDGE_MAX_RUNS_PER_USER`, `limits.max_runs_per_user`; default 3).
    pub max_runs_per_user: u64,
    /// Runs one repository or Slack channel may have starting or working at once
    /// (`OZBRIDGE_MAX_RUNS_PER_PLACE`, `limits.max_runs_per_place`; default 10).
    pub max_runs_per_place: u64,
    /// Runs one person may start in an hour (`OZBRIDGE_MAX_RUNS_PER_USER_PER_HOUR`,
    /// `limits.max_runs_per_user_per_hour`; default 20).
    pub max_runs_per_user_per_hour: u64,
    /// Cost (`request_usage`: inference + compute, in the unit Oz reports) the runs of one
    /// repository or channel may reach in 24 hours before new runs there are refused
    /// (`OZBRIDGE_MAX_COST_PER_PLACE_PER_DAY`, `limits.max_cost_per_place_per_day`;
    /// default 100).
    pub max_cost_per_place_per_day: f64,
    /// Instructions one thread may hold queued behind its run
    /// (`OZBRIDGE_MAX_QUEUED_PER_THREAD`, `limits.max_queued_per_thread`; default 5).
    pub max_queued_per_thread: u64,
    /// Bytes one attached file may have (`OZBRIDGE_MAX_ATTACHMENT_BYTES`,
    /// `limits.max_attachment_bytes`; default 5 MiB).
    pub max_attachment_bytes: u64,
}

/// Limits that keep slow or hostile clients from holding the server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time for a client to send its request headers (`OZBRIDGE_HEADER_TIMEOUT_SECS`,
    /// `http.header_timeout_secs`; default 5).
    pub header_timeout: Duration,
    /// Time for a client to send its whole request body, from the end of its headers
    /// (`OZBRIDGE_BODY_TIMEOUT_SECS`,
    /// `http.body_timeout_secs`; default 5).
    pub body_timeout: Duration,
    /// Connections served at once; more wait to be accepted (`OZBRIDGE_MAX_CONNECTIONS`,
    /// `http.max_connections`; default 1024).
    pub max_connections: usize,
}

/// The file's settings with the environment laid over them and the declared defaults
/// under both ([`declared::Merged`]); what serde refuses here is named by its key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<String>,
    public_url: Option<String>,
    metrics_listen: Option<String>,
    log_format: Option<String>,
    workers: Option<u64>,
    paused: Option<bool>,
    #[serde(default)]
    oz: FileOz,
    #[serde(default)]
    github: FileGithub,
    #[serde(default)]
    slack: FileSlack,
    #[serde(default)]
    templates: FileTemplates,
    retry_for_secs: Option<u64>,
    lease_secs: Option<u64>,
    retention_days: Option<u64>,
    durable: Option<bool>,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    limits: FileLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_runs_per_user: Option<u64>,
    max_runs_per_place: Option<u64>,
    max_runs_per_user_per_hour: Option<u64>,
    max_cost_per_place_per_day: Option<f64>,
    max_queued_per_thread: Option<u64>,
    max_attachment_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    max_connections: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOz {
    api_url: Option<String>,
    api_key: Option<SecretString>,
    environment_id: Option<String>,
    model_id: Option<String>,
    harness: Option<String>,
    session_access: Option<String>,
    run_label: Option<String>,
    request_timeout_secs: Option<u64>,
    tick_interval_secs: Option<f64>,
    conversation_refresh_secs: Option<u64>,
    conversation_budget: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGithub {
    api_url: Option<String>,
    token: Option<SecretString>,
    app_id: Option<u64>,
    app_private_key: Option<SecretString>,
    #[serde(default)]
    webhook_secret: Vec<SecretString>,
    trigger: Option<String>,
    permission_cache_secs: Option<u64>,
    repo_file_cache_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    bot_login: Option<String>,
    #[serde(flatten)]
    policy: GithubPolicy,
    #[serde(default)]
    repos: BTreeMap<String, RepoSettings>,
    /// Settings of every repository without its own table entry for them.
    #[serde(default)]
    defaults: RepoSettings,
    /// The keys a repository's `.github/ozbridge.toml` may set.
    repo_overrides: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTemplates {
    prompt: Option<String>,
    slack_prompt: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSlack {
    api_url: Option<String>,
    bot_token: Option<SecretString>,
    #[serde(default)]
    signing_secret: Vec<SecretString>,
    response_url_prefix: Option<String>,
    request_timeout_secs: Option<u64>,
    #[serde(flatten)]
    policy: SlackPolicy,
    #[serde(default)]
    channels: BTreeMap<String, ChannelSettings>,
}

/// A declared setting's value, present because the declaration gives it a default.
fn given<T>(value: Option<T>, key: &str) -> Result<T, ConfigError> {
    value.ok_or_else(|| config_error(key, "has no value and no default"))
}

impl Config {
    /// Loads the configuration from an optional TOML file and the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(path, &|key| std::env::var(key).ok())
    }

    /// Loads with an injected environment (for tests).
    pub fn load_with(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let path: Option<PathBuf> = path
            .map(Path::to_path_buf)
            .or_else(|| env("OZBRIDGE_CONFIG").map(PathBuf::from));
        let mut table = match &path {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    config_error("--config", format!("cannot read {}: {e}", path.display()))
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    config_error(&format!("{}", path.display()), e.message().to_owned())
                })?
            }
        };
        // Fly and other platforms say only the port.
        if env("OZBRIDGE_LISTEN").is_none_or(|v| v.trim().is_empty())
            && let Some(port) = env("PORT").filter(|v| !v.trim().is_empty())
        {
            table.insert("listen".into(), format!("0.0.0.0:{}", port.trim()).into());
        }
        let merged = declared::Merged::new(table, env)?;
        // Read back from text, so that a refusal points at its line and so names its key.
        let text = toml::to_string(&merged.table)
            .map_err(|e| config_error("configuration", e.to_string()))?;
        let file: FileConfig = toml::from_str(&text).map_err(|e| {
            // An unknown key under a flattened table is placed at its whole table: find
            // its own line.
            let at = declared::unknown_key_at(&text, e.message())
                .or_else(|| e.span().map(|span| span.start));
            let name = match at.and_then(|at| declared::key_at(&text, at)) {
                // A declared setting is named where its value came from.
                Some(key) if declared::is_declared(&key) => merged.name(&key).to_owned(),
                Some(key) => key,
                None => path
                    .as_ref()
                    .map_or("configuration".to_owned(), |p| p.display().to_string()),
            };
            config_error(&name, e.message().to_owned())
        })?;
        let name = |key: &str| merged.name(key);

        let listen_text = given(file.listen, "listen")?;
        let listen = listen_text.parse().map_err(|_| {
            config_error(
                name("listen"),
                format!("`{listen_text}` is not an address like 0.0.0.0:8080"),
            )
        })?;
        let metrics_listen = optional(
            name("metrics_listen"),
            file.metrics_listen,
            |text| text.parse::<SocketAddr>().ok(),
            "an address like 0.0.0.0:9091",
        )?;
        if metrics_listen == Some(listen) {
            return Err(config_error(
                name("metrics_listen"),
                "must differ from the listen address (leave it unset to serve /metrics there)",
            ));
        }
        let database_url = given(file.database_url, "database_url")?;
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres:")
            || database_url.starts_with("postgresql:"))
        {
            return Err(config_error(
                name("database_url"),
                "must start with sqlite:, postgres: or postgresql:",
            ));
        }
        if !database_url.starts_with("sqlite:") {
            crate::store::prepare_postgres_url(&database_url)
                .map_err(|e| config_error(name("database_url"), e.to_string()))?;
        }
        let log_format = match given(file.log_format, "log_format")?.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(config_error(
                    name("log_format"),
                    format!("`{other}` is not text or json"),
                ));
            }
        };
        let public_url = file.public_url.map(|u| u.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url {
            check_url(name("public_url"), url)?;
        }

        let oz_api_url = given(file.oz.api_url, "oz.api_url")?;
        check_url(name("oz.api_url"), &oz_api_url)?;
        let tick = given(file.oz.tick_interval_secs, "oz.tick_interval_secs")?;
        if !(0.05..=300.0).contains(&tick) {
            return Err(config_error(
                name("oz.tick_interval_secs"),
                "must be between 0.05 and 300 seconds",
            ));
        }
        let run_label = given(file.oz.run_label, "oz.run_label")?;
        if run_label.trim().is_empty() {
            return Err(config_error(name("oz.run_label"), "must not be empty"));
        }
        let harness = optional(
            name("oz.harness"),
            file.oz.harness,
            HarnessKind::named,
            "a harness: oz, claude or gemini",
        )?;
        let session_access = optional(
            name("oz.session_access"),
            file.oz.session_access,
            PublicAccess::named,
            "viewer or editor",
        )?;
        let oz = OzSettings {
            api_url: oz_api_url.trim_end_matches('/').to_owned(),
            api_key: file.oz.api_key,
            environment_id: file.oz.environment_id,
            model_id: file.oz.model_id,
            harness,
            session_access,
            run_label,
            request_timeout: seconds(
                name("oz.request_timeout_secs"),
                file.oz.request_timeout_secs,
                1..=300,
            )?,
            tick_interval: Duration::from_secs_f64(tick),
            conversation_refresh: seconds(
                name("oz.conversation_refresh_secs"),
                file.oz.conversation_refresh_secs,
                1..=3600,
            )?,
            conversation_budget: usize::try_from(number(
                name("oz.conversation_budget"),
                file.oz.conversation_budget,
                0..=1000,
            )?)
            .unwrap_or(10),
        };

        let github_api_url = given(file.github.api_url, "github.api_url")?;
        check_url(name("github.api_url"), &github_api_url)?;
        let auth = match (
            file.github.app_id,
            file.github.app_private_key,
            file.github.token,
        ) {
            (Some(app_id), Some(key), _) => Some(GithubAuthSettings::App {
                app_id,
                private_key_pem: SecretString::from(read_private_key(
                    name("github.app_private_key"),
                    key.expose_secret(),
                )?),
            }),
            (Some(_), None, _) => {
                return Err(config_error(
                    "GITHUB_APP_PRIVATE_KEY",
                    "is required with GITHUB_APP_ID (PEM text or a file path)",
                ));
            }
            (None, Some(_), _) => {
                return Err(config_error(
                    "GITHUB_APP_ID",
                    "is required with GITHUB_APP_PRIVATE_KEY",
                ));
            }
            (None, None, Some(token)) => Some(GithubAuthSettings::Token(token)),
            (None, None, None) => None,
        };
        let trigger = given(file.github.trigger, "github.trigger")?;
        if trigger.trim().is_empty() || trigger.contains(char::is_whitespace) {
            return Err(config_error(
                name("github.trigger"),
                "must be one word, like /oz",
            ));
        }
        for repo in file
            .github
            .repos
            .keys()
            .chain(&file.github.policy.enabled_repos)
        {
            if crate::ids::RepoFullName(repo.clone()).split().is_none() {
                return Err(config_error(
                    "github.repos",
                    format!("`{repo}` is not owner/name"),
                ));
            }
        }
        let repo_overrides = match file.github.repo_overrides {
            None => crate::github::repo_config::DEFAULT_OVERRIDES
                .map(str::to_owned)
                .to_vec(),
            Some(keys) => {
                if let Some(unknown) = keys
                    .iter()
                    .find(|k| !crate::github::repo_config::KEYS.contains(&k.as_str()))
                {
                    return Err(config_error(
                        "github.repo_overrides",
                        format!(
                            "`{unknown}` is not a repository setting; known: {}",
                            crate::github::repo_config::KEYS.join(", ")
                        ),
                    ));
                }
                keys
            }
        };
        let github = GithubSettings {
            api_url: github_api_url.trim_end_matches('/').to_owned(),
            auth,
            webhook_secrets: file.github.webhook_secret,
            trigger,
            permission_cache_ttl: seconds(
                name("github.permission_cache_secs"),
                file.github.permission_cache_secs,
                0..=86_400,
            )?,
            repo_file_ttl: seconds(
                name("github.repo_file_cache_secs"),
                file.github.repo_file_cache_secs,
                0..=86_400,
            )?,
            request_timeout: seconds(
                name("github.request_timeout_secs"),
                file.github.request_timeout_secs,
                1..=300,
            )?,
            bot_login: file.github.bot_login,
            policy: file.github.policy,
            repos: GithubRepos {
                defaults: file.github.defaults,
                repos: file
                    .github
                    .repos
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
                overrides: repo_overrides,
            },
        };
        let slack_api_url = given(file.slack.api_url, "slack.api_url")?;
        check_url(name("slack.api_url"), &slack_api_url)?;
        let response_url_prefix =
            given(file.slack.response_url_prefix, "slack.response_url_prefix")?;
        check_url(name("slack.response_url_prefix"), &response_url_prefix)?;
        let slack = SlackSettings {
            api_url: format!("{}/", slack_api_url.trim_end_matches('/')),
            bot_token: file.slack.bot_token,
            signing_secrets: file.slack.signing_secret,
            response_url_prefix,
            request_timeout: seconds(
                name("slack.request_timeout_secs"),
                file.slack.request_timeout_secs,
                1..=300,
            )?,
            policy: file.slack.policy,
            channels: file.slack.channels,
        };
        let slack_prompt_template = file
            .templates
            .slack_prompt
            .unwrap_or_else(|| DEFAULT_SLACK_PROMPT_TEMPLATE.into());
        templates::check_template(&slack_prompt_template)
            .map_err(|reason| config_error(name("templates.slack_prompt"), reason))?;
        let prompt_template = file
            .templates
            .prompt
            .unwrap_or_else(|| DEFAULT_PROMPT_TEMPLATE.into());
        templates::check_template(&prompt_template)
            .map_err(|reason| config_error(name("templates.prompt"), reason))?;
        let workers =
            usize::try_from(number(name("workers"), file.workers, 0..=64)?).unwrap_or(usize::MAX);
        let retry_for = seconds(
            name("retry_for_secs"),
            file.retry_for_secs,
            1..=7 * 24 * 3600,
        )?;
        let retention_days = number(name("retention_days"), file.retention_days, 0..=36_500)?;
        let retention = (retention_days > 0).then(|| Duration::from_secs(retention_days * 86_400));
        let http = HttpLimits {
            header_timeout: seconds(
                name("http.header_timeout_secs"),
                file.http.header_timeout_secs,
                1..=120,
            )?,
            body_timeout: seconds(
                name("http.body_timeout_secs"),
                file.http.body_timeout_secs,
                1..=120,
            )?,
            max_connections: usize::try_from(number(
                name("http.max_connections"),
                file.http.max_connections,
                1..=65_536,
            )?)
            .unwrap_or(1024),
        };
        let listing = merged.listing();
        Ok(Self {
            listen,
            database_url,
            public_url,
            metrics_listen,
            log_format,
            oz,
            github,
            slack,
            prompt_template,
            slack_prompt_template,
            workers,
            retry_for,
            retention,
            durable: given(file.durable, "durable")?,
            http,
            lease: seconds(name("lease_secs"), file.lease_secs, 2..=3600)?,
            limits: RunLimits {
                max_runs_per_user: number(
                    name("limits.max_runs_per_user"),
                    file.limits.max_runs_per_user,
                    1..=10_000,
                )?,
                max_runs_per_place: number(
                    name("limits.max_runs_per_place"),
                    file.limits.max_runs_per_place,
                    1..=100_000,
                )?,
                max_runs_per_user_per_hour: number(
                    name("limits.max_runs_per_user_per_hour"),
                    file.limits.max_runs_per_user_per_hour,
                    1..=100_000,
                )?,
                max_cost_per_place_per_day: given(
                    file.limits.max_cost_per_place_per_day,
                    "limits.max_cost_per_place_per_day",
                )?
                .max(0.0),
                max_queued_per_thread: number(
                    name("limits.max_queued_per_thread"),
                    file.limits.max_queued_per_thread,
                    0..=100,
                )?,
                max_attachment_bytes: number(
                    name("limits.max_attachment_bytes"),
                    file.limits.max_attachment_bytes,
                    1..=50 * 1024 * 1024,
                )?,
            },
            paused: given(file.paused, "paused")?,
            listing,
        })
    }

    /// Checks that everything `serve` needs is present; names every missing key.
    pub fn require_for_serve(&self) -> Result<(), ConfigError> {
        let mut missing = Vec::new();
        if self.oz.api_key.is_none() {
            missing.push("WARP_API_KEY");
        }
        let github_used = !self.github.webhook_secrets.is_empty() || self.github.auth.is_some();
        let slack_used = !self.slack.signing_secrets.is_empty() || self.slack.bot_token.is_some();
        if github_used || !slack_used {
            if self.github.webhook_secrets.is_empty() {
                missing.push("GITHUB_WEBHOOK_SECRET");
            }
            if self.github.auth.is_none() {
                missing.push("GITHUB_TOKEN or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY");
            }
        }
        if slack_used {
            if self.slack.signing_secrets.is_empty() {
                missing.push("SLACK_SIGNING_SECRET");
            }
            if self.slack.bot_token.is_none() {
                missing.push("SLACK_BOT_TOKEN");
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(config_error(&missing.join(", "), "must be set to serve"))
        }
    }

    /// The effective configuration as text, every secret redacted: each declared
    /// setting (file key, environment name, value, where it came from), then the
    /// per-repository and per-channel tables of the file.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for line in &self.listing {
            out.push_str(line);
            out.push('\n');
        }
        let auth = match &self.github.auth {
            None => "none".to_owned(),
            Some(GithubAuthSettings::Token(_)) => "token".to_owned(),
            Some(GithubAuthSettings::App { app_id, .. }) => format!("GitHub App {app_id}"),
        };
        out.push_str(&format!("{:<36} {auth}\n", "github authentication"));
        out.push_str(&format!(
            "{:<36} {}\n",
            "github.repo_overrides",
            self.github.repos.overrides.join(", ")
        ));
        out.push_str(&format!(
            "{:<36} {:?}\n",
            "github.defaults", self.github.repos.defaults
        ));
        for (repo, settings) in &self.github.repos.repos {
            out.push_str(&format!(
                "{:<36} {settings:?}\n",
                format!("github.repos.{repo}")
            ));
        }
        for (channel, settings) in &self.slack.channels {
            out.push_str(&format!(
                "{:<36} {settings:?}\n",
                format!("slack.channels.{channel}")
            ));
        }
        out
    }

    /// The secret values, for callers that must make sure none leaks (tests, log checks).
    pub fn secret_values(&self) -> Vec<String> {
        let mut values: Vec<String> = self
            .github
            .webhook_secrets
            .iter()
            .map(|s| s.expose_secret().to_owned())
            .collect();
        if let Some(key) = &self.oz.api_key {
            values.push(key.expose_secret().to_owned());
        }
        values.extend(
            self.slack
                .signing_secrets
                .iter()
                .map(|s| s.expose_secret().to_owned()),
        );
        if let Some(token) = &self.slack.bot_token {
            values.push(token.expose_secret().to_owned());
        }
        match &self.github.auth {
            Some(GithubAuthSettings::Token(token)) => values.push(token.expose_secret().to_owned()),
            Some(GithubAuthSettings::App {
                private_key_pem, ..
            }) => values.push(private_key_pem.expose_secret().to_owned()),
            None => {}
        }
        values
    }
}

/// A whole number, refused outside `range` (naming the key or variable it came from).
fn number(
    name: &str,
    value: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let value = given(value, name)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(config_error(
            name,
            format!("must be from {} to {}", range.start(), range.end()),
        ))
    }
}

/// [`number`] of seconds, as a duration.
fn seconds(
    name: &str,
    value: Option<u64>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    number(name, value, range).map(Duration::from_secs)
}

/// An optional setting read with `parse` (empty counts as unset); an unreadable value is
/// an error saying what `expected` is.
fn optional<T>(
    key: &str,
    value: Option<String>,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, ConfigError> {
    match value.filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) => parse(&text)
            .map(Some)
            .ok_or_else(|| config_error(key, format!("`{text}` is not {expected}"))),
    }
}

fn check_url(key: &str, value: &str) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(value)
        .map_err(|e| config_error(key, format!("`{value}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(config_error(key, "must be an http or https URL"));
    }
    Ok(())
}

fn read_private_key(name: &str, value: &str) -> Result<String, ConfigError> {
    if value.contains("-----BEGIN") {
        return Ok(value.replace("\\n", "\n"));
    }
    std::fs::read_to_string(value.trim()).map_err(|e| {
        config_error(
            name,
            format!("is neither PEM text nor a readable file: {e}"),
        )
    })
}

/// Hides the password of a database URL.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("redacted"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)], file: Option<&str>) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = file.map(|text| {
            let path = dir.path().join("ozbridge.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        Config::load_with(path.as_deref(), &|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let config = load(&[], None).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(config.database_url, "sqlite://data/ozbridge.db");
        assert_eq!(config.oz.run_label, "ozbridge");
        let file = "listen = \"127.0.0.1:9000\"\n[oz]\nmodel_id = \"gpt-5\"\n[github]\nallow_users = [\"alice\"]\n[github.repos.\"Acme/Widgets\"]\nenvironment_id = \"env-1\"\n";
        let config = load(&[("OZ_MODEL_ID", "claude-4-opus")], Some(file)).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.oz.model_id.as_deref(), Some("claude-4-opus"));
        assert!(config.github.policy.allows("ALICE", 1));
        assert_eq!(
            config.github.repos.repos["acme/widgets"]
                .environment_id
                .as_deref(),
            Some("env-1")
        );
        let config = load(&[("PORT", "7000")], Some(file)).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:7000");
    }

    #[test]
    fn the_documented_example_file_loads() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/ozbridge.example.toml"
        ));
        let config = Config::load_with(Some(path), &|_| None).unwrap();
        assert_eq!(config.github.trigger, "/oz");
        assert!(config.slack.policy.allow_direct_messages);
    }

    #[test]
    fn errors_name_the_key() {
        let err = load(&[("OZBRIDGE_LISTEN", "nope")], None).err().unwrap();
        assert_eq!(err.key, "OZBRIDGE_LISTEN");
        let err = load(&[("GITHUB_APP_ID", "12")], None).err().unwrap();
        assert_eq!(err.key, "GITHUB_APP_PRIVATE_KEY");
        let err = load(&[], Some("[github]\nfrobnicate = 1\n")).err().unwrap();
        assert_eq!(err.key, "github.frobnicate", "{err}");
        let err = load(&[], Some("[slack]\nallowd_users = [\"U1\"]\n"))
            .err()
            .unwrap();
        assert_eq!(err.key, "slack.allowd_users", "{err}");
        let err = load(&[], Some("workers = \"many\"\n")).err().unwrap();
        assert_eq!(err.key, "workers", "{err}");
        let err = load(&[("OZBRIDGE_WORKERS", "65")], None).err().unwrap();
        assert_eq!(err.key, "OZBRIDGE_WORKERS", "{err}");
        let err = load(&[], Some("[templates]\nprompt = \"{nonsense}\"\n"))
            .err()
            .unwrap();
        assert_eq!(err.key, "templates.prompt");
        let err = load(&[("OZ_HARNESS", "claudia")], None).err().unwrap();
        assert_eq!(err.key, "OZ_HARNESS", "{err}");
        assert!(err.to_string().contains("oz, claude or gemini"), "{err}");
        let err = load(&[("OZ_SESSION_ACCESS", "everyone")], None)
            .err()
            .unwrap();
        assert_eq!(err.key, "OZ_SESSION_ACCESS", "{err}");
        let err = load(
            &[],
            Some("[github.repos.\"acme/widgets\"]\nharness = \"codex\"\n"),
        )
        .err()
        .unwrap();
        assert!(err.key.starts_with("github.repos"), "{err}");
        let ok = load(
            &[("OZ_SESSION_ACCESS", "Editor")],
            Some("[slack.channels.C1]\nharness = \"gemini\"\nsession_access = \"viewer\"\n"),
        )
        .unwrap();
        assert_eq!(ok.oz.session_access, Some(PublicAccess::Editor));
        assert_eq!(ok.slack.channels["C1"].harness, Some(HarnessKind::Gemini));
        let err = load(&[], None).unwrap().require_for_serve().unwrap_err();
        assert!(
            err.key.contains("WARP_API_KEY") && err.key.contains("GITHUB_WEBHOOK_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn describe_never_shows_secrets() {
        let config = load(
            &[
                ("WARP_API_KEY", "wk-super-secret"),
                ("GITHUB_TOKEN", "ghp_secret_token"),
                ("GITHUB_WEBHOOK_SECRET", "hook-one, hook-two"),
                ("DATABASE_URL", "postgres://u:dbpass@localhost/db"),
                ("SLACK_BOT_TOKEN", "xoxb-secret-bot"),
                ("SLACK_SIGNING_SECRET", "slack-sign-1,slack-sign-2"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(config.github.webhook_secrets.len(), 2);
        let text = config.describe();
        for secret in config.secret_values().iter().chain([&"dbpass".to_string()]) {
            assert!(
                !text.contains(secret.as_str()),
                "{secret} leaked in:\n{text}"
            );
        }
        assert!(text.contains("<set, redacted> (environment)"), "{text}");
        assert!(
            text.contains("postgres://u:redacted@localhost/db"),
            "{text}"
        );
    }
}
