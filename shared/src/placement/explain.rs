//! Why a placement gives a key hash its owner, as data: each algorithm's own
//! rule applied to one key ([`Placement::explain`]). The page's lookup, its
//! algorithm view and the lesson draw it; routing never needs it.
//!
//! Member references are indices into the placement's
//! [`Placement::members`], as everywhere else in [`crate::placement`].

use super::Member;
#[cfg(doc)]
use super::Placement;

/// Points shown after a key's hash on the ring: the owner's, then the next.
pub const RING_NEXT: usize = 5;

/// Cells of the Maglev table shown around a key's slot.
pub const MAGLEV_WINDOW: u64 = 48;

/// One key's placement, step by step, by its algorithm's rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Explanation {
    /// No members: no owner.
    Empty,
    /// `hash mod slots = slot`; a member of weight w holds w slots.
    Modulo { slots: u64, slot: u64, owner: usize },
    /// The first virtual nodes at or clockwise after the hash as
    /// (position, member), the first being the owner's; of `points` in all.
    Ring { points: usize, next: Vec<(u64, usize)> },
    /// Every member's score for the key, in member order; the highest wins.
    Rendezvous { scores: Vec<f64>, winner: usize },
    /// The buckets the key visits (bucket, holder): its jump over `buckets`,
    /// then a jump again from each tombstone (`None`), ending at the owner.
    Jump { buckets: u32, path: Vec<(u32, Option<usize>)> },
    /// `table[hash mod size]`: the slot, and the table around it as
    /// (slot, member), [`MAGLEV_WINDOW`] cells centred on the key's slot.
    Maglev { size: u64, slot: u64, window: Vec<(u64, usize)> },
    /// The ring walk from the hash: members passed over because they were
    /// full, ending at the owner; every member's load and capacity, and the
    /// capacity factor over the mean.
    Bounded { walk: Vec<usize>, loads: Vec<u64>, capacities: Vec<u64>, capacity: f64 },
}

impl Explanation {
    /// The owner the rule arrives at.
    pub fn owner(&self) -> Option<usize> {
        match self {
            Explanation::Empty => None,
            Explanation::Modulo { owner, .. } => Some(*owner),
            Explanation::Ring { next, .. } => next.first().map(|&(_, m)| m),
            Explanation::Rendezvous { winner, .. } => Some(*winner),
            Explanation::Jump { path, .. } => path.last().and_then(|&(_, m)| m),
            Explanation::Maglev { slot, window, .. } => window.iter().find(|(s, _)| s == slot).map(|&(_, m)| m),
            Explanation::Bounded { walk, .. } => walk.last().copied(),
        }
    }

    /// The rule in one sentence, with this key's numbers (`members` are the
    /// placement's, to name them).
    pub fn summary(&self, members: &[Member]) -> String {
        let id = |i: usize| members.get(i).map_or("?", |m| m.id.as_str());
        match self {
            Explanation::Empty => "no nodes, so no owner".to_string(),
            Explanation::Modulo { slots, slot, owner } => {
                format!("hash mod {slots} = {slot}, which is {}", id(*owner))
            }
            Explanation::Ring { points, next } => match next.first() {
                Some(&(point, owner)) => format!(
                    "the first of {points} virtual nodes clockwise from the hash is at {point:016x}, {}'s",
                    id(owner)
                ),
                None => "no virtual nodes".to_string(),
            },
            Explanation::Rendezvous { scores, winner } => {
                format!("{} scores the key highest of {} nodes", id(*winner), scores.len())
            }
            Explanation::Jump { buckets, path } => {
                let steps: Vec<String> = path.iter().map(|(b, _)| b.to_string()).collect();
                let owner = path.last().and_then(|&(_, m)| m).map_or("?", id);
                match path.len() {
                    0 | 1 => format!("jump hash over {buckets} buckets lands in bucket {}, {owner}'s", steps.join("")),
                    _ => format!(
                        "jump hash over {buckets} buckets visits {} (tombstones jump again), ending at {owner}",
                        steps.join(" → ")
                    ),
                }
            }
            Explanation::Maglev { size, slot, .. } => {
                format!("table[hash mod {size} = {slot}] is {}", self.owner().map_or("?", id))
            }
            Explanation::Bounded { walk, capacity, .. } => match walk.split_last() {
                Some((&owner, [])) => {
                    format!("the first node clockwise, {}, is under {capacity} x the mean load", id(owner))
                }
                Some((&owner, full)) => {
                    let full: Vec<&str> = full.iter().map(|&m| id(m)).collect();
                    format!(
                        "the walk clockwise passed {} (full) and stopped at {}, under {capacity} x the mean load",
                        full.join(", "),
                        id(owner)
                    )
                }
                None => "no nodes, so no owner".to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::hash::key_hash;
    use crate::placement::{build, build_for_keys, Member, Placement, PlacementSpec};

    fn members(n: usize) -> Vec<Member> {
        (1..=n).map(|i| Member::new(format!("node-{i}"))).collect()
    }

    /// Every rule arrives at the owner the placement routes to, for every
    /// algorithm, also with weights and after a leave (jump's tombstones).
    #[test]
    fn every_explanation_ends_at_the_owner() {
        let hashes: Vec<u64> = (0..2000).map(|i| key_hash(format!("key-{i}").as_bytes())).collect();
        let mut weighted = members(4);
        weighted[1].weight = 3;
        for ms in [members(1), members(3), weighted] {
            for spec in PlacementSpec::all_defaults() {
                let mut p = build_for_keys(&spec, &ms, &hashes);
                for round in 0..2 {
                    for &h in &hashes[..500] {
                        let e = p.explain(h);
                        assert_eq!(e.owner(), p.owner_index(h), "{} round {round}: {e:?}", spec.name());
                        assert!(!e.summary(p.members()).contains('?'), "{}", e.summary(p.members()));
                    }
                    if p.members().len() > 1 && !p.depends_on_keys() {
                        let leaver = p.members()[0].id.clone();
                        p.remove_member(&leaver);
                    }
                }
            }
        }
    }

    #[test]
    fn explanations_carry_each_rules_numbers() {
        let ms = members(3);
        let h = key_hash(b"alice");
        let modulo = build(&PlacementSpec::Modulo, &ms).explain(h);
        assert_eq!(modulo, super::Explanation::Modulo { slots: 3, slot: h % 3, owner: (h % 3) as usize });
        let ring = crate::placement::ring::Ring::new(&ms, 4);
        let super::Explanation::Ring { points, next } = ring.explain(h) else { panic!() };
        assert_eq!((points, next.len()), (12, super::RING_NEXT));
        let sorted: Vec<u64> = ring.points().map(|(p, _)| p).collect();
        let first = sorted.iter().position(|&p| p >= h).unwrap_or(0);
        let want: Vec<u64> = (0..super::RING_NEXT).map(|s| sorted[(first + s) % sorted.len()]).collect();
        assert_eq!(next.iter().map(|&(p, _)| p).collect::<Vec<_>>(), want);
        let maglev = build(&PlacementSpec::Maglev { table_size: 101 }, &ms).explain(h);
        let super::Explanation::Maglev { size, slot, window } = maglev else { panic!() };
        assert_eq!((size, slot, window.len() as u64), (101, h % 101, super::MAGLEV_WINDOW));
        let hrw = build(&PlacementSpec::Rendezvous, &ms).explain(h);
        let super::Explanation::Rendezvous { scores, winner } = hrw else { panic!() };
        assert!(scores.iter().all(|&s| s <= scores[winner]));
        assert_eq!(build(&PlacementSpec::Jump, &[]).explain(h), super::Explanation::Empty);
    }
}
