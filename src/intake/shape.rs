//! What a payload must look like before intake reads it: objects where the platforms
//! document objects (never serde's sequence form of a struct), identifiers of the
//! platform's own alphabet, and text without NUL characters (PostgreSQL's TEXT cannot
//! hold U+0000, so such text would be accepted, then fail to be stored forever).

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};
use std::fmt;
use std::marker::PhantomData;

/// A struct that must arrive as a JSON object. serde's derived `Deserialize` also takes
/// a JSON array for a struct (`"issue": [1]` would read as issue #1); this wrapper
/// accepts only a map, at every level where it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OnlyMaps<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(OnlyMaps(PhantomData))
            .map(Object)
    }
}

/// True for a GitHub `owner/name`: one slash, and each side of GitHub's alphabet
/// (letters, digits, `-`, `_`, `.`), at most 100 characters each.
pub fn is_repo_full_name(name: &str) -> bool {
    let Some((owner, repo)) = name.split_once('/') else {
        return false;
    };
    let part = |s: &str| {
        (1..=100).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    part(owner) && part(repo)
}

/// True for a Slack id (team, channel, user, enterprise): ASCII letters and digits.
pub fn is_slack_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// True for a Slack message timestamp (`1700000000.000100`).
pub fn is_slack_ts(ts: &str) -> bool {
    (1..=32).contains(&ts.len())
        && ts.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && ts.bytes().filter(|b| *b == b'.').count() <= 1
}

/// Free text with every NUL replaced by U+FFFD, the replacement character.
pub fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Issue {
        number: u64,
    }

    #[test]
    fn objects_only() {
        let ok: Object<Issue> = serde_json::from_str(r#"{"number": 1}"#).unwrap();
        assert_eq!(ok.0, Issue { number: 1 });
        assert!(serde_json::from_str::<Object<Issue>>("[1]").is_err());
        assert!(serde_json::from_str::<Object<Issue>>("1").is_err());
        // The plain derive takes the sequence form: that is what the wrapper is for.
        assert!(serde_json::from_str::<Issue>("[1]").is_ok());
    }

    #[test]
    fn identifiers() {
        assert!(is_repo_full_name("acme/widgets.rs"));
        for bad in ["acme", "a/b/c", "/x", "x/", "ac\0me/w", "a b/c", "a/b:c"] {
            assert!(!is_repo_full_name(bad), "{bad:?}");
        }
        assert!(is_slack_id("C0ENG42"));
        for bad in ["", "C\0", "C:1", "C 1", "é"] {
            assert!(!is_slack_id(bad), "{bad:?}");
        }
        assert!(is_slack_ts("1700000000.000100"));
        assert!(!is_slack_ts("1.2.3"));
        assert!(!is_slack_ts("1\0"));
        assert_eq!(without_nul("a\0b"), "a\u{FFFD}b");
    }
}
