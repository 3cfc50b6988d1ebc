//! Consistent hashing on a ring of 2^64 positions.
//!
//! Each member gets `vnodes x weight` points at `key_hash("{id}#{i}")`; a key
//! belongs to the first point at or clockwise after its hash (wrapping past
//! the top). Points that collide are ordered by member id, so the ring does
//! not depend on the order members joined. Lookups go through a small index of
//! the points by their top bits, then a search within one bucket.

use super::explain::{Explanation, RING_NEXT};
use super::{distinct_walk, normalize, Member, Placement};
use crate::hash::key_hash;

/// A consistent-hashing ring with virtual nodes.
pub struct Ring {
    members: Vec<Member>,
    vnodes: u32,
    /// Sorted point positions, and beside them the owning member's index.
    points: Vec<u64>,
    owners: Vec<u32>,
    /// `starts[p]`: index of the first point whose top `bits` bits are >= p.
    starts: Vec<u32>,
    shift: u32,
}

/// 2^64, the ring's circumference in hashes.
const TURN: f64 = 18_446_744_073_709_551_616.0;

/// A stretch of the ring with one owner: the hashes in `(from, to]`,
/// wrapping past the top (see [`Ring::arcs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedArc {
    /// The point before the stretch (exclusive).
    pub from: u64,
    /// Its last point (inclusive).
    pub to: u64,
    /// The owning member's index.
    pub owner: usize,
    /// How many hashes it holds (2^64 for the whole circle).
    pub span: u128,
}

/// The ring position of virtual node `i` of member `id`.
pub fn vnode_point(id: &str, i: u32) -> u64 {
    key_hash(format!("{id}#{i}").as_bytes())
}

impl Ring {
    pub fn new(members: &[Member], vnodes: u32) -> Self {
        let mut ring =
            Ring { members: Vec::new(), vnodes, points: Vec::new(), owners: Vec::new(), starts: Vec::new(), shift: 63 };
        ring.set_members(members);
        ring
    }

    /// Every virtual node as (position, member index), in ring order.
    pub fn points(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.points.iter().zip(&self.owners).map(|(&p, &o)| (p, o as usize))
    }

    /// How many virtual nodes the ring has.
    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    /// The member index owning point `i` (in ring order).
    #[inline]
    pub fn owner_at(&self, i: usize) -> usize {
        self.owners[i] as usize
    }

    /// The ring cut into arcs, one per maximal run of consecutive points
    /// with the same owner, in ring order: each hash in `(from, to]` (wrapping
    /// past the top) belongs to `owner`. They cover the circle exactly once;
    /// a ring whose points all have one owner is one arc of the whole
    /// circle. Empty when the ring has no points.
    pub fn arcs(&self) -> Vec<OwnedArc> {
        let n = self.points.len();
        let Some(start) = (0..n).find(|&i| self.owners[i] != self.owners[(i + n - 1) % n]) else {
            return match self.points.first() {
                Some(&p) => vec![OwnedArc { from: p, to: p, owner: self.owners[0] as usize, span: 1 << 64 }],
                None => Vec::new(),
            };
        };
        let mut arcs: Vec<OwnedArc> = Vec::new();
        for step in 0..n {
            let i = (start + step) % n;
            let (to, owner) = (self.points[i], self.owners[i] as usize);
            match arcs.last_mut() {
                Some(last) if last.owner == owner => last.to = to,
                _ => arcs.push(OwnedArc { from: self.points[(i + n - 1) % n], to, owner, span: 0 }),
            }
        }
        for arc in &mut arcs {
            arc.span = u128::from(arc.to.wrapping_sub(arc.from));
        }
        arcs
    }

    /// Each member's share of the circle (the fraction of all hashes it
    /// owns), in member order; they sum to 1 when the ring has points.
    pub fn shares(&self) -> Vec<f64> {
        let mut spans = vec![0u128; self.members.len()];
        for arc in self.arcs() {
            spans[arc.owner] += arc.span;
        }
        spans.into_iter().map(|s| s as f64 / TURN).collect()
    }

    /// Index of the first point at or after `hash`, wrapping to 0.
    #[inline]
    pub fn successor(&self, hash: u64) -> usize {
        let bucket = (hash >> self.shift) as usize;
        let lo = self.starts[bucket] as usize;
        let hi = self.starts[bucket + 1] as usize;
        let i = lo + self.points[lo..hi].partition_point(|&p| p < hash);
        if i == self.points.len() {
            0
        } else {
            i
        }
    }

    fn build_index(&mut self) {
        // About two points per bucket keeps the in-bucket search to a step or two.
        let bits = (usize::BITS - self.points.len().max(1).leading_zeros()).clamp(1, 20);
        self.shift = 64 - bits;
        let buckets = 1usize << bits;
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut i = 0;
        for b in 0..buckets as u64 {
            while i < self.points.len() && (self.points[i] >> self.shift) < b {
                i += 1;
            }
            starts.push(i as u32);
        }
        starts.push(self.points.len() as u32);
        self.starts = starts;
    }
}

impl Placement for Ring {
    fn members(&self) -> &[Member] {
        &self.members
    }

    #[inline]
    fn owner_index(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        Some(self.owners[self.successor(hash)] as usize)
    }

