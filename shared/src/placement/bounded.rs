//! Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam,
//! 2018): a ring walk that skips members already holding their capacity,
//! `capacity` x the mean (x their weight share), so no member holds more than
//! c times its fair share.
//!
//! Placement depends on the key set, so it is computed for one: the keys are
//! placed in ascending hash order (an order every party can reproduce), each
//! walking clockwise from its hash to the first member under capacity. A key
//! outside that set is answered by the same walk against the loads of the
//! set, without being added. A live cluster adds keys one at a time
//! ([`Placement::key_added`]): a new key takes the first member under the
//! capacity for the new count, and no placed key moves. A membership change
//! places the whole set afresh and can cascade (keys move between members
//! that stay), the price of the bound.

use std::collections::HashMap;

/// Key hash -> member index. Keys are hashes already; foldhash (seeded per
/// process, so keys cannot be chosen to collide) is far cheaper than SipHash.
type Assigned = HashMap<u64, u32, foldhash::fast::RandomState>;

use super::explain::Explanation;
use super::ring::Ring;
use super::{extend_distinct, Member, Placement};

pub struct Bounded {
    ring: Ring,
    capacity: f64,
    caps: Vec<u64>,
    loads: Vec<u64>,
    assigned: Assigned,
}

impl Bounded {
    /// Places the distinct hashes in `hashes` (may be empty).
    pub fn new(members: &[Member], vnodes: u32, capacity: f64, hashes: &[u64]) -> Self {
        let mut b = Bounded {
            ring: Ring::new(members, vnodes),
            capacity: capacity.max(1.0),
            caps: Vec::new(),
            loads: Vec::new(),
            assigned: Assigned::default(),
        };
        b.place(hashes.to_vec());
        b
    }

    /// Takes up an assignment as it stands, each key hash on the member (an
    /// index into the normalized members) that holds it: how a restarted
    /// gateway rebuilds the placement from where the keys are. Keys added
    /// later are placed as usual.
    pub fn with_assignment(members: &[Member], vnodes: u32, capacity: f64, located: &[(u64, usize)]) -> Self {
        let mut b = Bounded::new(members, vnodes, capacity, &[]);
        let n = b.ring.members().len();
        for &(h, m) in located.iter().filter(|&&(_, m)| m < n) {
            if b.assigned.insert(h, m as u32).is_none() {
                b.loads[m] += 1;
            }
        }
        b.caps = b.caps_for(b.assigned.len());
        b
    }

    /// Each member's capacity (keys it may hold) for the placed key set.
    pub fn capacities(&self) -> &[u64] {
        &self.caps
    }

    /// The members a key's walk visits, in order, ending at its owner: the
    /// ones before it were full ("where the key overflowed").
    pub fn walk(&self, hash: u64) -> Vec<usize> {
        let mut path = Vec::new();
        let len = self.ring.point_count();
        let Some(owner) = self.owner_index(hash) else { return path };
        let start = self.ring.successor(hash);
        for step in 0..len {
            let m = self.ring.owner_at((start + step) % len);
            if !path.contains(&m) {
                path.push(m);
            }
            if m == owner {
                break;
            }
        }
        path
    }

    /// Each member's load (keys placed on it).
    pub fn loads(&self) -> &[u64] {
        &self.loads
    }

    /// Places `keys` afresh, in ascending hash order.
    fn place(&mut self, mut keys: Vec<u64>) {
        keys.sort_unstable();
        keys.dedup();
        self.loads = vec![0; self.ring.members().len()];
        self.assigned = Assigned::with_capacity_and_hasher(keys.len(), Default::default());
        self.caps = self.caps_for(keys.len());
        for h in keys {
            if let Some(owner) = self.walk_to_free(h) {
                self.loads[owner] += 1;
                self.assigned.insert(h, owner as u32);
            }
        }
    }

    /// Each member's capacity when `m` keys are placed: c x its fair share,
    /// and never less than the share rounded up, so every key fits.
    fn caps_for(&self, m: usize) -> Vec<u64> {
        let total_weight: u64 = self.ring.members().iter().map(|m| m.weight as u64).sum();
        self.ring
            .members()
            .iter()
            .map(|x| {
                if x.weight == 0 || total_weight == 0 {
                    return 0;
                }
                let fair = m as f64 * x.weight as f64 / total_weight as f64;
                (libm::floor(self.capacity * fair) as u64).max(libm::ceil(fair) as u64)
            })
            .collect()
    }

