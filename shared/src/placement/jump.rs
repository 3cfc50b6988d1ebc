//! Jump consistent hash (Lamping & Veach, 2014) over stable buckets.
//!
//! Jump hash maps a key to one of `n` buckets `0..n` and, when `n` grows,
//! moves keys only into the new bucket. It can only *shrink* from the end,
//! so members are given stable **slots** instead of positions:
//!
//! - a fresh placement gives members slots in id order (a member of weight w
//!   gets w slots);
//! - when a member leaves, its slots become *tombstones*; a key whose bucket
//!   is a tombstone jumps again with a re-mixed hash until it lands on a live
//!   slot, so only the leaver's keys move, spread evenly over the others;
//! - a joining member first fills tombstones (lowest first), then appends:
//!   either way only keys that now land on its slots move, all to it.
//!
//! The slot table is the state: [`Jump::slot_table`] exports it and
//! [`Jump::from_slots`] rebuilds the same placement elsewhere.

use super::explain::Explanation;
use super::{extend_distinct, mix64, normalize, Member, Placement};

/// Jumps before giving up on hitting a live slot and scanning instead.
const MAX_REJUMPS: usize = 64;

pub struct Jump {
    members: Vec<Member>,
    /// Member index per bucket; `None` is a tombstone.
    slots: Vec<Option<u32>>,
}

/// Lamping & Veach's jump hash: the bucket in `0..buckets` for `key`.
#[inline]
pub fn jump_bucket(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

impl Jump {
    pub fn new(members: &[Member]) -> Self {
        let members = normalize(members);
        let slots = members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| std::iter::repeat_n(Some(i as u32), m.weight as usize))
            .collect();
        Jump { members, slots }
    }

    /// Rebuilds a placement from an exported slot table (member id per
    /// bucket, `None` for a tombstone), e.g. the backend's, on the page.
    pub fn from_slots(slots: &[Option<String>]) -> Self {
        let mut members: Vec<Member> = Vec::new();
        for id in slots.iter().flatten() {
            match members.iter_mut().find(|m| &m.id == id) {
                Some(m) => m.weight += 1,
                None => members.push(Member::new(id.clone())),
            }
        }
        let members = normalize(&members);
        let slots = slots
            .iter()
            .map(|s| s.as_ref().map(|id| members.iter().position(|m| &m.id == id).unwrap() as u32))
            .collect();
        Jump { members, slots }
    }

    /// The slot table: member id per bucket, `None` for a tombstone.
    pub fn slot_table(&self) -> Vec<Option<String>> {
        self.slots.iter().map(|s| s.map(|i| self.members[i as usize].id.clone())).collect()
    }

    /// The buckets a key visits: its first jump, then a re-jump per
    /// tombstone, ending at a live bucket.
    pub fn bucket_path(&self, hash: u64) -> Vec<u32> {
        let mut path = Vec::new();
        let n = self.slots.len() as u32;
        if n == 0 || self.members.is_empty() {
            return path;
        }
        let mut h = hash;
        for _ in 0..MAX_REJUMPS {
            let b = jump_bucket(h, n);
            path.push(b);
            if self.slots[b as usize].is_some() {
                return path;
            }
            h = mix64(h ^ 0x9e37_79b9_7f4a_7c15);
        }
        // Vanishingly rare: scan forward from the last bucket to a live one.
        let last = *path.last().unwrap();
        let live = (1..=n).map(|d| (last + d) % n).find(|&b| self.slots[b as usize].is_some());
        path.push(live.expect("a member exists, so a live slot does"));
        path
    }
}

impl Placement for Jump {
    fn members(&self) -> &[Member] {
        &self.members
    }

    fn explain(&self, hash: u64) -> Explanation {
        let path: Vec<(u32, Option<usize>)> =
            self.bucket_path(hash).into_iter().map(|b| (b, self.slots[b as usize].map(|m| m as usize))).collect();
        if path.is_empty() {
            return Explanation::Empty;
        }
        Explanation::Jump { buckets: self.slots.len() as u32, path }
    }

