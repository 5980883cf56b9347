//! Files attached to a request, on their way to the agent: which may go (images of the
//! types Oz takes, each within a size, at most five), reading one with a cap before it
//! is whole, and the note that names what was left out. The surfaces download (each with
//! its own credentials, only from its platform's file hosts); this module decides.

use serde::{Deserialize, Serialize};

/// Oz takes at most this many attachments per run.
pub const MAX_ATTACHMENTS: usize = 5;

/// A file a request points at, as its platform describes it (not downloaded yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// The file's name, as shown to people.
    pub name: String,
    /// Where the platform serves it (read with the platform's credentials).
    pub url: String,
    /// The type the platform says it is, when it says.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// The size the platform says it has, when it says.
    #[serde(default)]
    pub size: Option<u64>,
}

/// Why a file was left out; the texts are for the thread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skipped {
    #[error("larger than {}", size_text(*limit))]
    TooLarge { limit: u64 },
    #[error("not an image the agent takes: JPEG, PNG, GIF or WebP")]
    NotAnImage,
    #[error("not a file of this conversation's platform")]
    ForeignHost,
    #[error("it could not be read")]
    Unreadable,
    #[error("only {MAX_ATTACHMENTS} files can be attached")]
    TooMany,
}

/// The image types Oz takes, by their first bytes.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]) {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// True when a declared type is one Oz takes (or nothing was declared).
pub fn acceptable_type(mime_type: Option<&str>) -> bool {
    mime_type.is_none_or(|mime| {
        matches!(
            mime.split(';').next().unwrap_or_default().trim(),
            "image/png" | "image/jpeg" | "image/jpg" | "image/gif" | "image/webp"
        )
    })
}

/// The `scheme://host[:port]` of a configured API base, whose server may also serve
/// files (GitHub Enterprise, the fakes).
pub fn server_of(api_url: &str) -> Option<String> {
    url::Url::parse(api_url)
        .ok()
        .map(|api| api.origin().ascii_serialization())
}

/// Downloads `url` with `bearer` (the caller has checked the host), within `limit`.
pub async fn download(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
    limit: u64,
) -> Result<Vec<u8>, Skipped> {
    let response = http
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .map_err(|_| Skipped::Unreadable)?;
    read_capped(response, limit).await
}

/// Reads a download's body, refusing it as soon as it is known to pass `limit`: from
/// its `Content-Length` before any of it is read, else while it streams.
async fn read_capped(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, Skipped> {
    if !response.status().is_success() {
        return Err(Skipped::Unreadable);
    }
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(Skipped::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| Skipped::Unreadable)? {
        if u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX) > limit {
            return Err(Skipped::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The thread's note about files left out, if any were.
pub fn note(skipped: &[(String, Skipped)]) -> Option<String> {
    let listed: Vec<String> = skipped
        .iter()
        .map(|(name, why)| format!("{} ({why})", crate::text::truncate(name, 80)))
        .collect();
    match listed.len() {
        0 => None,
        1 => Some(format!("1 file was not attached: {}.", listed[0])),
        n => Some(format!(
            "{n} files were not attached: {}.",
            listed.join(", ")
        )),
    }
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_known_by_their_first_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a..."), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7"), None);
        assert!(acceptable_type(Some("image/png")));
        assert!(acceptable_type(None));
        assert!(!acceptable_type(Some("application/pdf")));
    }

    #[test]
    fn the_note_names_each_file_and_why() {
        assert_eq!(note(&[]), None);
        let skipped = [
            (
                "big.png".to_owned(),
                Skipped::TooLarge {
                    limit: 5 * 1024 * 1024,
                },
            ),
            ("notes.pdf".to_owned(), Skipped::NotAnImage),
        ];
        assert_eq!(
            note(&skipped).unwrap(),
            "2 files were not attached: big.png (larger than 5 MiB), notes.pdf (not an image the agent takes: JPEG, PNG, GIF or WebP)."
        );
    }
}
