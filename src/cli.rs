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
        /// With `--online`: also read `owner/name`'s `.github/ozbridge.toml` and show the
        /// repository's settings as commands there see them.
        #[arg(long, value_name = "OWNER/NAME", requires = "online")]
        repo: Option<String>,
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
    /// Register the GitHub App or the Slack app for a deployment.
    Setup {
        #[command(subcommand)]
        what: SetupArgs,
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
enum SetupArgs {
    /// Register the GitHub App in one click (GitHub's manifest flow, from a page on this
    /// machine), and write its id, private key and webhook secret to a file.
    Github {
        /// Public base URL of this ozbridge, e.g. https://ozbridge.example.com
        #[arg(long)]
        url: String,
        /// Register the App for this organization (default: your account).
        #[arg(long)]
        org: Option<String>,
        /// The App's name; GitHub App names are unique across GitHub (default:
        /// `ozbridge-ORG`, or `ozbridge-` and six random characters).
        #[arg(long)]
        name: Option<String>,
        /// Loopback port of the setup page (default: any free one; fix it to forward it
        /// over SSH from a remote machine).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Where the credentials are written (mode 0600).
        #[arg(long, default_value = "ozbridge.env")]
        out: PathBuf,
        /// Replace the credentials file if it exists.
        #[arg(long)]
        force: bool,
        /// GitHub's web address (GitHub Enterprise: https://HOST).
        #[arg(long, env = "GITHUB_WEB_URL", default_value = "https://github.com")]
        web_url: String,
        /// GitHub's API base (GitHub Enterprise: https://HOST/api/v3).
        #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
        api_url: String,
    },
    /// Print the link that creates the Slack app from its manifest and the steps that
    /// remain; checks the bot token against Slack when it is set.
    Slack {
        /// Public base URL of this ozbridge, e.g. https://ozbridge.example.com
        #[arg(long)]
        url: String,
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
        Commands::CheckConfig { online, repo } => {
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
            if let Some(repo) = repo {
                ok &= check_repo(&config, &repo).await;
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
        Commands::Setup { what } => setup(what, cli.config.as_deref()).await,
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

async fn setup(what: SetupArgs, config: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    match what {
        SetupArgs::Github {
            url,
            org,
            name,
            port,
            out,
            force,
            web_url,
            api_url,
        } => {
            let name = name.unwrap_or_else(|| match &org {
                Some(org) => format!("ozbridge-{org}"),
                None => format!(
                    "ozbridge-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..6]
                ),
            });
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let options = crate::setup::github::GithubSetupOptions {
                public_url: url,
                org,
                name,
                web_url,
                api_url,
                env_file: out,
                force,
            };
            let running = crate::setup::github::start(options, listener).await?;
            println!(
                "Open this page in a browser on this machine and press its button:\n\n  {}\n\n\
                 (Waiting for GitHub; Ctrl-C stops.)",
                running.page_url
            );
            let app = tokio::select! {
                created = running.created() => created?,
                _ = tokio::signal::ctrl_c() => {
                    println!("Stopped; nothing was written.");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let file = app.env_file.display();
            println!(
                "\nGitHub App `{slug}` created (id {id}): {html}\n\
                 Its id, private key and webhook secret are in {file} (readable by you only).\n\n\
                 Next:\n\
                 1. Install it on your repositories: {install}\n\
                 2. Give the credentials to ozbridge. Fly.io:\n   \
                    fly secrets set GITHUB_APP_ID={id} \\\n     \
                    GITHUB_WEBHOOK_SECRET=\"$(sed -n 's/^GITHUB_WEBHOOK_SECRET=//p' {file})\" \\\n     \
                    GITHUB_APP_PRIVATE_KEY=\"$(sed -n 's/^GITHUB_APP_PRIVATE_KEY=//p' {file})\"\n   \
                    Docker: docker run --env-file {file} ...   (add WARP_API_KEY to the file or the environment)\n\
                 3. Check: ozbridge check-config --online (with the file's settings in the environment)",
                slug = app.slug,
                id = app.id,
                html = app.html_url,
                install = app.install_url(),
            );
            Ok(ExitCode::SUCCESS)
        }
        SetupArgs::Slack { url } => {
            let parsed = url::Url::parse(&url)
                .map_err(|e| anyhow::anyhow!("--url `{url}` is not a URL: {e}"))?;
            anyhow::ensure!(
                parsed.scheme() == "https",
                "--url must be https: Slack only calls HTTPS endpoints"
            );
            print!("{}", crate::setup::slack::steps(&url));
            let config = Config::load(config)?;
            if config.slack.bot_token.is_none() || config.slack.signing_secrets.is_empty() {
                println!(
                    "\nSLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are not both set here: nothing checked yet."
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!();
            let ok = report(
                "Slack",
                "SLACK_BOT_TOKEN not set",
                check_slack(&config).await,
            );
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Prints one online check's outcome; false when it failed.
fn report(name: &str, missing: &str, result: Option<anyhow::Result<String>>) -> bool {
    match result {
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
    }
}

/// `auth.test` with the configured bot token; `None` when there is none.
async fn check_slack(config: &Config) -> Option<anyhow::Result<String>> {
    let token = config.slack.bot_token.as_ref()?;
    Some(
        async {
            let client = crate::slack::SlackClient::new(
                &config.slack.api_url,
                token.clone(),
                &config.slack.response_url_prefix,
                std::time::Duration::from_secs(20),
            )?;
            let (team, user) = client.auth_test().await?;
            anyhow::Ok(format!("workspace {team}, bot user {user}"))
        }
        .await,
    )
}

/// Reads a repository's settings file as the service would and prints the merged
/// settings; false when the file cannot be used (or read).
async fn check_repo(config: &Config, repo: &str) -> bool {
    use crate::github::repo_config::REPO_FILE;
    let name = crate::ids::RepoFullName(repo.to_owned());
    if name.split().is_none() {
        println!("\nRepository {repo}: FAILED: not owner/name");
        return false;
    }
    let Some(auth) = &config.github.auth else {
        println!("\nRepository {repo}: skipped (no GitHub credentials)");
        return true;
    };
    let read = async {
        let client = crate::github::GithubClient::new(
            &config.github.api_url,
            auth,
            std::time::Duration::from_secs(20),
        )?;
        let installation = client.installation_of(&name).await?;
        anyhow::Ok(
            client
                .repo_file(&name, installation, REPO_FILE, None)
                .await?,
        )
    }
    .await;
    let repos = &config.github.repos;
    println!();
    let (file, source) = match read {
        Err(error) => {
            println!("Repository {repo}: FAILED: {error}");
            return false;
        }
        Ok(crate::github::RepoFileFetch::Found { sha, text, .. }) => {
            match repos.parse_file(&text) {
                Ok(file) => (Some(file), format!("{REPO_FILE} (blob {sha})")),
                Err(problem) => {
                    println!(
                        "Repository {repo}: FAILED: {problem}; nothing starts there until it is fixed"
                    );
                    return false;
                }
            }
        }
        Ok(_) => (None, format!("no {REPO_FILE}: the server's settings")),
    };
    println!("Repository {repo}: ok ({source})");
    for line in repos.rules(repo, file.as_ref()).describe() {
        println!("  {line}");
    }
    true
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
    let slack = check_slack(config).await;
    let database = crate::store::Store::probe_transport(&config.database_url)
        .await
        .map(|transport| transport.to_string());
    let database_ok = report("Database", "", Some(database));
    let oz_ok = report("Oz API", "WARP_API_KEY not set", oz);
    let github_ok = report("GitHub", "no credentials", github);
    let slack_ok = report("Slack", "SLACK_BOT_TOKEN not set", slack);
    database_ok && oz_ok && github_ok && slack_ok
}
