//! The Oz API: wire types and a typed client.

mod client;
pub mod types;

pub use client::{DEFAULT_OZ_API_URL, ListAgentsQuery, ListRunsQuery, OzClient, OzError};
