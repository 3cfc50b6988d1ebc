//! Writes the seed corpus (`fuzz/corpus/<target>/`) from the real encoders:
//! ZMTP greetings and frames from `shardscope_node::zmtp`, requests and
//! replies serialized from the wire types, a log written by the store, a
//! node's own registration. Run it again after a wire or log format change:
//! `cargo +nightly run --manifest-path fuzz/Cargo.toml --example seed_corpus`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shardscope_consul::api::{CheckDefinition, ServiceRegistration, NODE_SERVICE};
use shardscope_node::store::Store;
use shardscope_node::wal::FsyncPolicy;
use shardscope_node::zmtp;
use shardscope_shared::placement::PlacementSpec;
use shardscope_shared::protocol::{Datum, Entry, ErrorCode, NodeReply, NodeRequest, NodeStats, Version};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(corpus(target).join(name), bytes).unwrap();
}

fn json(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn v(hlc: u64) -> Option<Version> {
    Some(Version { hlc, writer: 7 })
}

/// The requests a gateway and the seeds' clients send.
fn requests() -> Vec<NodeRequest> {
    vec![
        NodeRequest::Put { key: "key".into(), value: "value".into(), version: None },
        NodeRequest::GetOne { key: "key".into(), versioned: false },
        NodeRequest::GetAll,
        NodeRequest::Delete { key: "key".into(), version: None },
        NodeRequest::Put { key: "user:1".into(), value: Datum(vec![0, 159, 255]), version: v(1 << 40) },
        NodeRequest::GetOne { key: "user:1".into(), versioned: true },
        NodeRequest::Delete { key: "user:2".into(), version: v(1 << 41) },
        NodeRequest::PutBatch {
            entries: vec![
                Entry { version: v(5), ..Entry::new("a", "1") },
                Entry { version: v(9), deleted: true, ..Entry::new("b", "") },
                Entry { version: v(3), ..Entry::new("a", "old") },
            ],
        },
        NodeRequest::DeleteBatch { keys: vec!["a".into(), "missing".into()] },
        NodeRequest::Scan {
            cursor: Some("a".into()),
            limit: 2,
            ranges: Some(vec![(0, u64::MAX / 2), (u64::MAX / 4 * 3, u64::MAX)]),
            tombstones: true,
            prefix: None,
        },
        NodeRequest::Scan { cursor: None, limit: 100, ranges: None, tombstones: false, prefix: Some("user:".into()) },
        NodeRequest::Stats,
    ]
}

fn replies() -> Vec<NodeReply> {
    vec![
        NodeReply::ok(),
        NodeReply::ok_count(3),
        NodeReply::Value { key: "key".into(), value: Datum(vec![1, 2, 255]), version: v(9) },
        NodeReply::Collection { collection: vec![Entry::new("key1", "value1"), Entry::new("key2", "value2")] },
        NodeReply::Page {
            page: vec![Entry { version: v(4), deleted: true, ..Entry::new("k", "") }],
            next: Some("k".into()),
        },
        NodeReply::Stats {
            stats: NodeStats {
                keys: 2,
                bytes: 10,
                ops: 5,
                log_bytes: 80,
                tombstones: 1,
                max_version: Version { hlc: 9, writer: 1 },
            },
        },
        NodeReply::Error { error: ErrorCode::Stale, message: "newer".into(), version: v(12) },
        NodeReply::error(ErrorCode::NotFound, "key \"k\" not found"),
    ]
}

/// A chunking plan (8 bytes) then a peer's greeting and READY.
fn hello(plan: [u8; 8], socket_type: &str) -> Vec<u8> {
    let mut wire = plan.to_vec();
    wire.extend_from_slice(&zmtp::greeting());
    zmtp::encode_ready(socket_type, &mut wire);
    wire
}

fn zmtp_node() {
    // A REQ peer: ["", json].
    let mut req = hello([63; 8], "REQ");
    for r in requests().iter().take(4) {
        zmtp::encode_message([&b""[..], &json(r)].into_iter(), &mut req);
    }
    write("zmtp_node", "req-seed-ops", &req);
    // A DEALER peer (the backend): ["", id, json], one long frame, a PING.
    let mut dealer = hello([0, 1, 2, 7, 30, 63, 5, 9], "DEALER");
    for (id, r) in requests().iter().enumerate() {
        zmtp::encode_message([&b""[..], &(id as u64).to_be_bytes(), &json(r)].into_iter(), &mut dealer);
    }
    let long = NodeRequest::Put { key: "big".into(), value: "x".repeat(300).into(), version: None };
    zmtp::encode_message([&b""[..], &9u64.to_be_bytes(), &json(&long)].into_iter(), &mut dealer);
    zmtp::encode_command("PING", &[0, 10, b'c', b't', b'x'], &mut dealer);
    write("zmtp_node", "dealer-pipelined", &dealer);
    // Byte by byte, and a greeting cut short.
    write("zmtp_node", "byte-by-byte", &[&[0u8; 8][..], &req[8..]].concat());
    write("zmtp_node", "greeting-only", &hello([10; 8], "ROUTER")[..8 + 40]);
}

fn zmtp_client() {
    let mut wire = hello([63, 1, 63, 2, 63, 3, 63, 4], "ROUTER");
    for (id, r) in replies().iter().enumerate() {
        zmtp::encode_message([&b""[..], &(id as u64 + 1).to_be_bytes(), &json(r)].into_iter(), &mut wire);
    }
    write("zmtp_client", "replies", &wire);
    let mut wire = hello([2; 8], "ROUTER");
    let big = NodeReply::Value { key: "k".into(), value: "v".repeat(400).into(), version: None };
    zmtp::encode_message([&b""[..], &7u64.to_be_bytes(), &json(&big)].into_iter(), &mut wire);
    zmtp::encode_error("bye", &mut wire);
    write("zmtp_client", "long-reply-then-error", &wire);
}

fn node_request() {
    let lines =
        |rs: &[NodeRequest]| rs.iter().map(|r| String::from_utf8(json(r)).unwrap()).collect::<Vec<_>>().join("\n");
    let all = requests();
    write("node_request", "every-op", lines(&all).as_bytes());
    write("node_request", "versioned", lines(&all[4..]).as_bytes());
    // The seeds' own spelling, trailing comma and spaces included.
    write(
        "node_request",
        "seed-spelling",
        b"{\n\"op\": \"PUT\", \"key\": \"key\", \"value\": \"value\"}\n{\"op\": \"GET_ONE\", \"key\": \"key\"}\n{\"op\": \"GET_ALL\",}\n{\"op\":\"DELETE\",\"key\":{\"encoding\":\"binary\",\"data\":\"a2V5\"}}",
    );
}

fn wal_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), FsyncPolicy::Never, Duration::from_secs(86400)).unwrap();
    for r in requests() {
        store.apply(r);
        store.commit().unwrap();
    }
    drop(store);
    let log = std::fs::read(dir.path().join("wal.log")).unwrap();
    for mode in [0u8, 1] {
        write("wal_replay", &format!("store-log-{mode}"), &[&[mode][..], &log].concat());
    }
    write("wal_replay", "torn-tail", &[&[0u8][..], &log[..log.len() - 3]].concat());
    write("wal_replay", "zeros-after", &[&[0u8][..], &log, &[0; 16]].concat());
}

