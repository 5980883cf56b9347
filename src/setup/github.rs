//! `ozbridge setup github`: registers ozbridge's GitHub App through GitHub's manifest
//! flow and writes its credentials.
//!
//! A page served on loopback, at a path holding a random one-time token, carries one
//! button: it posts the App manifest (`src/github/manifest.rs`) to GitHub with a random
//! `state`. GitHub shows the App, creates it when the user confirms, and sends the
//! browser back here with a code and the state. The state is checked and spent; the
//! code is exchanged (`POST /app-manifests/{code}/conversions`) for the App's id,
//! private key and webhook secret, which go to a file only its owner can read.

use super::env_file;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// What `ozbridge setup github` was asked for.
#[derive(Debug, Clone)]
pub struct GithubSetupOptions {
    /// This deployment's public HTTPS URL; the webhook goes to `/github/webhook` under it.
    pub public_url: String,
    /// Register the App for this organization instead of the user's account.
    pub org: Option<String>,
    /// The App's name (GitHub's page lets the user change it).
    pub name: String,
    /// GitHub's web address (`GITHUB_WEB_URL`; GitHub Enterprise: `https://HOST`).
    pub web_url: String,
    /// GitHub's API base (`GITHUB_API_URL`; GitHub Enterprise: `https://HOST/api/v3`).
    pub api_url: String,
    /// Where the credentials are written.
    pub env_file: PathBuf,
    /// Replace an existing credentials file.
    pub force: bool,
}

/// Why a setup cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `--url` is not an HTTPS URL.
    #[error(
        "--url `{0}` must be the deployment's public https:// URL (GitHub only delivers webhooks to a public address)"
    )]
    NotHttps(String),
    /// `--org` is not an organization login.
    #[error("--org `{0}` is not an organization name (letters, digits and hyphens)")]
    BadOrg(String),
    /// `GITHUB_WEB_URL` or `GITHUB_API_URL` is not a URL.
    #[error("{0} is not a URL")]
    BadBase(&'static str),
    /// The credentials file is in the way.
    #[error(transparent)]
    File(#[from] env_file::EnvFileError),
}

/// The App GitHub registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedApp {
    /// The App's id (`GITHUB_APP_ID`).
    pub id: u64,
    /// Its URL name.
    pub slug: String,
    /// Its page on GitHub.
    pub html_url: String,
    /// Where its credentials were written.
    pub env_file: PathBuf,
}

impl CreatedApp {
    /// Where the App is installed on repositories.
    pub fn install_url(&self) -> String {
        format!("{}/installations/new", self.html_url.trim_end_matches('/'))
    }
}

/// A setup page being served, until an App is created.
pub struct RunningSetup {
    /// The page to open in a browser on this machine.
    pub page_url: String,
    created: oneshot::Receiver<CreatedApp>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl RunningSetup {
    /// Waits until the App is created and its credentials written, then stops serving
    /// (after the last page has gone out).
    pub async fn created(self) -> anyhow::Result<CreatedApp> {
        let created = self.created.await;
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        created.map_err(|_| anyhow::anyhow!("the setup page stopped before an App was created"))
    }
}

/// The flow's state, shared by the page's handlers.
struct Flow {
    options: GithubSetupOptions,
    token: String,
    /// Where GitHub sends the browser back to.
    redirect_url: String,
    /// The state GitHub must send back; `None` once spent.
    state: Mutex<Option<String>>,
    created: Mutex<Option<oneshot::Sender<CreatedApp>>>,
    http: reqwest::Client,
}

/// Checks the options and serves the setup page on `listener` (a loopback address).
pub async fn start(
    options: GithubSetupOptions,
    listener: TcpListener,
) -> Result<RunningSetup, anyhow::Error> {
    let public = url::Url::parse(&options.public_url)
        .map_err(|_| SetupError::NotHttps(options.public_url.clone()))?;
    if public.scheme() != "https" {
        return Err(SetupError::NotHttps(options.public_url.clone()).into());
    }
    if let Some(org) = &options.org
        && (org.is_empty() || !org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(SetupError::BadOrg(org.clone()).into());
    }
    url::Url::parse(&options.web_url).map_err(|_| SetupError::BadBase("GITHUB_WEB_URL"))?;
    url::Url::parse(&options.api_url).map_err(|_| SetupError::BadBase("GITHUB_API_URL"))?;
    env_file::check_free(&options.env_file, options.force).map_err(SetupError::from)?;

    let address = listener.local_addr()?;
    let token = random_hex();
    let page_url = format!("http://{address}/{token}");
    let (created_tx, created) = oneshot::channel();
    let flow = Arc::new(Flow {
        redirect_url: format!("{page_url}/done"),
        options,
        token,
        state: Mutex::new(Some(random_hex())),
        created: Mutex::new(Some(created_tx)),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("ozbridge/", env!("CARGO_PKG_VERSION")))
            .build()?,
    });
    let router = Router::new()
        .route("/{token}", get(page))
        .route("/{token}/done", get(done))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not found") })
        .with_state(flow);
    let (stop, mut stopped) = watch::channel(false);
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            eprintln!("the setup page stopped: {error}");
        }
    });
    Ok(RunningSetup {
        page_url,
        created,
        stop,
        server,
    })
}

