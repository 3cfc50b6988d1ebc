//! The node's key-value map, made durable by the write-ahead log, and the
//! semantics of every node operation: [`Store::apply`] turns a request into
//! a reply (a rejected request changes nothing), [`Store::commit`] makes the
//! writes so far durable before they are acknowledged.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use shardscope_shared::hash::key_hash;
use shardscope_shared::protocol::{Datum, Entry, ErrorCode, NodeReply, NodeRequest, NodeStats};

use crate::wal::{FsyncPolicy, Op, Wal};

pub struct Store {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes: u64,
    ops: u64,
    wal: Wal,
}

impl Store {
    /// Opens the store in `dir`, recovering everything the log holds.
    pub fn open(dir: &Path, policy: FsyncPolicy) -> std::io::Result<Store> {
        let mut map = BTreeMap::new();
        let wal = Wal::open(dir, policy, |op| match op {
            Op::Put(k, v) => {
                map.insert(k, v);
            }
            Op::Delete(k) => {
                map.remove(&k);
            }
        })?;
        let bytes = map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        Ok(Store { map, bytes, ops: 0, wal })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Writes the log and syncs as the policy says; call before
    /// acknowledging the writes applied since the last commit.
    pub fn commit(&mut self) -> std::io::Result<()> {
        self.wal.commit()?;
        if self.wal.wants_rewrite(self.bytes) {
            self.wal.rewrite(self.map.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))?;
        }
        Ok(())
    }

    /// How long until a periodic fsync is due, if one is pending.
    pub fn sync_due_in(&self) -> Option<std::time::Duration> {
        self.wal.sync_due_in()
    }

    /// Runs a due periodic fsync.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.wal.sync()
    }

    /// Carries out one request and returns its reply. Writes are logged (to
    /// be made durable by [`Store::commit`]) before they touch the map.
    pub fn apply(&mut self, req: NodeRequest) -> NodeReply {
        self.ops += 1;
        if let Err(reply) = req.validate() {
            return reply;
        }
        match req {
            NodeRequest::Put { key, value } => {
                self.write(vec![Op::Put(key.0, value.0)]);
                NodeReply::ok()
            }
            NodeRequest::GetOne { key } => match self.map.get(key.as_bytes()) {
                Some(v) => NodeReply::Value { value: Datum(v.clone()), key },
                None => not_found(&key),
            },
            NodeRequest::GetAll => {
                NodeReply::Collection { collection: self.entries(Bound::Unbounded, None, usize::MAX) }
            }
            NodeRequest::Delete { key } => {
                if !self.map.contains_key(key.as_bytes()) {
                    return not_found(&key);
                }
                self.write(vec![Op::Delete(key.0)]);
                NodeReply::ok()
            }
            NodeRequest::PutBatch { entries, if_absent } => {
                let mut seen = std::collections::HashSet::new();
                let ops: Vec<Op> = entries
                    .into_iter()
                    .filter(|e| {
                        !if_absent || (!self.map.contains_key(e.key.as_bytes()) && seen.insert(e.key.0.clone()))
                    })
                    .map(|e| Op::Put(e.key.0, e.value.0))
                    .collect();
                let n = ops.len() as u64;
                self.write(ops);
                NodeReply::ok_count(n)
            }
            NodeRequest::DeleteBatch { keys } => {
                let mut seen = std::collections::HashSet::new();
                let ops: Vec<Op> = keys
                    .into_iter()
                    .filter(|k| self.map.contains_key(k.as_bytes()) && seen.insert(k.0.clone()))
                    .map(|k| Op::Delete(k.0))
                    .collect();
                let n = ops.len() as u64;
                self.write(ops);
                NodeReply::ok_count(n)
            }
            NodeRequest::Scan { cursor, limit, ranges } => {
                let start = match &cursor {
                    Some(c) => Bound::Excluded(c.as_bytes()),
                    None => Bound::Unbounded,
                };
                let page = self.entries(start, ranges.as_deref(), limit);
                let next = (page.len() == limit).then(|| page.last().map(|e| e.key.clone())).flatten();
                NodeReply::Page { page, next }
            }
            NodeRequest::Stats => NodeReply::Stats { stats: self.stats() },
        }
    }

    pub fn stats(&self) -> NodeStats {
        NodeStats { keys: self.map.len() as u64, bytes: self.bytes, ops: self.ops, log_bytes: self.wal.size() }
    }

    /// Logs then applies one atomic batch.
    fn write(&mut self, ops: Vec<Op>) {
        self.wal.append(&ops);
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    let added = (k.len() + v.len()) as u64;
                    if let Some(old) = self.map.insert(k.clone(), v) {
                        self.bytes -= (k.len() + old.len()) as u64;
                    }
                    self.bytes += added;
                }
                Op::Delete(k) => {
                    if let Some(old) = self.map.remove(&k) {
                        self.bytes -= (k.len() + old.len()) as u64;
                    }
                }
            }
        }
    }

    /// Up to `limit` pairs from `start` in key order, only keys whose hash
    /// is in one of `ranges` when given.
    fn entries(&self, start: Bound<&[u8]>, ranges: Option<&[(u64, u64)]>, limit: usize) -> Vec<Entry> {
        let ranges = ranges.map(merge_ranges);
        self.map
            .range::<[u8], _>((start, Bound::Unbounded))
            .filter(|(k, _)| {
                ranges.as_deref().is_none_or(|rs| {
                    // Sorted and disjoint: the one range that can hold h
                    // is the last starting at or below it.
                    let h = key_hash(k);
                    let i = rs.partition_point(|&(lo, _)| lo <= h);
                    i > 0 && h <= rs[i - 1].1
                })
            })
            .take(limit)
            .map(|(k, v)| Entry { key: Datum(k.clone()), value: Datum(v.clone()) })
            .collect()
    }
}

