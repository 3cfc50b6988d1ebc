//! Properties every placement must have, checked with proptest over random
//! memberships and keys, plus balance and movement on 100k keys.
#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::analysis::{distribution, ideal_fraction, moved_keys};
use shardscope_shared::placement::{build, build_for_keys, Member, PlacementSpec};

fn members(ids: &[u16]) -> Vec<Member> {
    ids.iter().map(|i| Member::new(format!("node-{i}"))).collect()
}

fn specs() -> Vec<PlacementSpec> {
    vec![
        PlacementSpec::Modulo,
        PlacementSpec::Ring { vnodes: 40 },
        PlacementSpec::Rendezvous,
        PlacementSpec::Jump,
        PlacementSpec::Maglev { table_size: 2053 },
        PlacementSpec::Bounded { vnodes: 40, capacity: 1.25 },
    ]
}

/// Algorithms under which a join moves keys only onto the joiner and a leave
/// moves only the leaver's keys.
fn minimal_movers() -> Vec<PlacementSpec> {
    vec![PlacementSpec::Ring { vnodes: 40 }, PlacementSpec::Rendezvous, PlacementSpec::Jump]
}

fn membership() -> impl Strategy<Value = Vec<u16>> {
    proptest::collection::btree_set(0u16..500, 1..12).prop_map(|s| s.into_iter().collect())
}

fn hashes() -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(any::<u64>(), 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_key_has_exactly_one_live_owner(ids in membership(), hs in hashes()) {
        let ms = members(&ids);
        for spec in specs() {
            let p = build_for_keys(&spec, &ms, &hs);
            for &h in &hs {
                let owner = p.owner_index(h).expect("a non-empty cluster owns every key");
                prop_assert!(owner < ms.len(), "{}: owner {owner} of {}", spec.name(), ms.len());
            }
        }
    }

    #[test]
    fn top_r_owners_are_distinct_and_start_with_the_owner(ids in membership(), hs in hashes(), r in 1usize..6) {
        let ms = members(&ids);
        for spec in specs() {
            let p = build_for_keys(&spec, &ms, &hs);
            for &h in hs.iter().take(50) {
                let top = p.owner_indices(h, r);
                prop_assert_eq!(top.len(), r.min(ms.len()), "{}", spec.name());
                prop_assert_eq!(Some(top[0]), p.owner_index(h), "{}", spec.name());
                let mut sorted = top.clone();
                sorted.sort_unstable();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), top.len(), "{}: {:?}", spec.name(), top);
            }
        }
    }

    #[test]
    fn a_join_moves_keys_only_to_the_new_node(ids in membership(), joiner in 500u16..600, hs in hashes()) {
        let before = members(&ids);
        for spec in minimal_movers() {
            let old = build(&spec, &before);
            let mut new = build(&spec, &before);
            new.add_member(Member::new(format!("node-{joiner}")));
            let mv = moved_keys(old.as_ref(), new.as_ref(), &hs);
            for m in &mv.moves {
                prop_assert_eq!(&new.members()[m.to].id, &format!("node-{joiner}"), "{}", spec.name());
            }
        }
    }

    #[test]
    fn a_leave_moves_only_the_leavers_keys(ids in membership(), pick in any::<prop::sample::Index>(), hs in hashes()) {
        prop_assume!(ids.len() >= 2);
        let before = members(&ids);
        let leaver = before[pick.index(before.len())].id.clone();
        for spec in minimal_movers() {
            let old = build(&spec, &before);
            let mut new = build(&spec, &before);
            prop_assert!(new.remove_member(&leaver));
            let mv = moved_keys(old.as_ref(), new.as_ref(), &hs);
            for m in &mv.moves {
                prop_assert_eq!(&old.members()[m.from].id, &leaver, "{}", spec.name());
            }
            // And every one of the leaver's keys did move.
            let leavers_keys = hs.iter().filter(|&&h| old.members()[old.owner_index(h).unwrap()].id == leaver).count();
            prop_assert_eq!(mv.moves.len(), leavers_keys, "{}", spec.name());
        }
    }

    #[test]
    fn placement_does_not_depend_on_member_order(ids in membership(), hs in hashes(), seed in any::<u64>()) {
        let ms = members(&ids);
        let mut shuffled = ms.clone();
        // A deterministic shuffle driven by the seed.
        for i in (1..shuffled.len()).rev() {
            let j = (seed.wrapping_mul(i as u64 + 1) >> 7) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        for spec in specs() {
            let a = build_for_keys(&spec, &ms, &hs);
            let b = build_for_keys(&spec, &shuffled, &hs);
            for &h in &hs {
                prop_assert_eq!(
                    a.members()[a.owner_index(h).unwrap()].id.clone(),
                    b.members()[b.owner_index(h).unwrap()].id.clone(),
                    "{}", spec.name()
                );
            }
        }
    }
}

fn key_hashes(n: usize) -> Vec<u64> {
    (0..n).map(|i| key_hash(format!("key-{i}").as_bytes())).collect()
}

fn nodes(n: usize) -> Vec<Member> {
    (1..=n).map(|i| Member::new(format!("node-{i}"))).collect()
}