/// 128 random bits from the operating system, as hex.
fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `GET /{token}`: the page with the button that sends the manifest to GitHub.
async fn page(State(flow): State<Arc<Flow>>, Path(token): Path<String>) -> Response {
    if token != flow.token {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    let Some(state) = flow.state.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
        return message_page(
            StatusCode::GONE,
            "This setup is finished",
            "The App was created already. Run <code>ozbridge setup github</code> again for another one.",
        );
    };
    let options = &flow.options;
    let web = options.web_url.trim_end_matches('/');
    let action = match &options.org {
        Some(org) => format!("{web}/organizations/{org}/settings/apps/new?state={state}"),
        None => format!("{web}/settings/apps/new?state={state}"),
    };
    let manifest =
        crate::github::manifest::manifest(&options.name, &options.public_url, &flow.redirect_url);
    let owner = match &options.org {
        Some(org) => format!("the organization <b>{}</b>", escape(org)),
        None => "your GitHub account".to_owned(),
    };
    let permissions: Vec<String> = crate::github::manifest::PERMISSIONS
        .iter()
        .map(|(what, level)| format!("{what}: {level}"))
        .collect();
    let body = format!(
        r#"<p>This registers a private GitHub App named <b>{name}</b> for {owner}:</p>
<ul>
<li>webhook: <code>{hook}</code> (GitHub makes its secret)</li>
<li>repository permissions: {permissions}</li>
<li>events: {events}</li>
</ul>
<p>GitHub shows you the App before it creates it (you may rename it there). Then it sends
you back here, and its id, private key and webhook secret are written to
<code>{file}</code>, readable by you only.</p>
<form method="post" action="{action}">
<input type="hidden" name="manifest" value="{manifest}">
<button type="submit" id="create">Create the GitHub App on GitHub</button>
</form>"#,
        name = escape(&options.name),
        hook = escape(
            manifest["hook_attributes"]["url"]
                .as_str()
                .unwrap_or_default()
        ),
        permissions = escape(&permissions.join(", ")),
        events = escape(&crate::github::manifest::EVENTS.join(", ")),
        file = escape(&options.env_file.display().to_string()),
        action = escape(&action),
        manifest = escape(&manifest.to_string()),
    );
    html_page(StatusCode::OK, "Register ozbridge's GitHub App", &body)
}

#[derive(Deserialize)]
struct Return {
    code: Option<String>,
    state: Option<String>,
}