    #[inline]
    fn owner_index(&self, hash: u64) -> Option<usize> {
        if self.members.is_empty() || self.slots.is_empty() {
            return None;
        }
        let n = self.slots.len() as u32;
        let b = jump_bucket(hash, n);
        if let Some(m) = self.slots[b as usize] {
            return Some(m as usize);
        }
        let b = *self.bucket_path(hash).last()?;
        self.slots[b as usize].map(|m| m as usize)
    }

    fn owner_indices(&self, hash: u64, r: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let Some(first) = self.owner_index(hash) else {
            return out;
        };
        out.push(first);
        let n = self.slots.len() as u32;
        let mut h = hash;
        // Members of weight 0 hold no slot, and are nobody's replica.
        let holds = |&i: &usize| self.members[i].weight > 0;
        let want = r.min((0..self.members.len()).filter(holds).count());
        let mut tries = 0;
        while out.len() < want && tries < MAX_REJUMPS * 4 {
            h = mix64(h ^ 0x2545_f491_4f6c_dd1d);
            if let Some(m) = self.slots[jump_bucket(h, n) as usize] {
                if !out.contains(&(m as usize)) {
                    out.push(m as usize);
                }
            }
            tries += 1;
        }
        // Fill any remainder in member order, so the answer is always complete.
        extend_distinct(&mut out, (0..self.members.len()).filter(holds), want);
        out.truncate(r);
        out
    }

    fn slots(&self) -> Option<Vec<Option<String>>> {
        Some(self.slot_table())
    }

    fn set_members(&mut self, members: &[Member]) {
        let new = normalize(members);
        // Old slot -> id, with slots of members that left (or lost weight) tombstoned.
        let mut kept: Vec<Option<String>> = self.slot_table();
        let mut remaining: Vec<(String, u32)> = new.iter().map(|m| (m.id.clone(), m.weight)).collect();
        for slot in kept.iter_mut() {
            let keep = slot.as_ref().and_then(|id| remaining.iter_mut().find(|(rid, _)| rid == id));
            match keep {
                Some((_, left)) if *left > 0 => *left -= 1,
                _ => *slot = None,
            }
        }
        // Joiners (and added weight) fill tombstones lowest first, then append.
        for (id, left) in remaining {
            for _ in 0..left {
                match kept.iter_mut().find(|s| s.is_none()) {
                    Some(hole) => *hole = Some(id.clone()),
                    None => kept.push(Some(id.clone())),
                }
            }
        }
        let rebuilt = Jump::from_slots(&kept);
        self.members = new;
        // Members with weight 0 hold no slot; index slots against the full list.
        self.slots = rebuilt
            .slots
            .iter()
            .map(|s| {
                s.map(|i| {
                    let id = &rebuilt.members[i as usize].id;
                    self.members.iter().position(|m| &m.id == id).unwrap() as u32
                })
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_matches_the_papers_reference_values() {
        // From the reference C++ implementation (Lamping & Veach, fig. 1).
        assert_eq!(jump_bucket(0, 1), 0);
        assert_eq!(jump_bucket(0, 100), 0);
        let spread: std::collections::HashSet<u32> = (0..1000u64).map(|k| jump_bucket(k, 10)).collect();
        assert_eq!(spread.len(), 10);
        // Growing from n to n+1 buckets moves keys only into bucket n.
        for k in 0..5000u64 {
            let (a, b) = (jump_bucket(k, 7), jump_bucket(k, 8));
            assert!(a == b || b == 7);
        }
    }

    #[test]
    fn a_leaver_in_the_middle_becomes_a_tombstone_then_a_joiner_fills_it() {
        let ms: Vec<Member> = (1..=5).map(|i| Member::new(format!("node-{i}"))).collect();
        let mut j = Jump::new(&ms);
        j.remove_member("node-3");
        assert_eq!(j.slot_table()[2], None);
        assert_eq!(j.slot_table().len(), 5);
        j.add_member(Member::new("node-9"));
        assert_eq!(j.slot_table()[2].as_deref(), Some("node-9"));
        let copy = Jump::from_slots(&j.slot_table());
        for h in 0..2000u64 {
            let h = mix64(h);
            assert_eq!(copy.owner_of(&h.to_le_bytes()), j.owner_of(&h.to_le_bytes()));
        }
    }
}