/// Ranges sorted by start, overlapping or touching ones merged.
fn merge_ranges(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (lo, hi) in sorted {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn not_found(key: &Datum) -> NodeReply {
    NodeReply::error(ErrorCode::NotFound, format!("key {:?} not found", key.to_text_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Store::open(dir.path(), FsyncPolicy::Always).unwrap(), dir)
    }

    fn put(k: &str, v: &str) -> NodeRequest {
        NodeRequest::Put { key: k.into(), value: v.into() }
    }

    #[test]
    fn put_then_get_one_returns_the_value() {
        let (mut s, _d) = store();
        assert_eq!(s.apply(put("k", "v")), NodeReply::ok());
        assert_eq!(
            s.apply(NodeRequest::GetOne { key: "k".into() }),
            NodeReply::Value { key: "k".into(), value: "v".into() }
        );
    }

    #[test]
    fn missing_keys_are_not_found_and_delete_removes() {
        let (mut s, _d) = store();
        let miss = s.apply(NodeRequest::GetOne { key: "nope".into() });
        assert!(matches!(miss, NodeReply::Error { error: ErrorCode::NotFound, .. }));
        s.apply(put("k", "v"));
        assert_eq!(s.apply(NodeRequest::Delete { key: "k".into() }), NodeReply::ok());
        assert!(matches!(
            s.apply(NodeRequest::Delete { key: "k".into() }),
            NodeReply::Error { error: ErrorCode::NotFound, .. }
        ));
        assert!(s.is_empty());
    }

    #[test]
    fn get_all_lists_every_pair_in_key_order() {
        let (mut s, _d) = store();
        for k in ["b", "a", "c"] {
            s.apply(put(k, &format!("v{k}")));
        }
        let NodeReply::Collection { collection } = s.apply(NodeRequest::GetAll) else {
            panic!("GET_ALL answers a collection")
        };
        let keys: Vec<_> = collection.iter().map(|e| e.key.to_text_lossy()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(collection[0].value, Datum::from("va"));
    }

    #[test]
    fn batches_apply_whole_and_count() {
        let (mut s, _d) = store();
        let entries = (0..5).map(|i| Entry { key: format!("k{i}").into(), value: "v".into() }).collect();
        assert_eq!(s.apply(NodeRequest::PutBatch { entries, if_absent: false }), NodeReply::ok_count(5));
        // if_absent leaves existing keys alone.
        let entries =
            vec![Entry { key: "k0".into(), value: "new".into() }, Entry { key: "k9".into(), value: "new".into() }];
        assert_eq!(s.apply(NodeRequest::PutBatch { entries, if_absent: true }), NodeReply::ok_count(1));
        assert_eq!(
            s.apply(NodeRequest::GetOne { key: "k0".into() }),
            NodeReply::Value { key: "k0".into(), value: "v".into() }
        );
        s.apply(NodeRequest::Delete { key: "k9".into() });
        let keys = vec!["k1".into(), "k1".into(), "k3".into(), "missing".into()];
        assert_eq!(s.apply(NodeRequest::DeleteBatch { keys }), NodeReply::ok_count(2));
        assert_eq!(s.len(), 3);
        // One oversize entry rejects the whole batch.
        let entries = vec![
            Entry { key: "fine".into(), value: "v".into() },
            Entry { key: "big".into(), value: Datum(vec![0; shardscope_shared::protocol::MAX_VALUE + 1]) },
        ];
        let reply = s.apply(NodeRequest::PutBatch { entries, if_absent: false });
        assert!(matches!(reply, NodeReply::Error { error: ErrorCode::TooLarge, .. }));
        assert_eq!(s.len(), 3, "a rejected batch changes nothing");
    }

    #[test]
    fn scan_pages_through_keys_and_filters_by_hash_range() {
        let (mut s, _d) = store();
        for i in 0..25 {
            s.apply(put(&format!("k{i:02}"), "v"));
        }
        let mut cursor = None;
        let mut seen = Vec::new();
        loop {
            let NodeReply::Page { page, next } = s.apply(NodeRequest::Scan { cursor, limit: 10, ranges: None }) else {
                panic!("SCAN answers a page")
            };
            seen.extend(page.into_iter().map(|e| e.key.to_text_lossy()));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, (0..25).map(|i| format!("k{i:02}")).collect::<Vec<_>>());
        // Only keys whose hash is in the lower half.
        let half = vec![(0, u64::MAX / 2)];
        let NodeReply::Page { page, .. } = s.apply(NodeRequest::Scan { cursor: None, limit: 100, ranges: Some(half) })
        else {
            panic!("SCAN answers a page")
        };
        let want = (0..25).filter(|i| key_hash(format!("k{i:02}").as_bytes()) <= u64::MAX / 2).count();
        assert_eq!(page.len(), want);
        assert!(page.iter().all(|e| key_hash(e.key.as_bytes()) <= u64::MAX / 2));
        // Unsorted, overlapping and touching ranges mean their union.
        let q = u64::MAX / 4;
        let messy = vec![(3 * q, u64::MAX), (q / 2, q), (0, q / 3), (q / 4, q / 2 - 1), (3 * q + 5, 3 * q + 9)];
        let in_union = |h: u64| messy.iter().any(|&(lo, hi)| lo <= h && h <= hi);
        let NodeReply::Page { page, .. } =
            s.apply(NodeRequest::Scan { cursor: None, limit: 100, ranges: Some(messy.clone()) })
        else {
            panic!("SCAN answers a page")
        };
        let got: Vec<String> = page.iter().map(|e| e.key.to_text_lossy()).collect();
        let want: Vec<String> =
            (0..25).map(|i| format!("k{i:02}")).filter(|k| in_union(key_hash(k.as_bytes()))).collect();
        assert_eq!(got, want);
        assert_eq!(merge_ranges(&messy), vec![(0, q), (3 * q, u64::MAX)]);
    }

    #[test]
    fn stats_count_keys_bytes_and_ops() {
        let (mut s, _d) = store();
        s.apply(put("ab", "xyz"));
        s.apply(put("ab", "x"));
        s.apply(NodeRequest::GetOne { key: "zz".into() });
        let NodeReply::Stats { stats } = s.apply(NodeRequest::Stats) else { panic!("STATS answers stats") };
        assert_eq!((stats.keys, stats.bytes, stats.ops), (1, 3, 4));
    }

    #[test]
    fn committed_writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), FsyncPolicy::Always).unwrap();
        s.apply(put("a", "1"));
        s.apply(put("b", "2"));
        s.apply(NodeRequest::Delete { key: "a".into() });
        s.commit().unwrap();
        drop(s);
        let mut s = Store::open(dir.path(), FsyncPolicy::Always).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.apply(NodeRequest::GetOne { key: "b".into() }),
            NodeReply::Value { key: "b".into(), value: "2".into() }
        );
        assert_eq!(s.stats().bytes, 2);
    }
}
