//! The node's key-value map, made durable by the write-ahead log, and the
//! semantics of every node operation: [`Store::apply`] turns a request into
//! a reply (a rejected request changes nothing), [`Store::commit`] makes the
//! writes so far durable before they are acknowledged.
//!
//! Every key holds a [`Record`]: its value and the [`Version`] of the write
//! that put it there, or a tombstone (deleted, with its version). A
//! versioned write never replaces a newer record, so copies meeting from
//! either side of a rebalance always leave the newest. Tombstones are kept
//! for the grace period, long enough for any older copy still on its way to
//! meet them, then forgotten.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use shardscope_shared::hash::key_hash;
use shardscope_shared::protocol::{
    collection_json_len, Datum, Entry, ErrorCode, NodeReply, NodeRequest, NodeStats, MAX_GET_ALL_BYTES, MAX_SCAN_BYTES,
};
use shardscope_shared::version::{wall_millis, Clock, Version};

use crate::wal::{FsyncPolicy, Op, Wal};

/// How long tombstones are kept by default: a day.
pub const DEFAULT_TOMBSTONE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What a key holds: a value (`Some`) or a tombstone (`None`), and the
/// version of the write that left it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    version: Version,
    value: Option<Vec<u8>>,
}

pub struct Store {
    map: BTreeMap<Vec<u8>, Record>,
    /// Bytes of live keys and values.
    bytes: u64,
    tombstones: u64,
    /// Bytes of tombstoned keys.
    tombstone_bytes: u64,
    ops: u64,
    wal: Wal,
    /// Versions this node hands out to unversioned writes (the seeds'
    /// plain `PUT` and `DELETE`), above every version it has stored.
    clock: Clock,
    grace: Duration,
    last_purge: Instant,
}

impl Store {
    /// Opens the store in `dir`, recovering everything the log holds.
    /// Tombstones older than `grace` are forgotten.
    pub fn open(dir: &Path, policy: FsyncPolicy, grace: Duration) -> std::io::Result<Store> {
        let mut map = BTreeMap::new();
        let wal = Wal::open(dir, policy, |op| match op {
            Op::Put { key, version, value } => {
                map.insert(key, Record { version, value: Some(value) });
            }
            Op::Tombstone { key, version } => {
                map.insert(key, Record { version, value: None });
            }
            Op::Forget(key) => {
                map.remove(&key);
            }
        })?;
        let clock = Clock::new(random_writer());
        let mut store = Store {
            map: BTreeMap::new(),
            bytes: 0,
            tombstones: 0,
            tombstone_bytes: 0,
            ops: 0,
            wal,
            clock,
            grace,
            last_purge: Instant::now(),
        };
        for (k, r) in &map {
            store.clock.observe(r.version);
            store.count(k, r, 1);
        }
        store.map = map;
        store.purge_tombstones(wall_millis());
        Ok(store)
    }

    /// Live keys (tombstones aside).
    pub fn len(&self) -> usize {
        self.map.len() - self.tombstones as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the log and syncs as the policy says; call before
    /// acknowledging the writes applied since the last commit.
    pub fn commit(&mut self) -> std::io::Result<()> {
        self.wal.commit()?;
        if self.wal.wants_rewrite(self.bytes + self.tombstone_bytes) {
            self.wal.rewrite(self.map.iter().map(|(k, r)| match &r.value {
                Some(v) => Op::Put { key: k.clone(), version: r.version, value: v.clone() },
                None => Op::Tombstone { key: k.clone(), version: r.version },
            }))?;
        }
        Ok(())
    }

    /// How long until a periodic fsync is due, if one is pending.
    pub fn sync_due_in(&self) -> Option<Duration> {
        self.wal.sync_due_in()
    }

    /// Runs a due periodic fsync.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.wal.sync()
    }

    /// Forgets tombstones past the grace period, at most once a minute (or
    /// once a grace period, when that is shorter).
    pub fn maintain(&mut self) {
        if self.last_purge.elapsed() >= self.grace.min(Duration::from_secs(60)) {
            self.purge_tombstones(wall_millis());
        }
    }

