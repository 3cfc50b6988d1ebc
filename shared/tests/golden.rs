//! Golden vectors: key -> owner for every algorithm over a fixed membership,
//! checked natively (`cargo test`) and in wasm32 (`scripts/test-wasm.sh`, via
//! wasm-bindgen-test in Node), so the page and the backend provably agree.

use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::{build_for_keys, Member, PlacementSpec};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const GOLDEN: &str = include_str!("golden.json");

#[test]
fn hashes_and_owners_match_the_golden_vectors() {
    let doc: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
    let keys: Vec<String> = serde_json::from_value(doc["keys"].clone()).unwrap();
    let members: Vec<Member> = serde_json::from_value(doc["members"].clone()).unwrap();
    let want_hashes: Vec<String> = serde_json::from_value(doc["hashes"].clone()).unwrap();
    let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k.as_bytes())).collect();
    let got_hashes: Vec<String> = hashes.iter().map(|h| format!("{h:016x}")).collect();
    assert_eq!(got_hashes, want_hashes);

    let mut checked = 0;
    for spec in PlacementSpec::all_defaults() {
        let want: Vec<String> = serde_json::from_value(doc["owners"][spec.name()].clone()).unwrap();
        let p = build_for_keys(&spec, &members, &hashes);
        let got: Vec<String> = keys.iter().map(|k| p.owner_of(k.as_bytes()).unwrap().to_string()).collect();
        assert_eq!(got, want, "{} placement changed", spec.name());
        checked += 1;
    }
    assert_eq!(checked, 6);

    let weighted: Vec<Member> = (1..=5).map(|i| Member::weighted(format!("node-{i}"), i)).collect();
    let want: Vec<String> = serde_json::from_value(doc["owners"]["rendezvous_weighted"].clone()).unwrap();
    let p = build_for_keys(&PlacementSpec::Rendezvous, &weighted, &hashes);
    let got: Vec<String> = keys.iter().map(|k| p.owner_of(k.as_bytes()).unwrap().to_string()).collect();
    assert_eq!(got, want, "weighted rendezvous changed");
}
