//! `hash % N`: the seeds' phase-1 baseline. Balanced, but a change of N moves
//! almost every key. A member of weight w holds w slots.

use super::explain::Explanation;
use super::{distinct_walk, normalize, Member, Placement};

pub struct Modulo {
    members: Vec<Member>,
    slots: Vec<u32>,
}

impl Modulo {
    pub fn new(members: &[Member]) -> Self {
        let mut m = Modulo { members: Vec::new(), slots: Vec::new() };
        m.set_members(members);
        m
    }
}

impl Placement for Modulo {
    fn members(&self) -> &[Member] {
        &self.members
    }

    fn owner_index(&self, hash: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        Some(self.slots[(hash % self.slots.len() as u64) as usize] as usize)
    }

    fn explain(&self, hash: u64) -> Explanation {
        match self.owner_index(hash) {
            Some(owner) => {
                let slots = self.slots.len() as u64;
                Explanation::Modulo { slots, slot: hash % slots, owner }
            }
            None => Explanation::Empty,
        }
    }

    fn owner_indices(&self, hash: u64, r: usize) -> Vec<usize> {
        if self.slots.is_empty() {
            return Vec::new();
        }
        let holders = self.members.iter().filter(|m| m.weight > 0).count();
        distinct_walk(&self.slots, (hash % self.slots.len() as u64) as usize, r.min(holders))
    }

    fn set_members(&mut self, members: &[Member]) {
        self.members = normalize(members);
        self.slots = self
            .members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| std::iter::repeat_n(i as u32, m.weight as usize))
            .collect();
    }
}
