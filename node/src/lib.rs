//! ShardScope's storage node.
//!
//! - [`store`]: the key-value map and the one function, [`store::Store::apply`],
//!   that turns a [`NodeRequest`](shardscope_shared::protocol::NodeRequest)
//!   into a reply.
//! - [`server`]: the ZeroMQ ROUTER socket loop that feeds requests to the store
//!   and sends replies back along each request's envelope, so REQ clients
//!   (pyzmq, libzmq) and DEALER clients (the backend) both work.
//!
//! - [`consul`]: the Consul HTTP client a node registers itself with (the
//!   backend uses it too, to watch membership).
//!
//! The node knows nothing about placement: it stores what it is sent.

pub mod consul;
pub mod server;
pub mod store;

pub use server::{run, NodeConfig};