/// `GET /{token}/done?code=…&state=…`: GitHub sent the browser back.
async fn done(
    State(flow): State<Arc<Flow>>,
    Path(token): Path<String>,
    Query(back): Query<Return>,
) -> Response {
    if token != flow.token {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    let nothing_written =
        "Nothing was written. Run <code>ozbridge setup github</code> again to start over.";
    {
        let mut expected = flow.state.lock().unwrap_or_else(|p| p.into_inner());
        match (expected.as_deref(), back.state.as_deref()) {
            (None, _) => {
                return message_page(
                    StatusCode::BAD_REQUEST,
                    "This link was used already",
                    &format!("Each setup registers one App, once. {nothing_written}"),
                );
            }
            (Some(want), Some(got)) if want == got => *expected = None,
            _ => {
                return message_page(
                    StatusCode::BAD_REQUEST,
                    "This answer is not from this setup",
                    &format!(
                        "Its state does not match the one this page sent to GitHub. {nothing_written}"
                    ),
                );
            }
        }
    }
    let Some(code) = back.code.filter(|c| {
        !c.is_empty()
            && c.len() <= 200
            && c.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) else {
        return message_page(
            StatusCode::BAD_REQUEST,
            "GitHub sent no code",
            &format!("The App may not have been created. {nothing_written}"),
        );
    };
    let conversion = match exchange(&flow, &code).await {
        Ok(conversion) => conversion,
        Err(reason) => {
            eprintln!("setup: the code exchange failed: {reason}");
            return message_page(
                StatusCode::BAD_GATEWAY,
                "GitHub did not hand over the App's credentials",
                &format!(
                    "A code is good for one exchange within an hour; this one was refused or GitHub could not be reached (the terminal says which). {nothing_written}"
                ),
            );
        }
    };
    let options = &flow.options;
    let comment = format!(
        "Written by `ozbridge setup github` for the GitHub App {} ({}).\nKeep it private: it holds the App's private key and webhook secret.",
        conversion.slug, conversion.html_url
    );
    let id = conversion.id.to_string();
    let written = env_file::write(
        &options.env_file,
        options.force,
        &comment,
        &[
            ("GITHUB_APP_ID", &id),
            ("GITHUB_APP_PRIVATE_KEY", &conversion.pem),
            ("GITHUB_WEBHOOK_SECRET", &conversion.webhook_secret),
        ],
    );
    if let Err(error) = written {
        eprintln!("setup: {error}");
        return message_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The credentials could not be written",
            "The App exists on GitHub, but its private key and webhook secret could not be saved (the terminal says why). Delete the App in its settings on GitHub and run <code>ozbridge setup github</code> again.",
        );
    }
    let app = CreatedApp {
        id: conversion.id,
        slug: conversion.slug,
        html_url: conversion.html_url,
        env_file: options.env_file.clone(),
    };
    let body = format!(
        r#"<p id="created">The GitHub App <b>{slug}</b> is registered (id {id}); its credentials are in <code>{file}</code>.</p>
<p>Next: <a href="{install}">install it on your repositories</a>. The terminal shows the rest.</p>"#,
        slug = escape(&app.slug),
        file = escape(&app.env_file.display().to_string()),
        install = escape(&app.install_url()),
    );
    if let Some(sender) = flow
        .created
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        let _ = sender.send(app);
    }
    html_page(StatusCode::OK, "GitHub App created", &body)
}

/// What GitHub answers a code exchange with (the fields used).
#[derive(Deserialize)]
struct Conversion {
    id: u64,
    slug: String,
    html_url: String,
    webhook_secret: String,
    pem: String,
}

/// `POST /app-manifests/{code}/conversions` (no token: the code is the credential).
async fn exchange(flow: &Flow, code: &str) -> Result<Conversion, String> {
    let api = flow.options.api_url.trim_end_matches('/');
    let response = flow
        .http
        .post(format!("{api}/app-manifests/{code}/conversions"))
        .header(reqwest::header::ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .map_err(|e| format!("GitHub could not be reached: {e}"))?;
    let status = response.status();
    if status != reqwest::StatusCode::CREATED {
        return Err(format!("GitHub answered {status}"));
    }
    response
        .json::<Conversion>()
        .await
        .map_err(|e| format!("GitHub's answer was not an App's credentials: {e}"))
}

/// A page saying one thing.
fn message_page(status: StatusCode, title: &str, html: &str) -> Response {
    html_page(status, title, &format!("<p>{html}</p>"))
}

fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:42em;margin:3em auto;padding:0 1em}}button{{font-size:1.1em;padding:.5em 1em}}code{{background:#eee;padding:0 .2em}}</style>
</head><body><h1>{title}</h1>
{body}
</body></html>"#,
        title = escape(title),
    );
    let mut response = (status, Html(page)).into_response();
    response.headers_mut().insert(
        axum::http::header::REFERRER_POLICY,
        axum::http::HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Text made safe inside HTML elements and attribute values (the five characters
/// that matter; no crate needed for that).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