    /// Forgets the tombstones written more than the grace period before
    /// `now_millis`. Only memory changes: the log still holds them until it
    /// is rewritten, and replay forgets them again.
    fn purge_tombstones(&mut self, now_millis: u64) {
        self.last_purge = Instant::now();
        if self.tombstones == 0 {
            return;
        }
        let horizon = now_millis.saturating_sub(self.grace.as_millis() as u64);
        let (mut gone, mut gone_bytes) = (0, 0);
        self.map.retain(|k, r| {
            let expired = r.value.is_none() && r.version.millis() < horizon;
            if expired {
                gone += 1;
                gone_bytes += k.len() as u64;
            }
            !expired
        });
        self.tombstones -= gone;
        self.tombstone_bytes -= gone_bytes;
    }

    /// Carries out one request and returns its reply. Writes are logged (to
    /// be made durable by [`Store::commit`]) before they touch the map.
    pub fn apply(&mut self, req: NodeRequest) -> NodeReply {
        self.ops += 1;
        if let Err(reply) = req.validate() {
            return reply;
        }
        match req {
            NodeRequest::Put { key, value, version } => {
                let version = match self.admit(&key, version) {
                    Ok(Some(v)) => v,
                    Ok(None) => return NodeReply::ok(),
                    Err(stale) => return stale,
                };
                self.write(vec![Op::Put { key: key.0, version, value: value.0 }]);
                NodeReply::ok()
            }
            NodeRequest::GetOne { key, versioned } => match self.map.get(key.as_bytes()) {
                Some(Record { value: Some(v), version }) => {
                    NodeReply::Value { value: Datum(v.clone()), version: versioned.then_some(*version), key }
                }
                Some(Record { value: None, version }) => {
                    let mut reply = not_found(&key);
                    if let (true, NodeReply::Error { version: v, .. }) = (versioned, &mut reply) {
                        *v = Some(*version);
                    }
                    reply
                }
                None => not_found(&key),
            },
            NodeRequest::GetAll => {
                // Measured before it is built: a store too big for one reply costs nothing.
                let live = self.map.iter().filter_map(|(k, r)| r.value.as_deref().map(|v| (k.as_slice(), v)));
                if collection_json_len(live, MAX_GET_ALL_BYTES).is_none() {
                    let message = format!(
                        "GET_ALL's reply would pass {MAX_GET_ALL_BYTES} bytes ({} keys, {} bytes stored); \
                         page through the keys with SCAN ({{\"op\":\"SCAN\",\"limit\":1000}}, then \"cursor\": the reply's \"next\")",
                        self.len(),
                        self.bytes
                    );
                    return NodeReply::error(ErrorCode::TooLarge, message);
                }
                let all = Listing { limit: usize::MAX, max_bytes: usize::MAX, ..Listing::default() };
                NodeReply::Collection { collection: self.entries(Bound::Unbounded, &all).0 }
            }
            NodeRequest::Delete { key, version } => {
                let live = self.map.get(key.as_bytes()).is_some_and(|r| r.value.is_some());
                if version.is_none() && !live {
                    return not_found(&key);
                }
                let version = match self.admit(&key, version) {
                    Ok(Some(v)) => v,
                    Ok(None) => return if live { NodeReply::ok() } else { not_found(&key) },
                    Err(stale) => return stale,
                };
                self.write(vec![Op::Tombstone { key: key.0.clone(), version }]);
                if live {
                    NodeReply::ok()
                } else {
                    not_found(&key)
                }
            }
            NodeRequest::PutBatch { entries } => {
                if let Some(Err(refused)) = entries.iter().filter_map(|e| e.version).map(plausible).find(Result::is_err)
                {
                    return refused;
                }
                // Newest wins, against the map and within the batch.
                let mut newest: HashMap<Vec<u8>, (Version, Op)> = HashMap::new();
                for e in entries {
                    let version = e.version.unwrap_or_else(|| self.clock.tick(wall_millis()));
                    self.clock.observe(version);
                    let ours = newest.get(e.key.as_bytes()).map(|(v, _)| *v).or_else(|| self.version_of(&e.key));
                    if ours.is_some_and(|v| v >= version) {
                        continue;
                    }
                    let op = if e.deleted {
                        Op::Tombstone { key: e.key.0.clone(), version }
                    } else {
                        Op::Put { key: e.key.0.clone(), version, value: e.value.0 }
                    };
                    newest.insert(e.key.0, (version, op));
                }
                let ops: Vec<Op> = newest.into_values().map(|(_, op)| op).collect();
                let n = ops.len() as u64;
                self.write(ops);
                NodeReply::ok_count(n)
            }
            NodeRequest::DeleteBatch { keys } => {
                let mut seen = std::collections::HashSet::new();
                let ops: Vec<Op> = keys
                    .into_iter()
                    .filter(|k| self.map.contains_key(k.as_bytes()) && seen.insert(k.0.clone()))
                    .map(|k| Op::Forget(k.0))
                    .collect();
                let n = ops.len() as u64;
                self.write(ops);
                NodeReply::ok_count(n)
            }
            NodeRequest::Scan { cursor, limit, ranges, tombstones, prefix } => {
                let prefix = prefix.map(|p| p.0).unwrap_or_default();
                // After the cursor, and from the prefix on.
                let start = match &cursor {
                    Some(c) if c.as_bytes() >= prefix.as_slice() => Bound::Excluded(c.as_bytes()),
                    _ => Bound::Included(prefix.as_slice()),
                };
                let listing = Listing {
                    ranges: ranges.as_deref().map(merge_ranges),
                    prefix: &prefix,
                    limit,
                    max_bytes: MAX_SCAN_BYTES,
                    versions: true,
                    tombstones,
                };
                let (page, more) = self.entries(start, &listing);
                let next = if more { page.last().map(|e| e.key.clone()) } else { None };
                NodeReply::Page { page, next }
            }
            NodeRequest::Stats => NodeReply::Stats { stats: self.stats() },
        }
    }

