//! Every setting that the file and the environment can both set, declared once: its
//! key in `ozbridge.toml`, its name in the environment, the kind of value it takes, its
//! default, and whether it is shown or redacted. Loading overlays the environment onto
//! the file through this table, and `ozbridge check-config` lists the settings from it.
//!
//! The naming rule: a key of the platform sections `[oz]`, `[github]` and `[slack]` is
//! `SECTION_KEY` in the environment (`github.request_timeout_secs` is
//! `GITHUB_REQUEST_TIMEOUT_SECS`); every other key, top-level or in `[http]`, `[limits]`
//! and `[templates]`, is `OZBRIDGE_KEY` (`workers` is `OZBRIDGE_WORKERS`,
//! `limits.max_runs_per_user` is `OZBRIDGE_MAX_RUNS_PER_USER`). Three names follow the
//! conventions of the tools around ozbridge instead: `WARP_API_KEY` (`oz.api_key`),
//! `DATABASE_URL` and `LOG_FORMAT`. Lists are comma-separated in the environment; a
//! switch is `1`/`0` or `true`/`false`; an empty variable counts as unset.

use super::{ConfigError, config_error};
use std::collections::BTreeMap;

/// The kind of value a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A whole number.
    Integer,
    /// A number with a fraction.
    Number,
    /// On or off.
    Switch,
    /// Several texts.
    List,
}

/// How `check-config` shows a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Plain,
    /// A secret: only whether it is set.
    Redacted,
    /// A URL whose password is hidden.
    UrlPassword,
}

/// One setting.
#[derive(Debug)]
pub struct Setting {
    /// The dotted key in the file.
    pub key: &'static str,
    /// The name in the environment.
    pub env: &'static str,
    pub kind: Kind,
    /// The value when neither sets it, as it would be written in the environment
    /// (empty: no default; the setting is optional or must be given).
    pub default: &'static str,
    pub shown: Shown,
}

const fn setting(
    key: &'static str,
    env: &'static str,
    kind: Kind,
    default: &'static str,
) -> Setting {
    Setting {
        key,
        env,
        kind,
        default,
        shown: Shown::Plain,
    }
}

const fn secret(key: &'static str, env: &'static str, kind: Kind) -> Setting {
    Setting {
        key,
        env,
        kind,
        default: "",
        shown: Shown::Redacted,
    }
}

use Kind::{Integer, List, Number, Switch, Text};

