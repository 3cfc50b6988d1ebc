//! Placement specs as the backend and the page receive them
//! (`shared/src/placement/`): the input's first line parsed as a
//! `PlacementSpec`, checked with `validate`, and only when valid built with
//! `build` over members the rest of the input describes, then asked about
//! keys.
//!
//! Checks: never a panic or an unbounded build; a valid spec survives a
//! JSON round trip; every owner is a member, and a member owns the key
//! whenever one has weight; `owners_of` lists distinct members, the owner
//! first; `restore` from what the placement exports (as the page rebuilds
//! it) gives every key the same owner; for `ring`, `rendezvous` and `jump`
//! a joining member takes keys only for itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardscope_shared::placement::{self, Member, PlacementSpec};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == b'\n');
    let spec_json = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    let Ok(spec) = serde_json::from_slice::<PlacementSpec>(spec_json) else { return };
    if spec.validate().is_err() {
        return; // refused before anything is built, wherever a spec comes from
    }
    let json = serde_json::to_vec(&spec).expect("specs serialize");
    assert_eq!(serde_json::from_slice::<PlacementSpec>(&json).ok(), Some(spec.clone()), "spec JSON round trip");
    // Up to 6 members (weights 0..=3), then keys of up to 8 bytes.
    let (shape, keys) = rest.split_at(rest.len().min(6));
    let members: Vec<Member> =
        shape.iter().enumerate().map(|(i, &b)| Member::weighted(format!("node-{i}"), u32::from(b % 4))).collect();
    let p = placement::build(&spec, &members);
    let slots = p.slots();
    let again = placement::restore(&spec, &members, slots.as_deref());
    let has_weight = members.iter().any(|m| m.weight > 0);
    let mut joined = placement::build(&spec, &members);
    let joiner = Member::new("joiner");
    joined.add_member(joiner.clone());
    let only_to_joiner = matches!(spec, PlacementSpec::Ring { .. } | PlacementSpec::Rendezvous | PlacementSpec::Jump);
    for key in keys.chunks(8).take(64) {
        let owner = p.owner_of(key);
        assert_eq!(owner.is_some(), has_weight, "owner {owner:?} of {key:?} with members {members:?}");
        if let Some(id) = owner {
            assert!(members.iter().any(|m| m.id == id && m.weight > 0), "{id} owns a key but holds no weight");
        }
        let owners = p.owners_of(key, 3);
        assert_eq!(owners.first().copied(), owner, "owners_of does not start with the owner");
        let mut distinct = owners.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), owners.len(), "owners_of repeats a member: {owners:?}");
        assert_eq!(again.owner_of(key), owner, "a restored placement places {key:?} elsewhere");
        if only_to_joiner {
            let now = joined.owner_of(key);
            assert!(now == owner || now == Some(joiner.id.as_str()), "a join moved {key:?} from {owner:?} to {now:?}");
        }
    }
});