    pub fn stats(&self) -> NodeStats {
        NodeStats {
            keys: self.len() as u64,
            bytes: self.bytes,
            ops: self.ops,
            log_bytes: self.wal.size(),
            tombstones: self.tombstones,
            max_version: self.clock.latest(),
        }
    }

    fn version_of(&self, key: &Datum) -> Option<Version> {
        self.map.get(key.as_bytes()).map(|r| r.version)
    }

    /// The version a single-key write goes in at: the node's own for an
    /// unversioned write, else the one given. `Ok(None)` when the key
    /// already holds this very write (a retry), `Err(stale)` when it holds
    /// a newer one.
    fn admit(&mut self, key: &Datum, given: Option<Version>) -> Result<Option<Version>, NodeReply> {
        let Some(version) = given else { return Ok(Some(self.clock.tick(wall_millis()))) };
        plausible(version)?;
        self.clock.observe(version);
        match self.version_of(key) {
            Some(ours) if ours == version => Ok(None),
            Some(ours) if ours > version => Err(NodeReply::Error {
                error: ErrorCode::Stale,
                message: format!("key {:?} holds a newer write ({ours} > {version})", key.to_text_lossy()),
                version: Some(ours),
            }),
            _ => Ok(Some(version)),
        }
    }

    /// Logs then applies one atomic batch.
    fn write(&mut self, ops: Vec<Op>) {
        self.wal.append(&ops);
        for op in ops {
            let (key, record) = match op {
                Op::Put { key, version, value } => (key, Some(Record { version, value: Some(value) })),
                Op::Tombstone { key, version } => (key, Some(Record { version, value: None })),
                Op::Forget(key) => (key, None),
            };
            if let Some(old) = self.map.remove(&key) {
                self.count(&key, &old, -1);
            }
            if let Some(record) = record {
                self.count(&key, &record, 1);
                self.map.insert(key, record);
            }
        }
    }