    fn explain(&self, hash: u64) -> Explanation {
        if self.points.is_empty() {
            return Explanation::Empty;
        }
        let start = self.successor(hash);
        let next = (0..RING_NEXT.min(self.points.len()))
            .map(|s| {
                let i = (start + s) % self.points.len();
                (self.points[i], self.owners[i] as usize)
            })
            .collect();
        Explanation::Ring { points: self.points.len(), next }
    }

    fn ring_positions(&self) -> Option<&[u64]> {
        Some(&self.points)
    }

    fn owner_indices(&self, hash: u64, r: usize) -> Vec<usize> {
        if self.points.is_empty() {
            return Vec::new();
        }
        let holders = self.members.iter().filter(|m| m.weight > 0).count();
        distinct_walk(&self.owners, self.successor(hash), r.min(holders))
    }

    fn set_members(&mut self, members: &[Member]) {
        self.members = normalize(members);
        let mut pairs: Vec<(u64, u32)> = Vec::new();
        for (m, member) in self.members.iter().enumerate() {
            for i in 0..self.vnodes.saturating_mul(member.weight) {
                pairs.push((vnode_point(&member.id, i), m as u32));
            }
        }
        // Members are sorted by id, so index order is id order.
        pairs.sort_unstable();
        (self.points, self.owners) = pairs.into_iter().unzip();
        self.build_index();
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
        for w in 0..pts.len() {
            let (p, owner) = pts[w];
            let next = pts[(w + 1) % pts.len()].1;
            assert_eq!(ring.owner_index(p), Some(owner));
            assert_eq!(ring.owner_index(p - 1), Some(owner));
            assert_eq!(ring.owner_index(p + 1), Some(next));
        }
        // Past the last point the walk wraps to the first.
        let (last, _) = *pts.last().unwrap();
        assert_eq!(ring.owner_index(last + 1), Some(pts[0].1));
        assert_eq!(ring.owner_index(u64::MAX), Some(pts[0].1));
        assert_eq!(ring.owner_index(0), Some(pts[0].1));
    }

    #[test]
    fn arcs_cover_the_circle_once_with_the_owner_of_every_hash_in_them() {
        for (n, vnodes) in [(1, 1), (1, 5), (2, 1), (3, 8), (5, 100)] {
            let ring = Ring::new(&members(n), vnodes);
            let arcs = ring.arcs();
            assert_eq!(arcs.iter().map(|a| a.span).sum::<u128>(), 1u128 << 64, "{n} x {vnodes}");
            for (i, a) in arcs.iter().enumerate() {
                // Neighbours differ in owner and meet end to start.
                let next = &arcs[(i + 1) % arcs.len()];
                if arcs.len() > 1 {
                    assert_ne!(a.owner, next.owner);
                    assert_eq!(a.to, next.from);
                }
                for h in [a.from.wrapping_add(1), a.to, a.from.wrapping_add((a.span / 2) as u64)] {
                    assert_eq!(ring.owner_index(h), Some(a.owner), "hash {h:x} in {a:?}");
                }
            }
            // One point per member: at most one arc each.
            if vnodes == 1 {
                assert_eq!(arcs.len(), n);
            }
        }
        assert!(Ring::new(&[], 10).arcs().is_empty());
    }

    #[test]
    fn shares_are_the_fraction_of_hashes_each_member_owns() {
        let ring = Ring::new(&members(4), 50);
        let shares = ring.shares();
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // Against a sample of evenly spaced hashes.
        let samples = 200_000u64;
        let mut counts = [0u64; 4];
        for i in 0..samples {
            counts[ring.owner_index(i * (u64::MAX / samples)).unwrap()] += 1;
        }
        for (share, count) in shares.iter().zip(counts) {
            assert!((share - count as f64 / samples as f64).abs() < 0.002, "{shares:?} vs {counts:?}");
        }
        assert_eq!(Ring::new(&members(1), 3).shares(), vec![1.0]);
        assert!(Ring::new(&[], 3).shares().is_empty());
    }

    #[test]
    fn empty_ring_owns_nothing() {
        let spec = PlacementSpec::Ring { vnodes: 160 };
        assert_eq!(build(&spec, &[]).owner_of(b"k"), None);
    }

    #[test]
    fn weight_scales_the_share() {
        let mut ms = members(2);
        ms[0].weight = 3;
        let ring = Ring::new(&ms, 100);
        let heavy = (0..20_000).filter(|i| ring.owner_of(format!("k{i}").as_bytes()) == Some("node-1")).count();
        let share = heavy as f64 / 20_000.0;
        assert!((0.65..0.85).contains(&share), "share of weight-3 node: {share}");
    }

    #[test]
    fn replicas_walk_clockwise_to_distinct_members() {
        let ring = Ring::new(&members(4), 16);
        let pts: Vec<_> = ring.points().collect();
        let h = pts[10].0 - 1;
        let got = ring.owner_indices(h, 3);
        let mut want = Vec::new();
        for (_, o) in pts[10..].iter().chain(&pts[..10]) {
            if want.len() < 3 && !want.contains(o) {
                want.push(*o);
            }
        }
        assert_eq!(got, want);
    }
}
