//! The fake GitHub's App manifest flow: the web pages that take a manifest and send the
//! browser back with a one-time code (`/settings/apps/new`,
//! `/organizations/{org}/settings/apps/new`), and the API call that turns the code into
//! the new App's credentials (`POST /app-manifests/{code}/conversions`), as GitHub's
//! documentation describes them. Neither needs a token.

use super::{FakeGithub, error, lock};
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The key pair the next App registered through a manifest gets (GitHub makes one; the
/// fake hands out a fixed one so the tests can then verify the App's JWTs).
#[derive(Clone)]
pub struct AppKeys {
    pub app_id: u64,
    pub private_pem: String,
    pub public_pem: String,
}

/// A manifest GitHub accepted, waiting for its code to be converted.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The manifest as the browser sent it.
    pub manifest: Value,
    /// The organization it was registered for, if any.
    pub org: Option<String>,
}

/// The flow's state in the fake.
#[derive(Default)]
pub(super) struct AppsState {
    pub keys: Option<AppKeys>,
    pub codes: HashMap<String, Registration>,
    pub registered: Vec<Registration>,
}

/// The routes of the flow (outside the fake's token gate: none takes a token).
pub(super) fn router(fake: FakeGithub) -> Router {
    Router::new()
        .route("/settings/apps/new", post(register_for_user))
        .route(
            "/organizations/{org}/settings/apps/new",
            post(register_for_org),
        )
        .route("/app-manifests/{code}/conversions", post(convert))
        .with_state(fake)
}

impl FakeGithub {
    /// Lets Apps be registered through the manifest flow; they get these keys.
    pub fn offer_app_keys(&self, keys: AppKeys) {
        lock(&self.state).apps.keys = Some(keys);
    }

    /// Every manifest registered so far, oldest first.
    pub fn registered_apps(&self) -> Vec<Registration> {
        lock(&self.state).apps.registered.clone()
    }
}

#[derive(Deserialize)]
struct ManifestForm {
    manifest: String,
}

#[derive(Deserialize)]
struct StateQuery {
    state: Option<String>,
}

async fn register_for_user(
    State(fake): State<FakeGithub>,
    Query(query): Query<StateQuery>,
    Form(form): Form<ManifestForm>,
) -> Response {
    register(fake, None, query, form)
}

async fn register_for_org(
    State(fake): State<FakeGithub>,
    Path(org): Path<String>,
    Query(query): Query<StateQuery>,
    Form(form): Form<ManifestForm>,
) -> Response {
    register(fake, Some(org), query, form)
}

/// GitHub shows the manifest's App for confirmation and then redirects to its
/// `redirect_url` with a code and the state; the fake confirms at once.
fn register(
    fake: FakeGithub,
    org: Option<String>,
    query: StateQuery,
    form: ManifestForm,
) -> Response {
    let bad = |why: &str| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Invalid GitHub App configuration: {why}"),
        )
            .into_response()
    };
    let Ok(manifest) = serde_json::from_str::<Value>(&form.manifest) else {
        return bad("the manifest is not JSON");
    };
    let text = |pointer: &str| {
        manifest
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    for required in ["/url", "/hook_attributes/url", "/redirect_url"] {
        if url::Url::parse(&text(required)).is_err() {
            return bad(&format!("{required} must be a URL"));
        }
    }
    let Ok(mut back) = url::Url::parse(&text("/redirect_url")) else {
        return bad("redirect_url must be a URL");
    };
    let code = format!("{:032x}", fastrand::u128(..));
    back.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = &query.state {
        back.query_pairs_mut().append_pair("state", state);
    }
    let registration = Registration { manifest, org };
    let mut state = lock(&fake.state);
    state.apps.codes.insert(code, registration.clone());
    state.apps.registered.push(registration);
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, back.to_string())],
    )
        .into_response()
}

/// One code, one App: a second conversion of the same code is a 404, as on GitHub.
async fn convert(State(fake): State<FakeGithub>, Path(code): Path<String>) -> Response {
    let mut state = lock(&fake.state);
    let Some(registration) = state.apps.codes.remove(&code) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(keys) = state.apps.keys.clone() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the fake has no App keys to hand out",
        );
    };
    let Ok(public) = jsonwebtoken::DecodingKey::from_rsa_pem(keys.public_pem.as_bytes()) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the fake's App public key is not PEM",
        );
    };
    state.app = Some((keys.app_id, public));
    let manifest = &registration.manifest;
    let name = manifest["name"].as_str().unwrap_or("app").to_owned();
    let slug = name
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let owner = registration.org.clone().unwrap_or_else(|| "octocat".into());
    (
        StatusCode::CREATED,
        Json(json!({
            "id": keys.app_id,
            "slug": slug,
            "node_id": format!("A_fake{}", keys.app_id),
            "owner": { "login": owner },
            "name": name,
            "description": manifest["description"],
            "external_url": manifest["url"],
            "html_url": format!("https://github.com/apps/{slug}"),
            "created_at": chrono::Utc::now(),
            "updated_at": chrono::Utc::now(),
            "permissions": manifest["default_permissions"],
            "events": manifest["default_events"],
            "client_id": format!("Iv1.fake{}", keys.app_id),
            "client_secret": format!("{:040x}", fastrand::u128(..)),
            "webhook_secret": format!("{:040x}", fastrand::u128(..)),
            "pem": keys.private_pem,
        })),
    )
        .into_response()
}
