//! ShardScope's storage node.
//!
//! - [`store`]: the key-value map and the one function, [`store::Store::apply`],
//!   that turns a [`NodeRequest`](shardscope_shared::protocol::NodeRequest)
//!   into a reply.
//! - [`wal`]: the write-ahead log that makes acknowledged writes durable, and
//!   the fsync policies.
//! - [`server`]: the ZeroMQ ROUTER event loop that feeds requests to the
//!   store, commits them in groups, and sends replies back along each
//!   request's envelope, so REQ clients (pyzmq, libzmq) and DEALER clients
//!   (the backend) both work.
//! - [`zmtp`]: ZeroMQ's wire protocol (ZMTP 3, NULL mechanism), with every
//!   length checked before anything is allocated.
//! - [`identity`]: the node's instance id, kept in its data dir, and the
//!   default id made from it.
//!
//! A node registers itself in Consul with `shardscope-consul`'s client. It
//! knows nothing about placement: it stores what it is sent.

pub mod identity;
pub mod server;
pub mod store;
pub mod wal;
pub mod zmtp;

pub use server::{run, NodeConfig};
