//! Lookup speed: shardscope's placements against the crates people use,
//! same keys, N = 10 and 100 nodes, one `key -> node` lookup per iteration
//! (each implementation hashes the key its own way; ours with XXH3-64).
//!
//! `scripts/bench-placement.sh` runs this and prints the README's table.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use maglev::ConsistentHasher;
use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::{build, build_for_keys, Member, PlacementSpec};

const VNODES: u32 = 160;

fn keys() -> Vec<String> {
    (0..4096).map(|i| format!("user:{i:08}")).collect()
}

fn ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("node-{i}")).collect()
}

/// Times `lookup` over the key set, one key per iteration.
fn bench_lookup<F: FnMut(&str) -> R, R>(c: &mut Criterion, group: &str, name: &str, keys: &[String], mut lookup: F) {
    let mut g = c.benchmark_group(group);
    let mut i = 0usize;
    g.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) & (keys.len() - 1);
            black_box(lookup(black_box(keys[i].as_str())))
        })
    });
    g.finish();
}

fn ours(spec: &PlacementSpec, n: usize) -> Box<dyn shardscope_shared::placement::Placement> {
    let members: Vec<Member> = ids(n).into_iter().map(Member::new).collect();
    build(spec, &members)
}

fn placement(c: &mut Criterion) {
    let keys = keys();
    for n in [10usize, 100] {
        let names = ids(n);

        // ring: consistent hashing, 160 virtual nodes per node.
        let group = format!("ring/N={n}");
        let p = ours(&PlacementSpec::Ring { vnodes: VNODES }, n);
        bench_lookup(c, &group, "shardscope", &keys, |k| p.owner_of(k.as_bytes()).map(str::len));
        let mut hr = hashring::HashRing::new();
        for id in &names {
            for v in 0..VNODES {
                hr.add((id.clone(), v));
            }
        }
        bench_lookup(c, &group, "hashring", &keys, |k| hr.get(&k).map(|n| n.1));
        let mut hrs = hash_rings::consistent::Ring::new();
        for id in &names {
            hrs.insert_node(id, VNODES as usize);
        }
        bench_lookup(c, &group, "hash-rings", &keys, |k| hrs.get_node(&k).len());

        // rendezvous (HRW).
        let group = format!("rendezvous/N={n}");
        let p = ours(&PlacementSpec::Rendezvous, n);
        bench_lookup(c, &group, "shardscope", &keys, |k| p.owner_of(k.as_bytes()).map(str::len));
        let mut hrs = hash_rings::rendezvous::Client::new();
        for id in &names {
            hrs.insert_node(id, 1);
        }
        bench_lookup(c, &group, "hash-rings", &keys, |k| hrs.get_node(&k).len());
        let mut rv = rendezvous_hash::RendezvousNodes::default();
        for id in &names {
            rv.insert(id.as_str());
        }
        bench_lookup(c, &group, "rendezvous_hash", &keys, |k| rv.calc_candidates(&k).next().map(|n| n.len()));

        // jump.
        let group = format!("jump/N={n}");
        let p = ours(&PlacementSpec::Jump, n);
        bench_lookup(c, &group, "shardscope", &keys, |k| p.owner_of(k.as_bytes()).map(str::len));
        let jh = jumphash::JumpHasher::new();
        bench_lookup(c, &group, "jumphash", &keys, |k| jh.slot(&k, n as u32));
        let hrs = hash_rings::jump::Ring::new(n as u32);
        bench_lookup(c, &group, "hash-rings", &keys, |k| hrs.get_node(&k));

        // maglev, table size 65537.
        let group = format!("maglev/N={n}");
        let p = ours(&PlacementSpec::Maglev { table_size: 65_537 }, n);
        bench_lookup(c, &group, "shardscope", &keys, |k| p.owner_of(k.as_bytes()).map(str::len));
        let mg = maglev::Maglev::with_capacity(names.clone(), 65_537);
        bench_lookup(c, &group, "maglev", &keys, |k| mg.get(k).map(|n| n.len()));
        let hrs = hash_rings::maglev::Ring::with_capacity_hint(names.iter().collect(), 65_537);
        bench_lookup(c, &group, "hash-rings", &keys, |k| hrs.get_node(&k).len());

        // modulo and bounded: ours only (no crate to compare with).
        let group = format!("modulo/N={n}");
        let p = ours(&PlacementSpec::Modulo, n);
        bench_lookup(c, &group, "shardscope", &keys, |k| p.owner_of(k.as_bytes()).map(str::len));
        // bounded answers from its placement of the key set.
        let group = format!("bounded/N={n}");
        let members: Vec<Member> = names.iter().map(Member::new).collect();
        let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k.as_bytes())).collect();
        let spec = PlacementSpec::Bounded { vnodes: VNODES, capacity: 1.25 };
        let p = build_for_keys(&spec, &members, &hashes);
        bench_lookup(c, &group, "shardscope", &keys, |k| p.owner_of(k.as_bytes()).map(str::len));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(30);
    targets = placement
}
criterion_main!(benches);
