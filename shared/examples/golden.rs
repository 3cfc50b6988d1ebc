//! Regenerates the golden placement vectors checked natively and in wasm32:
//! `cargo run -p shardscope-shared --example golden > shared/tests/golden.json`.
//! Only for a deliberate change of an algorithm: the vectors pin placement.

use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::{build_for_keys, Member, PlacementSpec};

fn main() {
    let members: Vec<Member> = (1..=5).map(|i| Member::new(format!("node-{i}"))).collect();
    let keys: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
    let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k.as_bytes())).collect();
    let mut owners = serde_json::Map::new();
    for spec in PlacementSpec::all_defaults() {
        let p = build_for_keys(&spec, &members, &hashes);
        let o: Vec<&str> = keys.iter().map(|k| p.owner_of(k.as_bytes()).unwrap()).collect();
        owners.insert(spec.name().to_string(), serde_json::json!(o));
    }
    // Unequal weights take rendezvous' floating-point path (libm's ln).
    let weighted: Vec<Member> = (1..=5).map(|i| Member::weighted(format!("node-{i}"), i)).collect();
    let p = build_for_keys(&PlacementSpec::Rendezvous, &weighted, &hashes);
    let o: Vec<&str> = keys.iter().map(|k| p.owner_of(k.as_bytes()).unwrap()).collect();
    owners.insert("rendezvous_weighted".to_string(), serde_json::json!(o));
    let doc = serde_json::json!({
        "members": members,
        "keys": keys,
        "hashes": hashes.iter().map(|h| format!("{h:016x}")).collect::<Vec<_>>(),
        "owners": owners,
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
}
