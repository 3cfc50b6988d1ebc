//! `hash % N`: the seeds' phase-1 baseline. Balanced, but a change of N moves
//! almost every key. A member of weight w holds w slots.

use super::{normalize, Member, Placement};

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

    fn owner_indices(&self, hash: u64, r: usize) -> Vec<usize> {
        let mut out = Vec::new();
        if self.slots.is_empty() {
            return out;
        }
        let start = (hash % self.slots.len() as u64) as usize;
        for i in 0..self.slots.len() {
            let m = self.slots[(start + i) % self.slots.len()] as usize;
            if out.len() == r {
                break;
            }
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
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