/// Every setting, in the order `check-config` lists them.
pub const SETTINGS: &[Setting] = &[
    setting("listen", "OZBRIDGE_LISTEN", Text, "0.0.0.0:8080"),
    Setting {
        shown: Shown::UrlPassword,
        ..setting(
            "database_url",
            "DATABASE_URL",
            Text,
            "sqlite://data/ozbridge.db",
        )
    },
    setting("public_url", "OZBRIDGE_PUBLIC_URL", Text, ""),
    setting("metrics_listen", "OZBRIDGE_METRICS_LISTEN", Text, ""),
    setting("log_format", "LOG_FORMAT", Text, "text"),
    setting("workers", "OZBRIDGE_WORKERS", Integer, "4"),
    setting("paused", "OZBRIDGE_PAUSED", Switch, "0"),
    setting("retry_for_secs", "OZBRIDGE_RETRY_FOR_SECS", Integer, "1800"),
    setting("lease_secs", "OZBRIDGE_LEASE_SECS", Integer, "60"),
    setting("retention_days", "OZBRIDGE_RETENTION_DAYS", Integer, "30"),
    setting("durable", "OZBRIDGE_DURABLE", Switch, "0"),
    setting(
        "http.header_timeout_secs",
        "OZBRIDGE_HEADER_TIMEOUT_SECS",
        Integer,
        "5",
    ),
    setting(
        "http.body_timeout_secs",
        "OZBRIDGE_BODY_TIMEOUT_SECS",
        Integer,
        "5",
    ),
    setting(
        "http.max_connections",
        "OZBRIDGE_MAX_CONNECTIONS",
        Integer,
        "1024",
    ),
    setting(
        "limits.max_runs_per_user",
        "OZBRIDGE_MAX_RUNS_PER_USER",
        Integer,
        "3",
    ),
    setting(
        "limits.max_runs_per_place",
        "OZBRIDGE_MAX_RUNS_PER_PLACE",
        Integer,
        "10",
    ),
    setting(
        "limits.max_attachment_bytes",
        "OZBRIDGE_MAX_ATTACHMENT_BYTES",
        Integer,
        "5242880",
    ),
    setting(
        "limits.max_queued_per_thread",
        "OZBRIDGE_MAX_QUEUED_PER_THREAD",
        Integer,
        "5",
    ),
    setting(
        "limits.max_runs_per_user_per_hour",
        "OZBRIDGE_MAX_RUNS_PER_USER_PER_HOUR",
        Integer,
        "20",
    ),
    setting(
        "limits.max_cost_per_place_per_day",
        "OZBRIDGE_MAX_COST_PER_PLACE_PER_DAY",
        Number,
        "100",
    ),
    setting("templates.prompt", "OZBRIDGE_PROMPT", Text, ""),
    setting("templates.slack_prompt", "OZBRIDGE_SLACK_PROMPT", Text, ""),
    setting(
        "oz.api_url",
        "OZ_API_URL",
        Text,
        "https://app.warp.dev/api/v1",
    ),
    secret("oz.api_key", "WARP_API_KEY", Text),
    setting("oz.environment_id", "OZ_ENVIRONMENT_ID", Text, ""),
    setting("oz.model_id", "OZ_MODEL_ID", Text, ""),
    setting("oz.harness", "OZ_HARNESS", Text, ""),
    setting(
        "oz.conversation_refresh_secs",
        "OZ_CONVERSATION_REFRESH_SECS",
        Integer,
        "15",
    ),
    setting(
        "oz.conversation_budget",
        "OZ_CONVERSATION_BUDGET",
        Integer,
        "10",
    ),
    setting("oz.session_access", "OZ_SESSION_ACCESS", Text, ""),
    setting("oz.run_label", "OZ_RUN_LABEL", Text, "ozbridge"),
    setting(
        "oz.request_timeout_secs",
        "OZ_REQUEST_TIMEOUT_SECS",
        Integer,
        "30",
    ),
    setting(
        "oz.tick_interval_secs",
        "OZ_TICK_INTERVAL_SECS",
        Number,
        "3",
    ),
    setting(
        "github.api_url",
        "GITHUB_API_URL",
        Text,
        "https://api.github.com",
    ),
    secret("github.token", "GITHUB_TOKEN", Text),
    setting("github.app_id", "GITHUB_APP_ID", Integer, ""),
    secret("github.app_private_key", "GITHUB_APP_PRIVATE_KEY", Text),
    secret("github.webhook_secret", "GITHUB_WEBHOOK_SECRET", List),
    setting("github.trigger", "GITHUB_TRIGGER", Text, "/oz"),
    setting(
        "github.permission_cache_secs",
        "GITHUB_PERMISSION_CACHE_SECS",
        Integer,
        "300",
    ),
    setting(
        "github.repo_file_cache_secs",
        "GITHUB_REPO_FILE_CACHE_SECS",
        Integer,
        "60",
    ),
    setting(
        "github.request_timeout_secs",
        "GITHUB_REQUEST_TIMEOUT_SECS",
        Integer,
        "20",
    ),
    setting("github.bot_login", "GITHUB_BOT_LOGIN", Text, ""),
    setting("github.allow_users", "GITHUB_ALLOW_USERS", List, ""),
    setting("github.deny_users", "GITHUB_DENY_USERS", List, ""),
    setting("github.allow_bots", "GITHUB_ALLOW_BOTS", List, ""),
    setting("github.enabled_repos", "GITHUB_ENABLED_REPOS", List, ""),
    setting(
        "slack.api_url",
        "SLACK_API_URL",
        Text,
        "https://slack.com/api/",
    ),
    secret("slack.bot_token", "SLACK_BOT_TOKEN", Text),
    secret("slack.signing_secret", "SLACK_SIGNING_SECRET", List),
    setting(
        "slack.response_url_prefix",
        "SLACK_RESPONSE_URL_PREFIX",
        Text,
        "https://hooks.slack.com/",
    ),
    setting(
        "slack.request_timeout_secs",
        "SLACK_REQUEST_TIMEOUT_SECS",
        Integer,
        "20",
    ),
    setting("slack.allowed_teams", "SLACK_ALLOWED_TEAMS", List, ""),
    setting("slack.allowed_channels", "SLACK_ALLOWED_CHANNELS", List, ""),
    setting("slack.allowed_users", "SLACK_ALLOWED_USERS", List, ""),
    setting(
        "slack.allow_direct_messages",
        "SLACK_ALLOW_DIRECT_MESSAGES",
        Switch,
        "1",
    ),
];

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Environment,
    File,
    Default,
}