#[test]
fn ring_relative_std_dev_is_close_to_one_over_sqrt_v() {
    // Keys per node vary with both arc length (1/sqrt(V)) and sampling
    // (sqrt(N/K)); with N=50 nodes and 100k keys the expected relative std dev
    // is sqrt(1/V + N/K). Check it is within 10%.
    let hs = key_hashes(100_000);
    for v in [40u32, 160] {
        let p = build(&PlacementSpec::Ring { vnodes: v }, &nodes(50));
        let got = distribution(p.as_ref(), &hs).relative_std_dev();
        println!("ring V={v}: sd/mean {got:.4}");
        let theory = (1.0 / v as f64 + 50.0 / 100_000.0).sqrt();
        assert!((got / theory - 1.0).abs() < 0.10, "V={v}: sd/mean {got:.4}, theory {theory:.4}");
    }
}

#[test]
fn join_moves_about_one_over_n_plus_one() {
    let hs = key_hashes(100_000);
    for spec in [PlacementSpec::Ring { vnodes: 160 }, PlacementSpec::Rendezvous, PlacementSpec::Jump] {
        // A join is `add_member` on the live placement: jump keeps its buckets.
        let before = build(&spec, &nodes(10));
        let mut after = build(&spec, &nodes(10));
        after.add_member(Member::new("node-11"));
        let mv = moved_keys(before.as_ref(), after.as_ref(), &hs);
        assert!((mv.ideal - 1.0 / 11.0).abs() < 1e-12);
        println!("{}: join 10 -> 11 moved {:.4}, ideal {:.4}", spec.name(), mv.fraction, mv.ideal);
        assert!(mv.fraction <= 1.05 * mv.ideal, "{}: moved {:.4}, ideal {:.4}", spec.name(), mv.fraction, mv.ideal);
        assert!(mv.fraction >= 0.90 * mv.ideal, "{}: moved {:.4}, ideal {:.4}", spec.name(), mv.fraction, mv.ideal);
    }
}

#[test]
fn modulo_moves_almost_everything_on_a_join() {
    let hs = key_hashes(100_000);
    let mv = moved_keys(
        build(&PlacementSpec::Modulo, &nodes(10)).as_ref(),
        build(&PlacementSpec::Modulo, &nodes(11)).as_ref(),
        &hs,
    );
    assert!(mv.fraction > 0.85, "modulo moved {:.3}", mv.fraction);
}

#[test]
fn maglev_moves_few_keys_between_nodes_that_stay() {
    let hs = key_hashes(100_000);
    for n in [5usize, 10, 20] {
        let spec = PlacementSpec::Maglev { table_size: 65_537 };
        let before = build(&spec, &nodes(n));
        let after = build(&spec, &nodes(n + 1));
        let mv = moved_keys(before.as_ref(), after.as_ref(), &hs);
        let joiner = format!("node-{}", n + 1);
        let elsewhere = mv.moves.iter().filter(|m| after.members()[m.to].id != joiner).count();
        let frac = elsewhere as f64 / hs.len() as f64;
        assert!(frac < 0.02, "N={n}: {frac:.4} of keys moved between staying nodes");
    }
}

#[test]
fn bounded_never_exceeds_capacity_times_mean() {
    let hs = key_hashes(100_000);
    for c in [1.1, 1.25, 1.5] {
        let p = build_for_keys(&PlacementSpec::Bounded { vnodes: 20, capacity: c }, &nodes(10), &hs);
        let d = distribution(p.as_ref(), &hs);
        assert!(d.max_over_mean <= c, "c={c}: max/mean {}", d.max_over_mean);
    }
    // Without the bound the same ring is less balanced than c = 1.1 allows.
    let ring = build(&PlacementSpec::Ring { vnodes: 20 }, &nodes(10));
    assert!(distribution(ring.as_ref(), &hs).max_over_mean > 1.1);
}

#[test]
fn ideal_fraction_for_a_weighted_join() {
    let before = nodes(3);
    let mut after = nodes(3);
    after.push(Member::weighted("node-9", 3));
    assert!((ideal_fraction(&before, &after) - 0.5).abs() < 1e-12);
}

/// A member of weight 0 holds no key and is nobody's replica, under every
/// algorithm; with no weight at all, no key has an owner. (Found by the
/// `placement_spec` fuzz target: rendezvous, with every weight 0, gave
/// every key a weight-0 owner and listed weight-0 members as replicas.)
#[test]
fn members_of_weight_zero_own_nothing() {
    let none = [Member::weighted("node-0", 0), Member::weighted("node-1", 0)];
    let some = [Member::weighted("node-0", 0), Member::weighted("node-1", 2), Member::weighted("node-2", 0)];
    // The fuzz target's input: a spec line, then the members' weights.
    let spec: PlacementSpec = serde_json::from_slice(b"{\"algorithm\":\"rendezvous\"}").unwrap();
    assert_eq!(build(&spec, &none).owner_of(b"\0\x7fer:1--"), None);
    for spec in specs() {
        let name = spec.name();
        let empty = build(&spec, &none);
        let p = build(&spec, &some);
        for i in 0..200u32 {
            let key = i.to_be_bytes();
            assert_eq!(empty.owner_of(&key), None, "{name}: a key owned with no weight");
            assert!(empty.owners_of(&key, 3).is_empty(), "{name}: replicas with no weight");
            assert_eq!(p.owner_of(&key), Some("node-1"), "{name}");
            assert_eq!(p.owners_of(&key, 3), ["node-1"], "{name}: a weight-0 member listed as a replica");
        }
    }
}
