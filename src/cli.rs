//! Command line: `serve`, `demo`, `check-config`, `healthcheck`, `admin`, `setup`,
//! `slack-manifest`, `sim-oz`.

use crate::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Start and follow Warp Oz cloud agents from GitHub and Slack.
#[derive(Parser)]
#[command(name = "ozbridge", version, about)]
struct Cli {
    /// TOML configuration file (also `OZBRIDGE_CONFIG`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Commands>,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the service (the default).
    Serve,
    /// Run a complete flow offline: Oz simulator, fake GitHub, a signed `/oz` webhook.
    #[cfg(feature = "demo")]
    Demo,
    /// Print the effective configuration, secrets redacted.
    CheckConfig {
        /// Also check each credential against its API.
        #[arg(long)]
        online: bool,
    },
    /// Ask the service on this machine whether it is up (`GET /healthz` on the configured
    /// listen address), for a container's HEALTHCHECK: exit 0 when it answers.
    Healthcheck {
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Operator commands against the configured database (the service may be running).
    Admin {
        #[command(subcommand)]
        command: AdminArgs,
    },
    /// Print a Slack app manifest (slash command, events, interactivity, bot scopes).
    SlackManifest {
        /// Public base URL of this ozbridge, e.g. https://ozbridge.example.com
        #[arg(long)]
        url: String,
    },
    /// Serve the Oz API simulator.
    #[cfg(feature = "demo")]
    SimOz {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
        /// Time between the steps of a simulated run, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        step_ms: u64,
    },
}

#[derive(Subcommand)]
enum AdminArgs {
    /// List work set aside after its retry budget was spent.
    List {
        /// Parked work (the only listing so far).
        #[arg(long)]
        parked: bool,
    },
    /// Put a parked command, run or notification back in line.
    Retry {
        /// Its id, as `admin list --parked` shows it.
        id: String,
    },
    /// Refuse new runs on every replica (active runs are still followed).
    Pause,
    /// Start new runs again.
    Resume,
}

/// Parses arguments and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Commands::Serve) {
        Commands::Serve => {
            let config = Config::load(cli.config.as_deref())?;
            crate::telemetry::init_logging(config.log_format);
            crate::app::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Commands::Demo => crate::demo::run().await,
        Commands::CheckConfig { online } => {
            let config = Config::load(cli.config.as_deref())?;
            print!("{}", config.describe());
            let mut ok = true;
            if let Err(error) = config.require_for_serve() {
                println!("\nnot ready to serve: {error}");
                ok = false;
            }
            if online {
                ok &= check_online(&config).await;
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Commands::Healthcheck { timeout } => {
            let config = Config::load(cli.config.as_deref())?;
            let mut addr = config.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            let answer = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(timeout))
                .build()?
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            Ok(match answer {
                Ok(_) => {
                    println!("ok: ozbridge answers on {addr}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    println!("unhealthy: no answer from ozbridge on {addr}: {error}");
                    ExitCode::FAILURE
                }
            })
        }
        Commands::Admin { command } => {
            let config = Config::load(cli.config.as_deref())?;
            let command = match command {
                AdminArgs::List { parked } => {
                    anyhow::ensure!(parked, "say what to list: `admin list --parked`");
                    crate::admin::AdminCommand::ListParked
                }
                AdminArgs::Retry { id } => crate::admin::AdminCommand::Retry(id),
                AdminArgs::Pause => crate::admin::AdminCommand::Pause,
                AdminArgs::Resume => crate::admin::AdminCommand::Resume,
            };
            let store = crate::store::Store::connect(&config.database_url).await?;
            let result = crate::admin::run(&store, &command).await;
            store.close().await;
            print!("{}", result?);
            Ok(ExitCode::SUCCESS)
        }
        Commands::SlackManifest { url } => {
            let parsed = url::Url::parse(&url)
                .map_err(|e| anyhow::anyhow!("--url `{url}` is not a URL: {e}"))?;
            anyhow::ensure!(
                parsed.scheme() == "https",
                "--url must be https: Slack only calls HTTPS endpoints"
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::slack::manifest::manifest(&url))?
            );
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Commands::SimOz { listen, step_ms } => {
            crate::telemetry::init_logging(crate::config::LogFormat::Text);
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            let sim = crate::testkit::oz::OzSim::new(std::time::Duration::from_millis(step_ms));
            let base = sim.serve(listener).await?;
            println!("Oz simulator listening: OZ_API_URL={base} (any WARP_API_KEY is accepted)");
            let _ = tokio::signal::ctrl_c().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn check_online(config: &Config) -> bool {
    use std::time::Duration;
    println!();
    let oz = match &config.oz.api_key {
        None => None,
        Some(key) => Some(
            async {
                let client = crate::oz::OzClient::new(
                    &config.oz.api_url,
                    key.clone(),
                    config.oz.request_timeout,
                    Default::default(),
                )?;
                let models = client.list_models().await?;
                anyhow::Ok(format!("{} models available", models.models.len()))
            }
            .await,
        ),
    };
    let github = match &config.github.auth {
        None => None,
        Some(auth) => Some(
            async {
                let client = crate::github::GithubClient::new(
                    &config.github.api_url,
                    auth,
                    Duration::from_secs(20),
                )?;
                anyhow::Ok(client.check_credentials().await?)
            }
            .await,
        ),
    };
    let slack = match &config.slack.bot_token {
        None => None,
        Some(token) => Some(
            async {
                let prefix = &config.slack.response_url_prefix;
                let client = crate::slack::SlackClient::new(
                    &config.slack.api_url,
                    token.clone(),
                    prefix,
                    Duration::from_secs(20),
                )?;
                let (team, user) = client.auth_test().await?;
                anyhow::Ok(format!("workspace {team}, bot user {user}"))
            }
            .await,
        ),
    };
    let report = |name: &str, missing: &str, result: Option<anyhow::Result<String>>| match result {
        None => {
            println!("{name}: skipped ({missing})");
            true
        }
        Some(Ok(text)) => {
            println!("{name}: ok ({text})");
            true
        }
        Some(Err(error)) => {
            println!("{name}: FAILED: {error}");
            false
        }
    };
    let database = crate::store::Store::probe_transport(&config.database_url)
        .await
        .map(|transport| transport.to_string());
    let database_ok = report("Database", "", Some(database));
    let oz_ok = report("Oz API", "WARP_API_KEY not set", oz);
    let github_ok = report("GitHub", "no credentials", github);
    let slack_ok = report("Slack", "SLACK_BOT_TOKEN not set", slack);
    database_ok && oz_ok && github_ok && slack_ok
}
