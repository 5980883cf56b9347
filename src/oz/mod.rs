//! The Oz API: wire types, a typed client, and an in-crate simulator.

mod client;
pub mod sim;
pub mod types;

pub use client::{DEFAULT_OZ_API_URL, ListAgentsQuery, ListRunsQuery, OzClient, OzError};
