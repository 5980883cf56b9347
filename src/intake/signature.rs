//! HMAC-SHA256 request signatures, checked in constant time against every configured
//! secret (several at once during a rotation).

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. Never carries the secret or the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
    #[error("no secret is configured to check the signature")]
    NoSecret,
}

/// Checks `sha256=<hex>` style signatures over `parts` (concatenated) for any secret.
pub fn verify_hex_hmac(
    secrets: &[SecretString],
    header: Option<&str>,
    prefix: &str,
    parts: &[&[u8]],
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_part = header
        .trim()
        .strip_prefix(prefix)
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_part).map_err(|_| SignatureError::Malformed)?;
    // Every secret is tried (no early exit on the first) so timing says nothing about
    // which one matched; each comparison is constant time.
    let mut matched = false;
    for secret in secrets {
        let Ok(mut mac) = HmacSha256::new_from_slice(secret.expose_secret().as_bytes()) else {
            continue;
        };
        for part in parts {
            mac.update(part);
        }
        matched |= mac.verify_slice(&expected).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body), as GitHub sends it.
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex_hmac(secret, &[body]))
}

/// Hex HMAC-SHA256 of the concatenated parts.
pub fn hex_hmac(secret: &str, parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<SecretString> {
        values
            .iter()
            .map(|v| SecretString::from(v.to_string()))
            .collect()
    }

    #[test]
    fn github_test_vector() {
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            sign_github("It's a Secret to Everybody", b"Hello, World!"),
            expected
        );
        let ok = verify_hex_hmac(
            &secrets(&["It's a Secret to Everybody"]),
            Some(expected),
            "sha256=",
            &[b"Hello, World!"],
        );
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn rotation_missing_and_malformed() {
        let body: &[u8] = b"{}";
        let signature = sign_github("new", body);
        let both = secrets(&["old", "new"]);
        assert_eq!(
            verify_hex_hmac(&both, Some(&signature), "sha256=", &[body]),
            Ok(())
        );
        assert_eq!(
            verify_hex_hmac(&secrets(&["old"]), Some(&signature), "sha256=", &[body]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_hex_hmac(&both, None, "sha256=", &[body]),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_hex_hmac(&both, Some("sha1=abc"), "sha256=", &[body]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_hex_hmac(&both, Some("sha256=zz"), "sha256=", &[body]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_hex_hmac(&[], Some(&signature), "sha256=", &[body]),
            Err(SignatureError::NoSecret)
        );
    }
}