/// The file's table with the environment laid over it and the defaults under both, and
/// where each declared setting came from.
pub struct Merged {
    pub table: toml::Table,
    sources: BTreeMap<&'static str, Source>,
}

impl Merged {
    /// Lays `env` over `file` and the declared defaults under both.
    pub fn new(
        mut file: toml::Table,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut sources = BTreeMap::new();
        for setting in SETTINGS {
            let from_env = env(setting.env).filter(|v| !v.trim().is_empty());
            let source = if let Some(text) = from_env {
                insert(&mut file, setting.key, value(setting, setting.env, &text)?);
                Source::Environment
            } else if lookup(&file, setting.key).is_some() {
                Source::File
            } else {
                if !setting.default.is_empty() {
                    let default = value(setting, setting.key, setting.default)?;
                    insert(&mut file, setting.key, default);
                }
                Source::Default
            };
            sources.insert(setting.key, source);
        }
        Ok(Self {
            table: file,
            sources,
        })
    }

    /// The name to quote in an error about `key`: its environment name when the value
    /// came from there, else its file key.
    pub fn name(&self, key: &str) -> &'static str {
        match SETTINGS.iter().find(|s| s.key == key) {
            Some(setting) if self.sources.get(setting.key) == Some(&Source::Environment) => {
                setting.env
            }
            Some(setting) => setting.key,
            None => "configuration",
        }
    }

    /// One line per declared setting: key, environment name, value (redacted as
    /// declared) and where it came from.
    pub fn listing(&self) -> Vec<String> {
        SETTINGS
            .iter()
            .map(|setting| {
                let shown = match (lookup(&self.table, setting.key), setting.shown) {
                    (None, _) => "<not set>".to_owned(),
                    (Some(_), Shown::Redacted) => "<set, redacted>".to_owned(),
                    (Some(value), Shown::UrlPassword) => super::redact_url(&display(value)),
                    (Some(value), Shown::Plain) => display(value),
                };
                let from = match self.sources.get(setting.key) {
                    Some(Source::Environment) => "environment",
                    Some(Source::File) => "file",
                    _ => "default",
                };
                format!("{:<36} {:<38} {shown} ({from})", setting.key, setting.env)
            })
            .collect()
    }
}

/// True when `key` is a declared setting.
pub fn is_declared(key: &str) -> bool {
    SETTINGS.iter().any(|s| s.key == key)
}

/// A setting's text (from the environment, or its default) as a TOML value.
fn value(setting: &Setting, name: &str, text: &str) -> Result<toml::Value, ConfigError> {
    let text = text.trim();
    Ok(match setting.kind {
        Kind::Text => toml::Value::String(text.to_owned()),
        Kind::Integer => toml::Value::Integer(
            text.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| config_error(name, "must be a whole number"))?,
        ),
        Kind::Number => toml::Value::Float(
            text.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| config_error(name, "must be a number"))?,
        ),
        Kind::Switch => toml::Value::Boolean(match text {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return Err(config_error(name, "must be 1 or 0")),
        }),
        Kind::List => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
    })
}

/// The dotted key of the `key = value` line at byte `at` of TOML `text` (the section
/// header above it gives the prefix).
pub fn key_at(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let name = line.split('=').next()?.trim().trim_matches('"');
    if name.is_empty() || name.starts_with('[') {
        return None;
    }
    let section = before[..line_start]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')))
        .map(|s| s.trim_matches('"').to_owned());
    Some(match section {
        Some(section) => format!("{section}.{name}"),
        None => name.to_owned(),
    })
}

