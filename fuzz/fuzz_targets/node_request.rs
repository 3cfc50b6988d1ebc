//! The node's request path (`parse_request`, `validate`, `Store::apply`,
//! `Store::commit`), for a sequence of requests: each line of the input is
//! one request's bytes, applied to a store in a fresh directory, as
//! `server.rs`'s `serve_one` does.
//!
//! After every request, against the records read before it: counters match
//! the records; a rejected request (invalid, stale, not found, and so on)
//! changes nothing, but for a versioned DELETE's tombstone; an acknowledged
//! unversioned PUT is what GET_ONE returns, an acknowledged versioned one
//! holds its version; DELETE leaves a tombstone; PUT_BATCH keeps the newest
//! copy of each key and touches no other; DELETE_BATCH forgets exactly the
//! keys it counts; a version far ahead of the clock is refused; reads
//! (GET_ONE, GET_ALL, SCAN, STATS) answer exactly
//! from the records and change nothing. At the end the store is reopened
//! from its log and must hold the same records.
#![no_main]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shardscope_fuzz::{assert_counters, dump, scratch_dir};
use shardscope_node::store::Store;
use shardscope_node::wal::FsyncPolicy;
use shardscope_shared::hash::key_hash;
use shardscope_shared::protocol::{parse_request, Datum, Entry, ErrorCode, NodeReply, NodeRequest, Version};
use shardscope_shared::version::wall_millis;

/// No tombstone expires during a run, so reopening must give back every record.
const GRACE: Duration = Duration::from_millis(u64::MAX);

fuzz_target!(|data: &[u8]| {
    let dir = scratch_dir();
    let mut store = Store::open(dir.path(), FsyncPolicy::Never, GRACE).expect("a new store opens");
    for line in data.split(|&b| b == b'\n').take(64) {
        let Ok(req) = parse_request(line) else { continue };
        let before = dump(&mut store);
        let stats_before = store.stats();
        let reply = store.apply(req.clone());
        store.commit().expect("the log takes the writes");
        let after = dump(&mut store);
        let stats = store.stats();
        assert_counters(&after, &stats);
        assert_eq!(stats.log_bytes, std::fs::metadata(dir.path().join("wal.log")).unwrap().len());
        if req.validate().is_err() {
            assert!(matches!(reply, NodeReply::Error { .. }), "an invalid request was answered {reply:?}");
        }
        let tombstone_kept = matches!(req, NodeRequest::Delete { version: Some(_), .. });
        if matches!(reply, NodeReply::Error { .. }) && !tombstone_kept {
            assert_eq!(after, before, "{req:?} was refused ({reply:?}) but changed the records");
        }
        check(&req, &reply, &before, &after, &stats_before);
    }
    let want = dump(&mut store);
    drop(store);
    let mut again = Store::open(dir.path(), FsyncPolicy::Never, GRACE).expect("the store reopens from its own log");
    assert_eq!(dump(&mut again), want, "reopening changed the records");
});

