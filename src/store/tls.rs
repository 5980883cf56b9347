//! PostgreSQL's TLS settings in a database URL (`sslmode`, `sslrootcert`), read as libpq
//! documents them, and what the connection ended up using.

use thiserror::Error;

/// A TLS setting of the database URL that cannot be honoured. Its text names the setting
/// and never the URL (which may hold a password).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TlsSettingError {
    /// `sslmode` is not one libpq knows.
    #[error("sslmode `{0}` is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    UnknownMode(String),
    /// libpq refuses the system's roots with a mode that would not check them.
    #[error(
        "sslrootcert=system needs sslmode=verify-full (or no sslmode), as in libpq; sslmode={0} would not check the server's name"
    )]
    WeakModeWithSystemRoots(String),
    /// The root certificate file named by `sslrootcert` cannot be read.
    #[error("sslrootcert `{path}` cannot be read: {reason}")]
    UnreadableRootCert {
        /// The path as written.
        path: String,
        /// Why, from the operating system.
        reason: String,
    },
    /// The URL itself does not parse.
    #[error("the database URL is not a URL: {0}")]
    NotAUrl(String),
}

/// How the connection to the database travels, for `check-config --online` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// The embedded SQLite file: nothing crosses a network.
    Embedded,
    /// PostgreSQL without TLS.
    Plaintext,
    /// PostgreSQL over TLS, with the protocol version the server reports.
    Tls {
        /// For example `TLSv1.3`.
        version: String,
    },
}

/// Whether the server sees this session encrypted, and with which protocol.
pub(super) const SESSION_TLS: &str =
    "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

impl Transport {
    /// The transport a row of [`SESSION_TLS`] describes.
    pub(super) fn of_session((ssl, version): (bool, Option<String>)) -> Self {
        if ssl {
            Self::Tls {
                version: version.unwrap_or_else(|| "version not reported".into()),
            }
        } else {
            Self::Plaintext
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded SQLite"),
            Self::Plaintext => f.write_str("PostgreSQL, not encrypted"),
            Self::Tls { version } => write!(f, "PostgreSQL over TLS ({version})"),
        }
    }
}

/// Checks a PostgreSQL URL's TLS settings and rewrites the two libpq rules the driver does
/// not apply itself:
/// - `sslrootcert=system` trusts the system's roots (always trusted here) and implies
///   `sslmode=verify-full`; a weaker mode is an error;
/// - `sslmode=require` with a root certificate file checks the server's certificate
///   against it, as `verify-ca` does.
///
/// Everything else (`disable`, `allow`, `prefer` (the default), `require`, `verify-ca`,
/// `verify-full`, `sslcert`, `sslkey`, and the `PGSSLMODE`/`PGSSLROOTCERT` environment
/// variables) the driver reads as libpq does. One difference: with `verify-ca` or
/// `verify-full` and no `sslrootcert`, the system's roots are trusted, where libpq
/// would read `~/.postgresql/root.crt`.
pub fn prepare_postgres_url(url: &str) -> Result<String, TlsSettingError> {
    let mut parsed = url::Url::parse(url).map_err(|e| TlsSettingError::NotAUrl(e.to_string()))?;
    let mut mode: Option<String> = None;
    let mut root_cert: Option<String> = None;
    let mut others: Vec<(String, String)> = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "sslmode" | "ssl-mode" => mode = Some(value.into_owned()),
            "sslrootcert" | "ssl-root-cert" | "ssl-ca" => root_cert = Some(value.into_owned()),
            _ => others.push((key.into_owned(), value.into_owned())),
        }
    }
    if let Some(given) = &mode
        && !matches!(
            given.as_str(),
            "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full"
        )
    {
        return Err(TlsSettingError::UnknownMode(given.clone()));
    }
    match root_cert.as_deref() {
        Some("system") => {
            match mode.as_deref() {
                None | Some("verify-full") => mode = Some("verify-full".into()),
                Some(weaker) => {
                    return Err(TlsSettingError::WeakModeWithSystemRoots(weaker.into()));
                }
            }
            root_cert = None;
        }
        Some(path) if !path.starts_with("-----BEGIN") => {
            if let Err(e) = std::fs::metadata(path) {
                return Err(TlsSettingError::UnreadableRootCert {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
            if mode.as_deref() == Some("require") {
                mode = Some("verify-ca".into());
            }
        }
        _ => {}
    }
    {
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (key, value) in &others {
            query.append_pair(key, value);
        }
        if let Some(mode) = &mode {
            query.append_pair("sslmode", mode);
        }
        if let Some(root_cert) = &root_cert {
            query.append_pair("sslrootcert", root_cert);
        }
    }
    if parsed.query() == Some("") {
        parsed.set_query(None);
    }
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "postgres://app:secret@db.example.com:5432/ozbridge";

    #[test]
    fn the_default_and_plain_modes_pass_unchanged() {
        for url in [
            BASE.to_owned(),
            format!("{BASE}?sslmode=disable"),
            format!("{BASE}?sslmode=prefer&application_name=ozbridge"),
            format!("{BASE}?sslmode=require"),
            format!("{BASE}?sslmode=verify-full"),
        ] {
            let prepared = prepare_postgres_url(&url).unwrap();
            assert_eq!(
                url::Url::parse(&prepared).unwrap().query_pairs().count(),
                url::Url::parse(&url).unwrap().query_pairs().count(),
                "{prepared}"
            );
            assert!(prepared.starts_with(BASE), "{prepared}");
        }
    }

    #[test]
    fn an_unknown_mode_is_named_without_the_url() {
        let error = prepare_postgres_url(&format!("{BASE}?sslmode=required")).unwrap_err();
        assert_eq!(error, TlsSettingError::UnknownMode("required".into()));
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn system_roots_mean_verify_full_and_refuse_weaker_modes() {
        let prepared = prepare_postgres_url(&format!("{BASE}?sslrootcert=system")).unwrap();
        assert_eq!(prepared, format!("{BASE}?sslmode=verify-full"));
        let prepared =
            prepare_postgres_url(&format!("{BASE}?sslmode=verify-full&sslrootcert=system"))
                .unwrap();
        assert_eq!(prepared, format!("{BASE}?sslmode=verify-full"));
        for weaker in ["require", "verify-ca", "prefer", "disable"] {
            assert_eq!(
                prepare_postgres_url(&format!("{BASE}?sslmode={weaker}&sslrootcert=system")),
                Err(TlsSettingError::WeakModeWithSystemRoots(weaker.into()))
            );
        }
    }

    #[test]
    fn require_with_a_root_file_checks_the_certificate_authority() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().display().to_string();
        let prepared =
            prepare_postgres_url(&format!("{BASE}?sslmode=require&sslrootcert={path}")).unwrap();
        let pairs: Vec<(String, String)> = url::Url::parse(&prepared)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert!(pairs.contains(&("sslmode".into(), "verify-ca".into())));
        assert!(pairs.contains(&("sslrootcert".into(), path)));
    }

    #[test]
    fn a_missing_root_file_is_an_error_before_connecting() {
        let error = prepare_postgres_url(&format!(
            "{BASE}?sslmode=verify-ca&sslrootcert=/nowhere/ca.pem"
        ))
        .unwrap_err();
        assert!(
            matches!(&error, TlsSettingError::UnreadableRootCert { path, .. } if path == "/nowhere/ca.pem"),
            "{error}"
        );
    }
}