fn keyset() {
    let seeds_ops = "{\"op\": \"PUT\", \"key\": \"key1\", \"value\": \"value1\"}\n{\"op\": \"GET_ONE\", \"key\": \"key1\"}\n{\"op\": \"GET_ALL\",}\n{\"op\": \"DELETE\", \"key\": \"key1\"}\n";
    write("keyset", "operations-txt", &[&[5u8][..], seeds_ops.as_bytes()].concat());
    write("keyset", "lines", b"\0user:1\nuser:2\tvalue two\r\n\nuser:3\n");
    write("keyset", "csv", b"\x01key,value\nk1,v1\n\"k,2\",\"say \"\"hi\"\"\"\nk3\n");
    write(
        "keyset",
        "jsonl-pairs",
        b"\x02{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":{\"encoding\":\"binary\",\"data\":\"AP8=\"}}\n",
    );
}

fn placement_spec() {
    for spec in PlacementSpec::all_defaults() {
        let mut input = json(&spec);
        input.push(b'\n');
        input.extend_from_slice(&[1, 2, 3, 1, 0, 2]);
        input.extend_from_slice(b"user:1--user:2--k\0\xff");
        write("placement_spec", spec.name(), &input);
    }
    write("placement_spec", "small-ring", b"{\"algorithm\":\"ring\",\"vnodes\":3}\n\x01\x01keys-and-more-keys");
}

fn registry_body() {
    let node = ServiceRegistration {
        id: Some("node-1".into()),
        name: NODE_SERVICE.into(),
        address: "127.0.0.1".into(),
        port: 5601,
        check: Some(CheckDefinition {
            tcp: Some("127.0.0.1:5601".into()),
            interval: Some("1s".into()),
            timeout: Some("1s".into()),
            deregister_critical_service_after: Some("30s".into()),
            status: Some("passing".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ttl = ServiceRegistration {
        name: "web".into(),
        tags: vec!["a".into()],
        check: Some(CheckDefinition { ttl: Some("10s".into()), ..Default::default() }),
        ..Default::default()
    };
    let script = |mode: u8, lines: &[Vec<u8>]| [&[mode][..], &lines.join(&b'\n')].concat();
    let lines = vec![
        [b"R".to_vec(), json(&node)].concat(),
        [b"R".to_vec(), json(&ttl)].concat(),
        b"Pservice:web".to_vec(),
        b"Fservice:node-1".to_vec(),
        b"Kshardscope/cluster {\"epoch\":1}".to_vec(),
        b"Kcas-key?cas=0&flags=42 first".to_vec(),
        b"Kcas-key?cas=0 second".to_vec(),
        b"Xshardscope/cluster".to_vec(),
        b"Dnode-1".to_vec(),
        b"Dno-such".to_vec(),
    ];
    write("registry_body", "in-memory", &script(0, &lines));
    write("registry_body", "data-dir", &script(1, &lines));
}

fn main() {
    zmtp_node();
    zmtp_client();
    node_request();
    wal_replay();
    keyset();
    placement_spec();
    registry_body();
}
