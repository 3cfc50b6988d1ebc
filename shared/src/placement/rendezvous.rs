//! Rendezvous (highest random weight) hashing: every member scores the key;
//! the highest score wins, and the top R scores give R distinct replicas.
//!
//! A member's score for a key hash `h` is `mix64(h ^ hash(id))`. With equal
//! weights the raw 64-bit scores are compared; with unequal weights the
//! score becomes `-w / ln(u)` (u = score mapped into (0, 1)), the weighted
//! HRW of Schindelhauer & Schomaker, computed with `libm` so it is identical
//! on every platform.

use super::explain::Explanation;
use super::{mix64, normalize, Member, Placement};
use crate::hash::key_hash;

pub struct Rendezvous {
    members: Vec<Member>,
    seeds: Vec<u64>,
    weighted: bool,
    /// Members with weight: a member of weight 0 holds no key.
    holders: usize,
}

impl Rendezvous {
    pub fn new(members: &[Member]) -> Self {
        let mut r = Rendezvous { members: Vec::new(), seeds: Vec::new(), weighted: false, holders: 0 };
        r.set_members(members);
        r
    }

    /// Every member's score for a key hash (higher wins), in member order.
    pub fn scores(&self, hash: u64) -> Vec<f64> {
        (0..self.members.len()).map(|i| self.score(i, hash)).collect()
    }

    #[inline]
    fn raw(&self, i: usize, hash: u64) -> u64 {
        mix64(hash ^ self.seeds[i])
    }

    fn score(&self, i: usize, hash: u64) -> f64 {
        let raw = self.raw(i, hash);
        if !self.weighted {
            return raw as f64;
        }
        // u in (0, 1): never 0 or 1, so ln(u) is finite and negative.
        let u = ((raw >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        -(self.members[i].weight as f64) / libm::log(u)
    }
}

impl Placement for Rendezvous {
    fn members(&self) -> &[Member] {
        &self.members
    }

    fn explain(&self, hash: u64) -> Explanation {
        match self.owner_index(hash) {
            Some(winner) => Explanation::Rendezvous { scores: self.scores(hash), winner },
            None => Explanation::Empty,
        }
    }

    #[inline]
    fn owner_index(&self, hash: u64) -> Option<usize> {
        if self.holders == 0 {
            return None;
        }
        if !self.weighted {
            let mut best = (0u64, 0usize);
            for i in 0..self.seeds.len() {
                let s = self.raw(i, hash);
                if s > best.0 || i == 0 {
                    best = (s, i);
                }
            }
            return Some(best.1);
        }
        let mut best = (f64::NEG_INFINITY, 0usize);
        for i in 0..self.members.len() {
            let s = self.score(i, hash);
            if s > best.0 {
                best = (s, i);
            }
        }
        Some(best.1)
    }

    fn owner_indices(&self, hash: u64, r: usize) -> Vec<usize> {
        let mut order: Vec<(f64, u64, usize)> =
            (0..self.members.len()).map(|i| (self.score(i, hash), self.raw(i, hash), i)).collect();
        // Highest score first; ties broken by the raw score, then member order.
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        // Members of weight 0 score 0, below every member with weight.
        order.into_iter().take(r.min(self.holders)).map(|(_, _, i)| i).collect()
    }

    fn set_members(&mut self, members: &[Member]) {
        self.members = normalize(members);
        self.seeds = self.members.iter().map(|m| key_hash(m.id.as_bytes())).collect();
        self.weighted = self.members.windows(2).any(|w| w[0].weight != w[1].weight);
        self.holders = self.members.iter().filter(|m| m.weight > 0).count();
    }
}
