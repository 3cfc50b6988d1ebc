//! ShardScope's one home for Consul: what nodes and the backend speak to a
//! Consul agent, and the embedded registry that stands in for one.
//!
//! - [`api`]: the JSON of the Consul HTTP API we speak as a client and
//!   read as the registry (service registration with its checks, health and
//!   catalog entries, KV pairs), Consul's durations, and
//!   [`api::NODE_SERVICE`], the name storage nodes register under.
//! - [`client`]: [`client::Consul`], the HTTP client nodes register with and
//!   the backend watches membership and reads KV through, against a real
//!   agent or the embedded registry alike.
//! - [`registry`]: [`registry::Registry`], a single-node Consul (agent and
//!   server in one: agent, health, catalog, KV with locks, sessions,
//!   status) that runs its own checks and, given a data dir, keeps its
//!   catalog, KV and sessions across restarts.
//! - [`token`]: a token as Consul requests carry it, checked in constant time.
//! - [`file`]: small files written whole and durably (the registry's state
//!   and token, a node's instance id).

pub mod api;
pub mod client;
pub mod file;
pub mod registry;
pub mod token;
