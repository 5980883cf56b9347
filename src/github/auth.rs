//! GitHub App authentication: an RS256 JWT buys an installation token, cached until
//! shortly before it expires.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tokens are renewed this long before GitHub's expiry.
const RENEW_MARGIN: Duration = Duration::from_secs(300);

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

/// Credentials of a GitHub App and its cached installation tokens.
pub struct AppAuth {
    app_id: u64,
    key: jsonwebtoken::EncodingKey,
    tokens: Mutex<HashMap<u64, (SecretString, Instant)>>,
    /// Held while a token is minted, so concurrent callers mint one token, not several.
    pub minting: tokio::sync::Mutex<()>,
}

/// Reply of `POST /app/installations/{id}/access_tokens`.
#[derive(Deserialize)]
pub struct InstallationToken {
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl AppAuth {
    /// Parses the PEM private key; the error never contains key material.
    pub fn new(app_id: u64, private_key_pem: &SecretString) -> anyhow::Result<Self> {
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.expose_secret().as_bytes())
                .map_err(|_| {
                    anyhow::anyhow!(
                        "GITHUB_APP_PRIVATE_KEY is not a valid RSA private key in PEM form"
                    )
                })?;
        Ok(Self {
            app_id,
            key,
            tokens: Mutex::default(),
            minting: tokio::sync::Mutex::new(()),
        })
    }

    /// A JWT for app-level calls: issued 60 s in the past (clock drift), valid 9 minutes.
    pub fn jwt(&self) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iat: now - 60,
            exp: now + 9 * 60,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| anyhow::anyhow!("cannot sign the GitHub App JWT: {e}"))
    }

    /// A cached installation token still valid for a while.
    pub fn cached(&self, installation: u64) -> Option<SecretString> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(&installation)
            .filter(|(_, renew_at)| Instant::now() < *renew_at)
            .map(|(token, _)| token.clone())
    }

    /// Caches a freshly minted token.
    pub fn store(&self, installation: u64, token: InstallationToken) -> SecretString {
        let lifetime = (token.expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_MARGIN);
        let secret = SecretString::from(token.token);
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert(installation, (secret.clone(), renew_at));
        secret
    }
}