    /// Adds (`sign` 1) or takes away (-1) a record's share of the counters.
    fn count(&mut self, key: &[u8], r: &Record, sign: i64) {
        let apply = |n: &mut u64, by: u64| *n = if sign > 0 { *n + by } else { *n - by };
        match &r.value {
            Some(v) => apply(&mut self.bytes, (key.len() + v.len()) as u64),
            None => {
                apply(&mut self.tombstones, 1);
                apply(&mut self.tombstone_bytes, key.len() as u64);
            }
        }
    }

    /// Entries from `start` in key order, as `listing` says, and whether
    /// the listing stopped before the end (at its limit or its bytes).
    fn entries(&self, start: Bound<&[u8]>, listing: &Listing) -> (Vec<Entry>, bool) {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let candidates = self
            .map
            .range::<[u8], _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(listing.prefix))
            .filter(|(_, r)| listing.tombstones || r.value.is_some())
            .filter(|(k, _)| {
                listing.ranges.as_deref().is_none_or(|rs| {
                    // Sorted and disjoint: the one range that can hold h
                    // is the last starting at or below it.
                    let h = key_hash(k);
                    let i = rs.partition_point(|&(lo, _)| lo <= h);
                    i > 0 && h <= rs[i - 1].1
                })
            });
        for (k, r) in candidates {
            if out.len() == listing.limit || (bytes >= listing.max_bytes && !out.is_empty()) {
                return (out, true);
            }
            let value = r.value.clone().unwrap_or_default();
            bytes = bytes.saturating_add(k.len() + value.len());
            out.push(Entry {
                key: Datum(k.clone()),
                value: Datum(value),
                version: listing.versions.then_some(r.version),
                deleted: r.value.is_none(),
            });
        }
        (out, false)
    }
}

/// What [`Store::entries`] lists: keys whose hash lies in `ranges` (sorted,
/// disjoint) when given, starting with `prefix`, at most `limit` of them and
/// about `max_bytes`, with versions and tombstones when asked.
#[derive(Default)]
struct Listing<'a> {
    ranges: Option<Vec<(u64, u64)>>,
    prefix: &'a [u8],
    limit: usize,
    max_bytes: usize,
    versions: bool,
    tombstones: bool,
}

/// A writer id for this process's own versions: random, so two nodes (or a
/// node and a gateway) practically never share one.
fn random_writer() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish() as u32
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

/// A version a client gave, refused when it is far ahead of this node's
/// clock: taken, it would make every later write to the key stale and drag
/// every clock that meets it.
fn plausible(version: Version) -> Result<(), NodeReply> {
    if version.plausible(wall_millis()) {
        return Ok(());
    }
    let message = format!(
        "version {version} is more than {} s ahead of this node's clock",
        shardscope_shared::version::MAX_AHEAD_MILLIS / 1000
    );
    Err(NodeReply::error(ErrorCode::BadRequest, message))
}

