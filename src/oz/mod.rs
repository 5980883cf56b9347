//! The Oz API: wire types and a typed client.

mod client;
pub mod types;

pub use client::{ListAgentsQuery, ListRunsQuery, OzClient, OzError};
