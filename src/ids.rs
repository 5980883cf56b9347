//! Typed identifiers shared across the crate, so a run id is never confused with a comment id.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

string_id!(
    /// An Oz run id (`run_id` in the Oz API).
    OzRunId
);
string_id!(
    /// An Oz conversation id, used to continue a thread's previous run.
    ConversationId
);
string_id!(
    /// ozbridge's own id for a run; it is also the reference token written into the
    /// run's prompt so that a run created before a crash can be found again.
    RunRef
);
string_id!(
    /// ozbridge's id for a command accepted at intake.
    CommandId
);
string_id!(
    /// One conversation place (an issue or pull request, a Slack thread): at most one
    /// active run per thread.
    ThreadKey
);
string_id!(
    /// `owner/name` of a GitHub repository.
    RepoFullName
);

impl RepoFullName {
    /// Splits `owner/name`; `None` when the name is not of that form.
    pub fn split(&self) -> Option<(&str, &str)> {
        let (owner, name) = self.0.split_once('/')?;
        (!owner.is_empty() && !name.is_empty() && !name.contains('/')).then_some((owner, name))
    }
}

/// A fresh random id (UUID v4, hyphenated).
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl RunRef {
    /// A new random reference.
    pub fn generate() -> Self {
        Self(new_uuid())
    }
}

impl CommandId {
    /// A new command id: a UUID v7, so that the commands one process stores in the same
    /// millisecond still sort in the order they came (commands are taken in
    /// `(received_at, id)` order, a thread's one after the other).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}
