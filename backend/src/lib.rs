//! ShardScope's backend and the `shardscope` command line.
//!
//! - [`cli`]: the `shardscope` subcommands (`serve`, `node`, and the client
//!   commands `put`, `get`, `delete`, `get-all`, `nodes`).
//! - [`client`]: where client commands send requests (REST or `--direct`).
//! - [`load`]: `shardscope load FILE`, bulk loading with a progress bar.
//! - [`metrics`]: Prometheus metrics at `/metrics`.
//! - [`node_client`]: a pipelined ZeroMQ DEALER connection to one storage node.
//! - [`cluster`]: the live view of the nodes and the placement; routes a key
//!   to the client of its owner and broadcasts changes to pages.
//! - [`membership`]: follows the registry's healthy nodes with blocking
//!   queries and keeps the cluster view in step.
//! - [`rebalance`]: moves keys on a join, a leave or a change of algorithm,
//!   one change at a time, losing no acknowledged write.
//! - [`state`]: the cluster's durable state (members, placement, history,
//!   the change in progress) in Consul KV, written before it is acted on.
//! - [`admin`]: add node, remove node, change placement, in the seeds' order.
//! - [`supervisor`]: launches the node processes `serve` owns, restarts them
//!   when they exit unasked, and stops them.
//! - [`rest`], [`ws`]: the HTTP API (`/kv`, `/nodes`, `/healthz`) and the
//!   page's WebSocket (`/ws`).
//! - [`seed004`]: seed 004's `master-svr`, `svr` and `clt` (binaries in
//!   `src/bin/`), as `shardscope` command lines.
//! - [`seed002`]: seed 002's REST API (`PUT /set`, `POST`/`GET /fetch`,
//!   `POST /query`).
//! - [`guard`]: the Host, Origin and simple-POST checks in front of every
//!   HTTP route (the backend's and the embedded registry's).
//! - [`token`]: when there is an admin token (it guards administration and
//!   registry writes when ShardScope is reachable beyond loopback).
//! - [`server`]: wires the above into one axum app and runs `serve`, with
//!   `shardscope-consul`'s embedded registry when no Consul agent is given.

pub mod admin;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod guard;
pub mod load;
pub mod membership;
pub mod metrics;
pub mod node_client;
pub mod rebalance;
pub mod rest;
pub mod seed002;
pub mod seed004;
pub mod server;
pub mod state;
pub mod supervisor;
pub mod token;
pub mod ws;
