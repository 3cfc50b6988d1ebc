//! Consistent hashing on a ring of 2^64 positions.
//!
//! Each member gets `vnodes x weight` points at `key_hash("{id}#{i}")`; a key
//! belongs to the first point at or clockwise after its hash (wrapping past
//! the top). Points that collide are ordered by member id, so the ring does
//! not depend on the order members joined.

use super::{normalize, Member, Placement};
use crate::hash::key_hash;

/// A consistent-hashing ring with virtual nodes.
pub struct Ring {
    members: Vec<Member>,
    vnodes: u32,
    /// Sorted point positions, and beside them the owning member's index.
    points: Vec<u64>,
    owners: Vec<u32>,
}

/// The ring position of virtual node `i` of member `id`.
pub fn vnode_point(id: &str, i: u32) -> u64 {
    key_hash(format!("{id}#{i}").as_bytes())
}

impl Ring {
    pub fn new(members: &[Member], vnodes: u32) -> Self {
        let members = normalize(members);
        let mut pairs: Vec<(u64, u32)> = Vec::new();
        for (m, member) in members.iter().enumerate() {
            for i in 0..vnodes.saturating_mul(member.weight) {
                pairs.push((vnode_point(&member.id, i), m as u32));
            }
        }
        // Members are sorted by id, so index order is id order.
        pairs.sort_unstable();
        let (points, owners) = pairs.into_iter().unzip();
        Ring {
            members,
            vnodes,
            points,
            owners,
        }
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Every virtual node as (position, member index), in ring order.
    pub fn points(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.points
            .iter()
            .zip(&self.owners)
            .map(|(&p, &o)| (p, o as usize))
    }
}

impl Placement for Ring {
    fn members(&self) -> &[Member] {
        &self.members
    }

    fn owner_index(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|&p| p < hash);
        let i = if i == self.points.len() { 0 } else { i };
        Some(self.owners[i] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{build, PlacementSpec};

    fn members(n: usize) -> Vec<Member> {
        (1..=n).map(|i| Member::new(format!("node-{i}"))).collect()
    }

    #[test]
    fn a_key_belongs_to_the_next_point_clockwise() {
        let ring = Ring::new(&members(3), 8);
        let pts: Vec<_> = ring.points().collect();
        let (p, owner) = pts[5];
        assert_eq!(ring.owner_index(p), Some(owner));
        assert_eq!(ring.owner_index(p - 1), Some(owner));
        assert_eq!(ring.owner_index(p + 1), Some(pts[6].1));
        // Past the last point the walk wraps to the first.
        let (last, _) = *pts.last().unwrap();
        assert_eq!(ring.owner_index(last + 1), Some(pts[0].1));
    }

    #[test]
    fn empty_ring_owns_nothing() {
        let spec = PlacementSpec::Ring { vnodes: 160 };
        assert_eq!(build(&spec, &[]).owner_of(b"k"), None);
    }

    #[test]
    fn member_order_does_not_matter() {
        let spec = PlacementSpec::Ring { vnodes: 50 };
        let mut ms = members(5);
        let a = build(&spec, &ms);
        ms.reverse();
        let b = build(&spec, &ms);
        for i in 0..2000 {
            let k = format!("key-{i}");
            assert_eq!(a.owner_of(k.as_bytes()), b.owner_of(k.as_bytes()));
        }
    }

    #[test]
    fn weight_scales_the_share() {
        let mut ms = members(2);
        ms[0].weight = 3;
        let ring = Ring::new(&ms, 100);
        let heavy = (0..20_000)
            .filter(|i| ring.owner_of(format!("k{i}").as_bytes()) == Some("node-1"))
            .count();
        let share = heavy as f64 / 20_000.0;
        assert!(
            (0.65..0.85).contains(&share),
            "share of weight-3 node: {share}"
        );
    }
}
