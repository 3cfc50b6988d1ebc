//! ShardScope's shared crate: everything both sides of the wire must agree on.
//!
//! - [`hash`]: the one fixed 64-bit hash (XXH3-64, seed 0) every placement uses.
//! - [`keyset`]: key sets and operation files (lines, CSV, JSON lines, the
//!   seeds' operations), parsed alike by the CLI's `load` and the page.
//! - [`placement`]: the [`placement::Placement`] trait and its algorithms; the
//!   backend routes with it and the page draws with it, so both give the same
//!   answer for the same key.
//! - [`protocol`]: serde types for the storage node's ZeroMQ JSON messages (the
//!   seeds' `PUT` / `GET_ONE` / `GET_ALL`, plus `DELETE`) and for the page's
//!   WebSocket messages.
//! - [`samples`]: shipped key sets that look like real workloads (user ids,
//!   URLs, a Zipf-skewed operations list), generated deterministically.
//! - [`seed002`]: seed 002's REST wire types (`/set`, `/fetch`, `/query`).
//! - [`version`]: write versions (a hybrid logical clock and the writer's
//!   id), so that wherever two copies of a key meet the newer one wins.
//!
//! This crate never does I/O and compiles for x86_64 and wasm32.

pub mod hash;
pub mod keyset;
pub mod placement;
pub mod protocol;
pub mod samples;
pub mod seed002;
pub mod version;
