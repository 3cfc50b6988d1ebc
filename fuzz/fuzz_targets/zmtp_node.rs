//! The node's side of ZMTP (`node/src/zmtp.rs`, as `server.rs` drives it):
//! arbitrary bytes from a peer, split into arbitrary reads (the input's
//! first 8 bytes say how), fed to the decoder with the node's limit and with
//! a small one. Checks: never a panic; the same items, error and leftover
//! whatever the split; no message over the limit; every message decoded
//! encodes and decodes back to the same frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardscope_fuzz::{assert_messages_round_trip, decode_checked, plan_and_wire};
use shardscope_shared::protocol::MAX_MESSAGE;

fuzz_target!(|data: &[u8]| {
    let (sizes, wire) = plan_and_wire(data);
    // The node's own limit (`server.rs`), and a small one the fuzzer can reach.
    let small = 64 + usize::from(data.first().copied().unwrap_or(0)) * 4;
    for limit in [2 * MAX_MESSAGE, small] {
        let decoded = decode_checked(limit, wire, sizes.clone());
        assert_messages_round_trip(limit, &decoded.items, "REQ");
    }
});
