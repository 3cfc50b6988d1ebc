//! The backend's side of ZMTP (`backend/src/node_client.rs`'s reader): what
//! a node (or anything listening where a node was) sends back, split into
//! arbitrary reads, decoded with the client's limit (`MAX_REPLY`), each
//! message matched as a reply `["", id, json]` with `decode_reply`.
//! Checks: never a panic; the same items whatever the split; a reply is
//! only taken from three frames with an 8-byte id; a reply taken
//! serializes and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardscope_backend::node_client::{decode_reply, MAX_REPLY};
use shardscope_fuzz::{decode_checked, plan_and_wire};
use shardscope_node::zmtp::Item;
use shardscope_shared::protocol::NodeReply;

fuzz_target!(|data: &[u8]| {
    let (sizes, wire) = plan_and_wire(data);
    let decoded = decode_checked(MAX_REPLY, wire, sizes);
    for item in decoded.items {
        let shape = match &item {
            Item::Message(frames) => Some((frames.len(), frames.get(1).map(Vec::len))),
            Item::Ping(_) => None,
        };
        let Some((id, reply)) = decode_reply(item) else { continue };
        assert_eq!(shape, Some((3, Some(8))), "reply {id} taken from a message that is not [\"\", id, json]");
        let json = serde_json::to_vec(&reply).expect("replies serialize");
        let back: NodeReply = serde_json::from_slice(&json).expect("a serialized reply parses");
        assert_eq!(back, reply, "reply changed by a JSON round trip: {}", String::from_utf8_lossy(&json));
    }
});
