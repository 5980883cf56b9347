//! What the platforms send to ozbridge (webhook and request bodies), built apart from the
//! fake servers that answer ozbridge's own calls.

pub mod github;
pub mod slack;
