//! Wiring: store, clients, pipeline, router and workers, with graceful shutdown.

use crate::clock::Clock;
use crate::config::Config;
use crate::github::{GithubClient, GithubSurface, GithubSurfaceSettings};
use crate::http::{HttpState, MetricsRoute, metrics_router, router};
use crate::oz::OzClient;
use crate::pipeline::{Pipeline, PipelineSettings, doubt_window};
use crate::retry::Backoff;
use crate::slack::{SlackClient, SlackSurface, SlackSurfaceSettings};
use crate::store::Store;
use crate::surface::Surfaces;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running ozbridge: its address and the means to stop it.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub pipeline: Arc<Pipeline>,
    shutdown: watch::Sender<bool>,
    /// The service's HTTP server, and the metrics' when they are served apart.
    servers: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl RunningApp {
    /// Stops accepting requests, lets workers finish their current item, and waits.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.servers.into_iter().chain(self.workers) {
            let _ = task.await;
        }
        self.pipeline.store.close().await;
    }

    /// Stops everything at once, mid-work, as `kill -9` would (for restart tests), and
    /// returns once every task is gone.
    pub async fn kill(self) {
        for task in self.servers.iter().chain(&self.workers) {
            task.abort();
        }
        for task in self.servers.into_iter().chain(self.workers) {
            let _ = task.await;
        }
    }

    /// Waits until the server stops (on shutdown).
    pub async fn wait(self) {
        let mut shutdown = self.shutdown.subscribe();
        let _ = shutdown.wait_for(|stop| *stop).await;
        self.shutdown().await;
    }

    /// A handle that stops this app.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// What a caller can bring to the wiring beside the configuration.
#[derive(Default)]
pub struct Extras {
    /// Surfaces defined outside the crate, served beside the configured ones.
    pub surfaces: Vec<Arc<dyn crate::surface::Surface>>,
    /// The time the store, the clients and the pipeline go by (the system's by default;
    /// a test that drives the pipeline itself holds one).
    pub clock: Clock,
}

/// Builds the pipeline from the configuration.
pub async fn build_pipeline(
    config: &Config,
    tune: impl FnOnce(&mut PipelineSettings),
) -> anyhow::Result<Arc<Pipeline>> {
    build_pipeline_with(config, tune, Extras::default()).await
}

/// [`build_pipeline`], with what the caller brings.
pub async fn build_pipeline_with(
    config: &Config,
    tune: impl FnOnce(&mut PipelineSettings),
    extras: Extras,
) -> anyhow::Result<Arc<Pipeline>> {
    let Extras {
        surfaces: extra,
        clock,
    } = extras;
    let options = crate::store::StoreOptions {
        clock: clock.clone(),
        durable: config.durable,
    };
    let store = Store::connect_with(&config.database_url, options).await?;
    match store.transport().await {
        Ok(transport) => tracing::info!(%transport, "database connected"),
        Err(error) => tracing::warn!(%error, "database connected; its transport is unknown"),
    }
    let api_key = config
        .oz
        .api_key
        .clone()
        .unwrap_or_else(|| SecretString::from(String::new()));
    let oz = OzClient::new(
        &config.oz.api_url,
        api_key,
        config.oz.request_timeout,
        Backoff::default(),
    )?
    .with_clock(clock.clone());
    let surfaces = extra
        .into_iter()
        .fold(surfaces(config, &clock)?, |all, surface| all.with(surface));
    let mut settings = PipelineSettings::new(config);
    tune(&mut settings);
    Ok(Arc::new(Pipeline::new(store, oz, surfaces, settings)))
}

/// The configured surfaces, each over its platform's client.
fn surfaces(config: &Config, clock: &Clock) -> anyhow::Result<Surfaces> {
    let mut surfaces = Surfaces::default();
    if let Some(auth) = &config.github.auth {
        let client =
            GithubClient::new(&config.github.api_url, auth, config.github.request_timeout)?
                .with_clock(clock.clone());
        surfaces = surfaces.with(Arc::new(GithubSurface::new(
            client,
            GithubSurfaceSettings {
                policy: config.github.policy.clone(),
                repos: config.github.repos.clone(),
                prompt_template: config.prompt_template.clone(),
                public_url: config.public_url.clone(),
                permission_ttl: config.github.permission_cache_ttl,
                doubt_window: doubt_window(config.github.request_timeout),
                web_url: crate::github::web_url_of(&config.github.api_url),
                repo_file_ttl: config.github.repo_file_ttl,
            },
        )));
    }
    if let Some(token) = &config.slack.bot_token {
        let client = SlackClient::new(
            &config.slack.api_url,
            token.clone(),
            &config.slack.response_url_prefix,
            config.slack.request_timeout,
        )?
        .with_clock(clock.clone());
        surfaces = surfaces.with(Arc::new(SlackSurface::new(
            client,
            SlackSurfaceSettings {
                policy: config.slack.policy.clone(),
                channels: config.slack.channels.clone(),
                prompt_template: config.slack_prompt_template.clone(),
                public_url: config.public_url.clone(),
                doubt_window: doubt_window(config.slack.request_timeout),
            },
        )));
    }
    Ok(surfaces)
}

/// Who moves the pipeline along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// Its own workers, in the background (how the service runs).
    Workers,
    /// The caller, through [`Pipeline::run_until_idle`] (a test that steps it).
    Caller,
}

/// Starts the HTTP server on `listener` and, as `drive` says, the pipeline workers.
pub async fn start(
    config: &Config,
    pipeline: Arc<Pipeline>,
    listener: TcpListener,
    drive: Drive,
) -> anyhow::Result<RunningApp> {
    let addr = listener.local_addr()?;
    if !crate::telemetry::install_metrics() {
        tracing::warn!("another metrics recorder is installed; /metrics will be unavailable");
    }
    let (shutdown, stop) = watch::channel(false);
    let state = HttpState {
        pipeline: pipeline.clone(),
        github_secrets: Arc::new(config.github.webhook_secrets.clone()),
        github_bot_login: config.github.bot_login.clone(),
        github_policy: Arc::new(config.github.policy.clone()),
        github_repos: Arc::new(config.github.repos.clone()),
        slack_secrets: Arc::new(config.slack.signing_secrets.clone()),
        body_timeout: config.http.body_timeout,
    };
    let (metrics_route, metrics_server) = match config.metrics_listen {
        None => (MetricsRoute::OnMain, None),
        Some(address) => {
            let metrics_listener = TcpListener::bind(address).await?;
            tracing::info!(addr = %metrics_listener.local_addr()?, "metrics are served apart");
            let server = tokio::spawn(crate::http::serve(
                metrics_listener,
                metrics_router(),
                config.http,
                stop.clone(),
            ));
            (MetricsRoute::Apart, Some(server))
        }
    };
    let app = router(state, metrics_route);
    let server = tokio::spawn(crate::http::serve(listener, app, config.http, stop.clone()));
    let workers = match drive {
        Drive::Workers => pipeline.spawn(stop),
        Drive::Caller => Vec::new(),
    };
    Ok(RunningApp {
        addr,
        pipeline,
        shutdown,
        servers: std::iter::once(server).chain(metrics_server).collect(),
        workers,
    })
}

/// `ozbridge serve`: runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    config.require_for_serve()?;
    let pipeline = build_pipeline(&config, |_| {}).await?;
    let listener = TcpListener::bind(config.listen).await?;
    let app = start(&config, pipeline, listener, Drive::Workers).await?;
    tracing::info!(addr = %app.addr, "ozbridge is listening");
    let stopper = app.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stopper.send(true);
    });
    app.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
