//! Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam,
//! 2018): a ring walk that skips members already holding their capacity,
//! `capacity` x the mean (x their weight share), so no member holds more than
//! c times its fair share.
//!
//! Placement depends on the key set, so it is computed for one: the keys are
//! placed in ascending hash order (an order every party can reproduce), each
//! walking clockwise from its hash to the first member under capacity. A key
//! outside that set is answered by the same walk against the loads of the
//! set, without being added. A membership change can cascade (keys move
//! between members that stay), the price of the bound.

use std::collections::HashMap;

use super::ring::Ring;
use super::{Member, Placement};

pub struct Bounded {
    ring: Ring,
    capacity: f64,
    keys: Vec<u64>,
    caps: Vec<u64>,
    loads: Vec<u64>,
    assigned: HashMap<u64, u32>,
}

impl Bounded {
    /// Places the distinct hashes in `hashes` (may be empty).
    pub fn new(members: &[Member], vnodes: u32, capacity: f64, hashes: &[u64]) -> Self {
        let mut keys = hashes.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let mut b = Bounded {
            ring: Ring::new(members, vnodes),
            capacity: capacity.max(1.0),
            keys,
            caps: Vec::new(),
            loads: Vec::new(),
            assigned: HashMap::new(),
        };
        b.place();
        b
    }

    /// Each member's capacity (keys it may hold) for the placed key set.
    pub fn capacities(&self) -> &[u64] {
        &self.caps
    }

    /// Each member's load (keys placed on it).
    pub fn loads(&self) -> &[u64] {
        &self.loads
    }

    /// The members a key's walk passed over because they were full, then its
    /// owner: the page draws this as "where the key overflowed".
    pub fn walk(&self, hash: u64) -> Vec<usize> {
        let mut path = Vec::new();
        let len = self.ring.point_count();
        if len == 0 {
            return path;
        }
        let owner = self.owner_index(hash);
        let start = self.ring.successor(hash);
        for step in 0..len {
            let m = self.ring.owner_at((start + step) % len);
            if path.last() != Some(&m) {
                path.push(m);
            }
            if Some(m) == owner {
                break;
            }
        }
        path
    }

    fn place(&mut self) {
        let n = self.ring.members().len();
        self.loads = vec![0; n];
        self.assigned.clear();
        let total_weight: u64 = self.ring.members().iter().map(|m| m.weight as u64).sum();
        if total_weight == 0 {
            self.caps = vec![0; n];
            return;
        }
        let m = self.keys.len() as f64;
        self.caps = self
            .ring
            .members()
            .iter()
            .map(|x| {
                let fair = m * x.weight as f64 / total_weight as f64;
                if x.weight == 0 {
                    0
                } else {
                    (libm::floor(self.capacity * fair) as u64).max(libm::ceil(fair) as u64)
                }
            })
            .collect();
        for i in 0..self.keys.len() {
            let h = self.keys[i];
            if let Some(owner) = self.walk_to_free(h) {
                self.loads[owner] += 1;
                self.assigned.insert(h, owner as u32);
            }
        }
    }

    /// First member clockwise from `hash` below its capacity.
    fn walk_to_free(&self, hash: u64) -> Option<usize> {
        let len = self.ring.point_count();
        if len == 0 {
            return None;
        }
        let start = self.ring.successor(hash);
        if self.keys.is_empty() {
            // No key set placed: no loads, so the plain ring answer.
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
        for m in self.ring.owner_indices(hash, self.members().len()) {
            if out.len() >= r {
                break;
            }
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out.truncate(r);
        out
    }

    fn set_members(&mut self, members: &[Member]) {
        self.ring.set_members(members);
        self.place();
    }
}