/// Where the key that serde calls unknown in `message` ("unknown field `name`…") is
/// set in `text`: the start of its line.
pub fn unknown_key_at(text: &str, message: &str) -> Option<usize> {
    let name = message.strip_prefix("unknown field `")?.split('`').next()?;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let key = line.split('=').next().unwrap_or_default().trim();
        if line.contains('=') && key.trim_matches('"') == name {
            return Some(at);
        }
        at += line.len();
    }
    None
}

fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let first = table.get(parts.next()?)?;
    parts.try_fold(first, |value, part| value.as_table()?.get(part))
}

fn insert(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_owned(), value);
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                // A section written as a plain value: serde reports it by its key.
                return;
            }
            if let toml::Value::Table(inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

fn display(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) if text.contains('\n') => "<text of several lines>".into(),
        toml::Value::String(text) => text.clone(),
        toml::Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_follows_the_rule_or_is_a_declared_exception() {
        const EXCEPTIONS: [&str; 3] = ["WARP_API_KEY", "DATABASE_URL", "LOG_FORMAT"];
        for setting in SETTINGS {
            if EXCEPTIONS.contains(&setting.env) {
                continue;
            }
            let (section, name) = setting.key.split_once('.').unwrap_or(("", setting.key));
            let expected = match section {
                "oz" | "github" | "slack" => format!("{section}_{name}").to_ascii_uppercase(),
                _ => format!("OZBRIDGE_{name}").to_ascii_uppercase(),
            };
            assert_eq!(setting.env, expected, "{}", setting.key);
        }
    }

    /// A value for each setting that the configuration accepts.
    fn sample(setting: &Setting) -> &'static str {
        match setting.key {
            "public_url" => "https://oz.example.com",
            "metrics_listen" => "127.0.0.1:9091",
            "oz.harness" => "claude",
            "oz.session_access" => "viewer",
            "templates.prompt" | "templates.slack_prompt" => "Work on {title}",
            "github.enabled_repos" => "acme/widgets,acme/gadgets",
            "github.app_id" | "github.app_private_key" => "",
            _ if !setting.default.is_empty() => setting.default,
            _ => "a-value,another",
        }
    }

    /// Declared once means settable both ways: every setting is accepted from the file
    /// under its key and from the environment under its name, and the listing says
    /// where it came from.
    #[test]
    fn every_setting_is_accepted_from_the_file_and_from_the_environment() {
        for setting in SETTINGS {
            let text = sample(setting);
            if text.is_empty() {
                continue;
            }
            let mut table = toml::Table::new();
            insert(
                &mut table,
                setting.key,
                value(setting, setting.key, text).unwrap(),
            );
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ozbridge.toml");
            std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
            let from_file = super::super::Config::load_with(Some(&path), &|_| None)
                .unwrap_or_else(|e| panic!("{} from the file: {e}", setting.key));
            let env = |name: &str| (name == setting.env).then(|| text.to_owned());
            let from_env = super::super::Config::load_with(None, &env)
                .unwrap_or_else(|e| panic!("{} from the environment: {e}", setting.env));
            let listed = |config: &super::super::Config, from: &str| {
                config
                    .describe()
                    .lines()
                    .any(|l| l.starts_with(&format!("{:<36} ", setting.key)) && l.ends_with(from))
            };
            assert!(listed(&from_file, "(file)"), "{}", setting.key);
            assert!(listed(&from_env, "(environment)"), "{}", setting.env);
        }
        // The App pair, which is accepted only together.
        let pem = "-----BEGIN PRIVATE KEY-----\\nabc\\n-----END PRIVATE KEY-----";
        let env = |name: &str| match name {
            "GITHUB_APP_ID" => Some("12".to_owned()),
            "GITHUB_APP_PRIVATE_KEY" => Some(pem.to_owned()),
            _ => None,
        };
        assert!(super::super::Config::load_with(None, &env).is_ok());
    }

    #[test]
    fn every_default_is_of_its_kind() {
        for setting in SETTINGS.iter().filter(|s| !s.default.is_empty()) {
            assert!(
                value(setting, setting.key, setting.default).is_ok(),
                "{}",
                setting.key
            );
        }
    }
}