fn not_found(key: &Datum) -> NodeReply {
    NodeReply::error(ErrorCode::NotFound, format!("key {:?} not found", key.to_text_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Store::open(dir.path(), FsyncPolicy::Always, DEFAULT_TOMBSTONE_GRACE).unwrap(), dir)
    }

    fn put(k: &str, v: &str) -> NodeRequest {
        NodeRequest::Put { key: k.into(), value: v.into(), version: None }
    }

    fn vput(k: &str, v: &str, hlc: u64) -> NodeRequest {
        NodeRequest::Put { key: k.into(), value: v.into(), version: Some(ver(hlc)) }
    }

    /// A clock reading `ms` ahead of now (within what a node accepts).
    fn ahead(ms: u64) -> u64 {
        (wall_millis() + ms) << 16
    }

    fn ver(hlc: u64) -> Version {
        Version { hlc, writer: 1 }
    }

    fn get(k: &str) -> NodeRequest {
        NodeRequest::GetOne { key: k.into(), versioned: false }
    }

    fn value(k: &str, v: &str) -> NodeReply {
        NodeReply::Value { key: k.into(), value: v.into(), version: None }
    }

    fn is(reply: &NodeReply, code: ErrorCode) -> bool {
        matches!(reply, NodeReply::Error { error, .. } if *error == code)
    }

    fn scan_all(s: &mut Store, tombstones: bool) -> Vec<Entry> {
        match s.apply(NodeRequest::Scan { cursor: None, limit: 1000, ranges: None, tombstones, prefix: None }) {
            NodeReply::Page { page, .. } => page,
            other => panic!("SCAN answers a page, not {other:?}"),
        }
    }

    #[test]
    fn put_then_get_one_returns_the_value() {
        let (mut s, _d) = store();
        assert_eq!(s.apply(put("k", "v")), NodeReply::ok());
        assert_eq!(s.apply(get("k")), value("k", "v"));
    }

    #[test]
    fn missing_keys_are_not_found_and_delete_removes() {
        let (mut s, _d) = store();
        assert!(is(&s.apply(get("nope")), ErrorCode::NotFound));
        s.apply(put("k", "v"));
        assert_eq!(s.apply(NodeRequest::Delete { key: "k".into(), version: None }), NodeReply::ok());
        assert!(is(&s.apply(NodeRequest::Delete { key: "k".into(), version: None }), ErrorCode::NotFound));
        assert!(is(&s.apply(get("k")), ErrorCode::NotFound));
        assert!(s.is_empty());
        assert_eq!(s.stats().tombstones, 1);
    }

    #[test]
    fn get_all_lists_every_live_pair_in_key_order_without_versions() {
        let (mut s, _d) = store();
        for k in ["b", "a", "c", "d"] {
            s.apply(put(k, &format!("v{k}")));
        }
        s.apply(NodeRequest::Delete { key: "d".into(), version: None });
        let NodeReply::Collection { collection } = s.apply(NodeRequest::GetAll) else {
            panic!("GET_ALL answers a collection")
        };
        assert_eq!(collection, vec![Entry::new("a", "va"), Entry::new("b", "vb"), Entry::new("c", "vc")]);
    }

    #[test]
    fn get_all_answers_up_to_its_byte_limit_and_too_large_past_it() {
        let (mut s, _d) = store();
        // Four values that leave the reply exactly at the limit; tombstones
        // do not count.
        let entry = |k: &str, v: &str| serde_json::to_vec(&Entry::new(k, v)).unwrap().len();
        let fixed = r#"{"collection":[]}"#.len() + 3 + 4 * entry("k0", "");
        let each = (MAX_GET_ALL_BYTES - fixed) / 4;
        let last = MAX_GET_ALL_BYTES - fixed - 3 * each;
        for (i, len) in [each, each, each, last].into_iter().enumerate() {
            s.apply(put(&format!("k{i}"), &"x".repeat(len)));
        }
        s.apply(put("gone", "y"));
        s.apply(NodeRequest::Delete { key: "gone".into(), version: None });
        let reply = s.apply(NodeRequest::GetAll);
        assert!(matches!(&reply, NodeReply::Collection { collection } if collection.len() == 4));
        assert_eq!(serde_json::to_vec(&reply).unwrap().len(), MAX_GET_ALL_BYTES);
        // One byte more (an escaped quote is two) is refused, and says how to page.
        s.apply(put("k0", &format!("\"{}", "x".repeat(each - 1))));
        let NodeReply::Error { error: ErrorCode::TooLarge, message, .. } = s.apply(NodeRequest::GetAll) else {
            panic!("a store past the limit is too large for GET_ALL")
        };
        assert!(message.contains("SCAN"), "{message}");
        // Paging through it with SCAN still works.
        let (mut cursor, mut keys) = (None, 0);
        loop {
            let scan = NodeRequest::Scan { cursor, limit: 1000, ranges: None, tombstones: false, prefix: None };
            let NodeReply::Page { page, next } = s.apply(scan) else { panic!("SCAN answers a page") };
            keys += page.len();
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(keys, 4);
    }

    #[test]
    fn unversioned_writes_get_versions_that_only_go_up() {
        let (mut s, _d) = store();
        let far = ahead(30 * 60_000);
        s.apply(vput("k", "far", far));
        // A seed's plain PUT after a versioned one still wins: the node's
        // clock has passed every version it has seen.
        s.apply(put("k", "plain"));
        let reply = s.apply(NodeRequest::GetOne { key: "k".into(), versioned: true });
        let NodeReply::Value { value, version: Some(v), .. } = reply else { panic!("{reply:?}") };
        assert_eq!(value, Datum::from("plain"));
        assert!(v.hlc > far);
        assert!(s.stats().max_version >= v);
    }

    #[test]
    fn a_versioned_write_never_replaces_a_newer_one() {
        let (mut s, _d) = store();
        assert_eq!(s.apply(vput("k", "new", 20)), NodeReply::ok());
        let stale = s.apply(vput("k", "old", 10));
        assert!(matches!(stale, NodeReply::Error { error: ErrorCode::Stale, version: Some(v), .. } if v == ver(20)));
        // The same write again (a retry) is fine and changes nothing.
        assert_eq!(s.apply(vput("k", "new", 20)), NodeReply::ok());
        assert_eq!(s.apply(get("k")), value("k", "new"));
        // An older delete is refused too; a newer one leaves a tombstone
        // that a versioned read reports.
        assert!(is(&s.apply(NodeRequest::Delete { key: "k".into(), version: Some(ver(15)) }), ErrorCode::Stale));
        assert_eq!(s.apply(NodeRequest::Delete { key: "k".into(), version: Some(ver(30)) }), NodeReply::ok());
        let reply = s.apply(NodeRequest::GetOne { key: "k".into(), versioned: true });
        assert!(matches!(reply, NodeReply::Error { error: ErrorCode::NotFound, version: Some(v), .. } if v == ver(30)));
        assert!(is(&s.apply(vput("k", "older than the delete", 25)), ErrorCode::Stale));
    }

    #[test]
    fn a_version_from_far_in_the_future_is_refused_and_changes_nothing() {
        let (mut s, _d) = store();
        let forged = Version { hlc: u64::MAX, writer: u32::MAX };
        let put = NodeRequest::Put { key: "k".into(), value: "x".into(), version: Some(forged) };
        assert!(is(&s.apply(put), ErrorCode::BadRequest));
        let batch = NodeRequest::PutBatch {
            entries: vec![Entry::new("a", "1"), Entry { version: Some(forged), ..Entry::new("b", "2") }],
        };
        assert!(is(&s.apply(batch), ErrorCode::BadRequest));
        assert!(is(&s.apply(NodeRequest::Delete { key: "k".into(), version: Some(forged) }), ErrorCode::BadRequest));
        let NodeReply::Stats { stats } = s.apply(NodeRequest::Stats) else { panic!() };
        assert_eq!((stats.keys, stats.tombstones), (0, 0));
        assert!(stats.max_version.hlc < u64::MAX >> 1, "{}", stats.max_version);
        // Plain writes go on being versioned, each above the last.
        assert_eq!(s.apply(NodeRequest::Put { key: "k".into(), value: "1".into(), version: None }), NodeReply::ok());
        assert_eq!(s.apply(NodeRequest::Put { key: "k".into(), value: "2".into(), version: None }), NodeReply::ok());
        assert_eq!(s.apply(get("k")), value("k", "2"));
    }

    #[test]
    fn a_versioned_delete_of_an_absent_key_still_leaves_a_tombstone() {
        let (mut s, _d) = store();
        assert!(is(&s.apply(NodeRequest::Delete { key: "k".into(), version: Some(ver(9)) }), ErrorCode::NotFound));
        let copy = Entry { version: Some(ver(5)), ..Entry::new("k", "resurrected?") };
        assert_eq!(s.apply(NodeRequest::PutBatch { entries: vec![copy] }), NodeReply::ok_count(0));
        assert!(is(&s.apply(get("k")), ErrorCode::NotFound));
    }

    #[test]
    fn batches_keep_the_newest_copy_and_apply_whole() {
        let (mut s, _d) = store();
        s.apply(vput("a", "a20", 20));
        s.apply(vput("b", "b20", 20));
        let entries = vec![
            Entry { version: Some(ver(10)), ..Entry::new("a", "a10") }, // older: skipped
            Entry { version: Some(ver(30)), ..Entry::new("b", "b30") }, // newer: taken
            Entry { version: Some(ver(40)), ..Entry::new("c", "c40") }, // new key
            Entry { version: Some(ver(35)), ..Entry::new("c", "c35") }, // older in the same batch
            Entry { version: Some(ver(50)), deleted: true, ..Entry::new("d", "") },
        ];
        assert_eq!(s.apply(NodeRequest::PutBatch { entries }), NodeReply::ok_count(3));
        assert_eq!(s.apply(get("a")), value("a", "a20"));
        assert_eq!(s.apply(get("b")), value("b", "b30"));
        assert_eq!(s.apply(get("c")), value("c", "c40"));
        let all = scan_all(&mut s, true);
        assert_eq!(
            all.iter().map(|e| (e.key.to_text_lossy(), e.deleted)).collect::<Vec<_>>(),
            [("a".into(), false), ("b".into(), false), ("c".into(), false), ("d".into(), true)]
        );
        assert_eq!(all[1].version, Some(ver(30)));
        assert_eq!(scan_all(&mut s, false).len(), 3);
        // DELETE_BATCH forgets values and tombstones alike.
        let keys = vec!["a".into(), "a".into(), "d".into(), "missing".into()];
        assert_eq!(s.apply(NodeRequest::DeleteBatch { keys }), NodeReply::ok_count(2));
        assert_eq!(scan_all(&mut s, true).len(), 2);
        // One oversize entry rejects the whole batch.
        let entries = vec![
            Entry::new("fine", "v"),
            Entry::new("big", Datum(vec![0; shardscope_shared::protocol::MAX_VALUE + 1])),
        ];
        assert!(is(&s.apply(NodeRequest::PutBatch { entries }), ErrorCode::TooLarge));
        assert_eq!(s.len(), 2, "a rejected batch changes nothing");
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
            let scan = NodeRequest::Scan { cursor, limit: 10, ranges: None, tombstones: false, prefix: None };
            let NodeReply::Page { page, next } = s.apply(scan) else { panic!("SCAN answers a page") };
            assert!(page.iter().all(|e| e.version.is_some()), "SCAN entries carry versions");
            seen.extend(page.into_iter().map(|e| e.key.to_text_lossy()));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, (0..25).map(|i| format!("k{i:02}")).collect::<Vec<_>>());
        // Only keys whose hash is in the lower half.
        let half = vec![(0, u64::MAX / 2)];
        let scan = NodeRequest::Scan { cursor: None, limit: 100, ranges: Some(half), tombstones: false, prefix: None };
        let NodeReply::Page { page, .. } = s.apply(scan) else { panic!("SCAN answers a page") };
        let want = (0..25).filter(|i| key_hash(format!("k{i:02}").as_bytes()) <= u64::MAX / 2).count();
        assert_eq!(page.len(), want);
        assert!(page.iter().all(|e| key_hash(e.key.as_bytes()) <= u64::MAX / 2));
        // Unsorted, overlapping and touching ranges mean their union.
        let q = u64::MAX / 4;
        let messy = vec![(3 * q, u64::MAX), (q / 2, q), (0, q / 3), (q / 4, q / 2 - 1), (3 * q + 5, 3 * q + 9)];
        let in_union = |h: u64| messy.iter().any(|&(lo, hi)| lo <= h && h <= hi);
        let scan = NodeRequest::Scan {
            cursor: None,
            limit: 100,
            ranges: Some(messy.clone()),
            tombstones: false,
            prefix: None,
        };
        let NodeReply::Page { page, .. } = s.apply(scan) else { panic!("SCAN answers a page") };
        let got: Vec<String> = page.iter().map(|e| e.key.to_text_lossy()).collect();
        let want: Vec<String> =
            (0..25).map(|i| format!("k{i:02}")).filter(|k| in_union(key_hash(k.as_bytes()))).collect();
        assert_eq!(got, want);
        assert_eq!(merge_ranges(&messy), vec![(0, q), (3 * q, u64::MAX)]);
    }

    #[test]
    fn scan_takes_a_prefix_and_ends_pages_by_bytes() {
        let (mut s, _d) = store();
        for k in ["a", "user:1", "user:2", "user:3", "v"] {
            s.apply(put(k, "x"));
        }
        let scan = |cursor: Option<&str>, limit| NodeRequest::Scan {
            cursor: cursor.map(Datum::from),
            limit,
            ranges: None,
            tombstones: false,
            prefix: Some("user:".into()),
        };
        let NodeReply::Page { page, next } = s.apply(scan(None, 2)) else { panic!("a page") };
        assert_eq!(page.iter().map(|e| e.key.to_text_lossy()).collect::<Vec<_>>(), ["user:1", "user:2"]);
        assert_eq!(next, Some("user:2".into()));
        let NodeReply::Page { page, next } = s.apply(scan(Some("user:2"), 2)) else { panic!("a page") };
        assert_eq!((page.len(), next), (1, None), "the prefix ends the scan");
        // Big values: a page stops at the byte bound, whatever the limit.
        let big = "x".repeat(MAX_SCAN_BYTES / 3 + 1);
        for i in 0..5 {
            s.apply(put(&format!("big{i}"), &big));
        }
        let scan =
            NodeRequest::Scan { cursor: None, limit: 100, ranges: None, tombstones: false, prefix: Some("big".into()) };
        let NodeReply::Page { page, next } = s.apply(scan) else { panic!("a page") };
        assert_eq!((page.len(), next), (3, Some("big2".into())));
    }

    #[test]
    fn stats_count_keys_bytes_tombstones_and_ops() {
        let (mut s, _d) = store();
        s.apply(put("ab", "xyz"));
        s.apply(put("ab", "x"));
        s.apply(put("gone", "x"));
        s.apply(NodeRequest::Delete { key: "gone".into(), version: None });
        s.apply(get("zz"));
        let NodeReply::Stats { stats } = s.apply(NodeRequest::Stats) else { panic!("STATS answers stats") };
        assert_eq!((stats.keys, stats.bytes, stats.tombstones, stats.ops), (1, 3, 1, 6));
    }

    #[test]
    fn tombstones_past_the_grace_period_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), FsyncPolicy::Always, Duration::from_secs(60)).unwrap();
        let now = wall_millis();
        let at = |ms: u64| Some(Version { hlc: ms << 16, writer: 1 });
        s.apply(NodeRequest::Delete { key: "old".into(), version: at(now - 120_000) });
        s.apply(NodeRequest::Delete { key: "recent".into(), version: at(now - 1_000) });
        assert_eq!(s.stats().tombstones, 2);
        s.purge_tombstones(now);
        let left: Vec<String> = scan_all(&mut s, true).iter().map(|e| e.key.to_text_lossy()).collect();
        assert_eq!(left, ["recent"]);
        // Replay forgets the expired one again.
        s.commit().unwrap();
        drop(s);
        let mut s = Store::open(dir.path(), FsyncPolicy::Always, Duration::from_secs(60)).unwrap();
        assert_eq!(scan_all(&mut s, true).len(), 1);
    }

    #[test]
    fn committed_writes_and_versions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), FsyncPolicy::Always, DEFAULT_TOMBSTONE_GRACE).unwrap();
        s.apply(put("a", "1"));
        let far = ahead(10 * 60_000);
        s.apply(vput("b", "2", far));
        s.apply(NodeRequest::Delete { key: "a".into(), version: None });
        s.commit().unwrap();
        let before = scan_all(&mut s, true);
        drop(s);
        let mut s = Store::open(dir.path(), FsyncPolicy::Always, DEFAULT_TOMBSTONE_GRACE).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(scan_all(&mut s, true), before);
        assert_eq!(s.stats().bytes, 2);
        // The clock starts above what was stored.
        assert!(s.stats().max_version.hlc >= far);
        assert!(is(&s.apply(vput("b", "older", 5)), ErrorCode::Stale));
    }
}