/// Checks one reply, and the records after it, against the records before.
fn check(
    req: &NodeRequest,
    reply: &NodeReply,
    before: &[Entry],
    after: &[Entry],
    stats_before: &shardscope_shared::protocol::NodeStats,
) {
    let old: BTreeMap<&Datum, &Entry> = before.iter().map(|e| (&e.key, e)).collect();
    let new: BTreeMap<&Datum, &Entry> = after.iter().map(|e| (&e.key, e)).collect();
    let live = |key: &Datum| old.get(key).filter(|e| !e.deleted);
    let is_error = |code| matches!(reply, NodeReply::Error { error, .. } if *error == code);
    if req.validate().is_err() {
        return;
    }
    // A version far ahead of the node's clock is refused, and nothing changes.
    let given: Vec<Version> = match req {
        NodeRequest::Put { version, .. } | NodeRequest::Delete { version, .. } => version.iter().copied().collect(),
        NodeRequest::PutBatch { entries } => entries.iter().filter_map(|e| e.version).collect(),
        _ => Vec::new(),
    };
    if given.iter().any(|v| !v.plausible(wall_millis())) {
        assert!(is_error(ErrorCode::BadRequest), "a version from the far future was answered {reply:?}");
        assert_eq!(after, before, "a refused far-future version changed the records");
        return;
    }
    match req {
        NodeRequest::Put { key, value, version: None } => {
            assert_eq!(reply, &NodeReply::ok());
            let e = new[key];
            assert!(!e.deleted && &e.value == value, "GET after an acknowledged PUT does not give its value");
        }
        NodeRequest::Put { key, value, version: Some(v) } => {
            let ours = old.get(key).and_then(|e| e.version);
            if ours.is_some_and(|o| o > *v) {
                assert!(is_error(ErrorCode::Stale), "an older PUT was answered {reply:?}");
            } else {
                assert_eq!(reply, &NodeReply::ok());
                assert_eq!(new[key].version, Some(*v));
                if ours != Some(*v) {
                    assert!(!new[key].deleted && &new[key].value == value, "an acknowledged PUT's value is not there");
                }
            }
        }
        NodeRequest::GetOne { key, versioned } => {
            assert_eq!(after, before);
            match (live(key), reply) {
                (Some(e), NodeReply::Value { key: k, value, version }) => {
                    assert_eq!((k, value), (key, &e.value));
                    assert_eq!(*version, if *versioned { e.version } else { None });
                }
                (None, NodeReply::Error { error: ErrorCode::NotFound, version, .. }) => {
                    let tomb = old.get(key).filter(|e| e.deleted && *versioned).and_then(|e| e.version);
                    assert_eq!(*version, tomb);
                }
                (e, r) => panic!("GET_ONE of {key:?} holding {e:?} answered {r:?}"),
            }
        }
        NodeRequest::GetAll => {
            let want: Vec<Entry> =
                before.iter().filter(|e| !e.deleted).map(|e| Entry::new(e.key.clone(), e.value.clone())).collect();
            assert_eq!(reply, &NodeReply::Collection { collection: want });
        }
        NodeRequest::Delete { key, version } => {
            let was_live = live(key).is_some();
            let ours = old.get(key).and_then(|e| e.version);
            let written = match version {
                None => was_live,
                Some(v) if ours.is_some_and(|o| o > *v) => {
                    assert!(is_error(ErrorCode::Stale), "an older DELETE was answered {reply:?}");
                    assert_eq!(after, before, "a stale DELETE changed the records");
                    return;
                }
                Some(v) => ours != Some(*v),
            };
            let acked = if was_live { reply == &NodeReply::ok() } else { is_error(ErrorCode::NotFound) };
            assert!(acked, "DELETE of {key:?} (live: {was_live}) answered {reply:?}");
            if written {
                assert!(new[key].deleted && new[key].value.is_empty(), "DELETE left no tombstone");
                if let Some(v) = version {
                    assert_eq!(new[key].version, Some(*v));
                }
            } else {
                assert_eq!(after, before);
            }
        }
        NodeRequest::PutBatch { entries } => {
            let NodeReply::Ok { count: Some(n), .. } = reply else { panic!("PUT_BATCH answered {reply:?}") };
            assert!(*n as usize <= entries.len());
            let mut newest: BTreeMap<&Datum, Version> = BTreeMap::new();
            for e in entries {
                if let Some(v) = e.version {
                    let top = newest.entry(&e.key).or_insert(v);
                    *top = (*top).max(v);
                }
            }
            for e in entries {
                let got = new.get(&e.key).and_then(|r| r.version);
                let floor = newest.get(&e.key).copied().max(old.get(&e.key).and_then(|r| r.version));
                assert!(got.is_some() && got >= floor, "PUT_BATCH left {:?} older than a copy it had", e.key);
            }
            let untouched = |rs: &[Entry]| -> Vec<Entry> {
                let batch: HashSet<&Datum> = entries.iter().map(|e| &e.key).collect();
                rs.iter().filter(|r| !batch.contains(&r.key)).cloned().collect()
            };
            assert_eq!(untouched(after), untouched(before), "PUT_BATCH changed keys not in it");
        }
        NodeRequest::DeleteBatch { keys } => {
            let doomed: HashSet<&Datum> = keys.iter().filter(|k| old.contains_key(k)).collect();
            assert_eq!(reply, &NodeReply::ok_count(doomed.len() as u64));
            let want: Vec<Entry> = before.iter().filter(|e| !doomed.contains(&e.key)).cloned().collect();
            assert_eq!(after, want, "DELETE_BATCH did not forget exactly its keys");
        }
        NodeRequest::Scan { cursor, limit, ranges, tombstones, prefix } => {
            assert_eq!(after, before);
            let prefix = prefix.as_ref().map_or(&[][..], Datum::as_bytes);
            let want: Vec<&Entry> = before
                .iter()
                .filter(|e| e.key.as_bytes().starts_with(prefix))
                .filter(|e| cursor.as_ref().is_none_or(|c| e.key > *c))
                .filter(|e| *tombstones || !e.deleted)
                .filter(|e| {
                    let h = key_hash(e.key.as_bytes());
                    ranges.as_ref().is_none_or(|rs| rs.iter().any(|&(lo, hi)| lo <= h && h <= hi))
                })
                .collect();
            let NodeReply::Page { page, next } = reply else { panic!("SCAN answered {reply:?}") };
            assert!(!page.is_empty() || want.is_empty(), "an empty page with keys to list");
            assert!(page.len() <= *limit && page.len() <= want.len());
            assert_eq!(page.iter().collect::<Vec<_>>(), want[..page.len()], "SCAN listed other records than it holds");
            let more = page.len() < want.len();
            assert_eq!(next.as_ref(), if more { page.last().map(|e| &e.key) } else { None }, "SCAN's cursor");
        }
        NodeRequest::Stats => {
            let NodeReply::Stats { stats } = reply else { panic!("STATS answered {reply:?}") };
            assert_eq!(
                (stats.keys, stats.bytes, stats.tombstones),
                (stats_before.keys, stats_before.bytes, stats_before.tombstones)
            );
            assert_eq!(stats.ops, stats_before.ops + 1);
        }
    }
}
