//! Maglev hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size
//! M filled round-robin from each member's own permutation of the slots.
//!
//! Member i prefers slots `offset_i, offset_i + skip_i, ...` (mod M), with
//! `offset = hash(id) % M` and `skip = mix64(hash(id)) % (M-1) + 1`; in
//! every round each member (a member of weight w: w times) takes its next
//! preferred free slot. A key goes to `table[hash % M]`. Lookups are one
//! array read; balance is near perfect. On a membership change most moved
//! keys move to (or from) the changed member, but not all: a few slots
//! change hands between others, fewer the larger M is than N (the paper's
//! bound; ours is tested at under 2% of keys for M = 65537, N <= 20).
//! A `table_size` that is not prime is rounded up to the next prime.

use super::explain::{Explanation, MAGLEV_WINDOW};
use super::{distinct_walk, mix64, normalize, Member, Placement};
use crate::hash::key_hash;

/// The default table size: a prime well above 100 x any cluster shown here.
pub const DEFAULT_TABLE_SIZE: u64 = 65_537;

pub struct Maglev {
    members: Vec<Member>,
    size: u64,
    table: Vec<u32>,
}

/// Smallest prime >= n (n >= 2).
pub fn next_prime(n: u64) -> u64 {
    let is_prime = |x: u64| x >= 2 && (2..).take_while(|d| d * d <= x).all(|d| !x.is_multiple_of(d));
    (n.max(2)..).find(|&x| is_prime(x)).expect("primes are unbounded")
}

impl Maglev {
    pub fn new(members: &[Member], table_size: u64) -> Self {
        let mut m = Maglev { members: Vec::new(), size: next_prime(table_size), table: Vec::new() };
        m.set_members(members);
        m
    }

    /// The table size actually used (a prime).
    pub fn table_size(&self) -> u64 {
        self.size
    }

    /// The lookup table: member index per slot.
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    fn populate(&mut self) {
        let m = self.size;
        self.table.clear();
        if self.members.iter().all(|x| x.weight == 0) {
            return;
        }
        let perms: Vec<(u64, u64)> = self
            .members
            .iter()
            .map(|x| {
                let h = key_hash(x.id.as_bytes());
                (h % m, mix64(h) % (m - 1) + 1)
            })
            .collect();
        let mut next: Vec<u64> = perms.iter().map(|p| p.0).collect();
        const EMPTY: u32 = u32::MAX;
        let mut table = vec![EMPTY; m as usize];
        let mut filled = 0u64;
        'fill: loop {
            for (i, member) in self.members.iter().enumerate() {
                for _ in 0..member.weight {
                    let (_, skip) = perms[i];
                    let mut c = next[i];
                    while table[c as usize] != EMPTY {
                        c = (c + skip) % m;
                    }
                    table[c as usize] = i as u32;
                    next[i] = (c + skip) % m;
                    filled += 1;
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
        self.table = table;
    }
}

impl Placement for Maglev {
    fn members(&self) -> &[Member] {
        &self.members
    }

    fn explain(&self, hash: u64) -> Explanation {
        if self.table.is_empty() {
            return Explanation::Empty;
        }
        let size = self.size;
        let slot = hash % size;
        let shown = MAGLEV_WINDOW.min(size);
        let window = (0..shown)
            .map(|i| {
                let s = (slot + size - shown / 2 + i) % size;
                (s, self.table[s as usize] as usize)
            })
            .collect();
        Explanation::Maglev { size, slot, window }
    }

    #[inline]
    fn owner_index(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.size) as usize] as usize)
    }

    fn owner_indices(&self, hash: u64, r: usize) -> Vec<usize> {
        if self.table.is_empty() {
            return Vec::new();
        }
        let holders = self.members.iter().filter(|m| m.weight > 0).count();
        distinct_walk(&self.table, (hash % self.size) as usize, r.min(holders))
    }

    fn set_members(&mut self, members: &[Member]) {
        self.members = normalize(members);
        self.populate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sizes_are_prime() {
        assert_eq!(next_prime(65_537), 65_537);
        assert_eq!(next_prime(100), 101);
        assert_eq!(Maglev::new(&[Member::new("a")], 1000).table_size(), 1009);
    }

    #[test]
    fn the_table_is_split_almost_exactly_evenly() {
        let ms: Vec<Member> = (0..7).map(|i| Member::new(format!("n{i}"))).collect();
        let mg = Maglev::new(&ms, 65_537);
        let mut counts = [0u64; 7];
        for &i in mg.table() {
            counts[i as usize] += 1;
        }
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "slots per member: {counts:?}");
    }
}