    /// First member clockwise from `hash` below its capacity.
    fn walk_to_free(&self, hash: u64) -> Option<usize> {
        let len = self.ring.point_count();
        if len == 0 {
            return None;
        }
        let start = self.ring.successor(hash);
        if self.assigned.is_empty() {
            // Nothing placed: no loads, so the plain ring answer.
            return Some(self.ring.owner_at(start));
        }
        (0..len)
            .map(|step| self.ring.owner_at((start + step) % len))
            .find(|&m| self.loads[m] < self.caps[m])
            .or(Some(self.ring.owner_at(start)))
    }
}

impl Placement for Bounded {
    fn members(&self) -> &[Member] {
        self.ring.members()
    }

    fn explain(&self, hash: u64) -> Explanation {
        let walk = self.walk(hash);
        if walk.is_empty() {
            return Explanation::Empty;
        }
        Explanation::Bounded { walk, loads: self.loads.clone(), capacities: self.caps.clone(), capacity: self.capacity }
    }

    fn owner_index(&self, hash: u64) -> Option<usize> {
        match self.assigned.get(&hash) {
            Some(&m) => Some(m as usize),
            None => self.walk_to_free(hash),
        }
    }

    fn owner_indices(&self, hash: u64, r: usize) -> Vec<usize> {
        let Some(first) = self.owner_index(hash) else {
            return Vec::new();
        };
        let mut out = vec![first];
        extend_distinct(&mut out, self.ring.owner_indices(hash, self.members().len()), r);
        out.truncate(r);
        out
    }

    fn set_members(&mut self, members: &[Member]) {
        let keys: Vec<u64> = self.assigned.keys().copied().collect();
        self.ring.set_members(members);
        self.place(keys);
    }

    fn depends_on_keys(&self) -> bool {
        true
    }

    fn key_added(&mut self, hash: u64) {
        if self.assigned.contains_key(&hash) || self.ring.point_count() == 0 {
            return;
        }
        self.caps = self.caps_for(self.assigned.len() + 1);
        if let Some(owner) = self.walk_to_free(hash) {
            self.loads[owner] += 1;
            self.assigned.insert(hash, owner as u32);
        }
    }

    fn key_removed(&mut self, hash: u64) {
        if let Some(owner) = self.assigned.remove(&hash) {
            self.loads[owner as usize] -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::key_hash;

    #[test]
    fn an_assignment_taken_up_as_it_stands_answers_the_same() {
        let members: Vec<Member> = (1..=4).map(|i| Member::new(format!("node-{i}"))).collect();
        let mut live = Bounded::new(&members, 20, 1.25, &[]);
        let hashes: Vec<u64> = (0..2000u32).map(|i| key_hash(format!("k{i}").as_bytes())).collect();
        for &h in &hashes {
            live.key_added(h);
        }
        let located: Vec<(u64, usize)> = hashes.iter().map(|&h| (h, live.owner_index(h).unwrap())).collect();
        let rebuilt = Bounded::with_assignment(&members, 20, 1.25, &located);
        assert!(hashes.iter().all(|&h| rebuilt.owner_index(h) == live.owner_index(h)));
        assert_eq!(rebuilt.loads(), live.loads());
        // Placing the same set afresh (hash order) would answer differently.
        let fresh = Bounded::new(&members, 20, 1.25, &hashes);
        assert!(hashes.iter().any(|&h| fresh.owner_index(h) != live.owner_index(h)));
    }

    #[test]
    fn keys_added_one_by_one_stay_put_and_within_capacity() {
        let members: Vec<Member> = (1..=5).map(|i| Member::new(format!("node-{i}"))).collect();
        let mut b = Bounded::new(&members, 20, 1.25, &[]);
        let mut owners = Vec::new();
        for i in 0..5000u32 {
            let h = key_hash(format!("k{i}").as_bytes());
            b.key_added(h);
            owners.push((h, b.owner_index(h).unwrap()));
            if i % 500 == 0 {
                // No key placed earlier has moved.
                assert!(owners.iter().all(|&(h, o)| b.owner_index(h) == Some(o)));
            }
        }
        let mean = 5000.0 / 5.0;
        let max = *b.loads().iter().max().unwrap() as f64;
        assert!(max / mean <= 1.25 + 1.0 / mean, "max/mean {}", max / mean);
        b.key_removed(owners[0].0);
        assert_eq!(b.loads().iter().sum::<u64>(), 4999);
    }
}
