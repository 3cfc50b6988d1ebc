//! Recovery from a log on disk (`node/src/wal.rs` through `Store::open`):
//! arbitrary bytes as a node's `wal.log`. With an odd first byte the input
//! is taken as records whose checksums the target fixes up, so that the
//! fuzzer reaches the payload decoder and not only the checksum test.
//!
//! Checks: never a panic; a refusal is the `Corrupt` error (naming the
//! offset) and leaves the file as it was; an open that succeeds leaves the
//! file a prefix of what it was (a torn tail cut off), reopening gives the
//! same records and leaves the file alone, and a write made after recovery
//! is there after another reopen (the log was cut where it had to be).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shardscope_fuzz::{dump, scratch_dir};
use shardscope_node::store::Store;
use shardscope_node::wal::{Corrupt, FsyncPolicy};
use shardscope_shared::protocol::{Datum, NodeReply, NodeRequest};

/// No tombstone expires between the opens.
const GRACE: Duration = Duration::from_millis(u64::MAX);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, log)) = data.split_first() else { return };
    let mut log = log.to_vec();
    if mode & 1 == 1 {
        fix_checksums(&mut log);
    }
    let dir = scratch_dir();
    let path = dir.path().join("wal.log");
    std::fs::write(&path, &log).unwrap();
    let open = || Store::open(dir.path(), FsyncPolicy::Never, GRACE);
    let mut store = match open() {
        Ok(store) => store,
        Err(e) => {
            let corrupt = e.get_ref().and_then(|inner| inner.downcast_ref::<Corrupt>());
            assert!(corrupt.is_some(), "a refusal that does not say where the log is corrupt: {e}");
            assert_eq!(std::fs::read(&path).unwrap(), log, "a refused log was changed");
            return;
        }
    };
    let kept = std::fs::read(&path).unwrap();
    assert!(log.starts_with(&kept), "recovery changed the log other than by cutting its tail");
    let records = dump(&mut store);
    drop(store);
    let mut store = open().expect("a recovered log opens again");
    assert_eq!(dump(&mut store), records, "replaying again gave other records");
    assert_eq!(std::fs::read(&path).unwrap(), kept, "replaying again changed the log");
    // A write after recovery survives a reopen.
    let key = Datum(b"written after recovery".to_vec());
    let put = NodeRequest::Put { key: key.clone(), value: Datum(b"v".to_vec()), version: None };
    assert_eq!(store.apply(put), NodeReply::ok());
    store.commit().unwrap();
    drop(store);
    let mut store = open().expect("the log opens after a write");
    let get = NodeRequest::GetOne { key, versioned: false };
    assert!(matches!(store.apply(get), NodeReply::Value { .. }), "a write after recovery was lost");
});

/// Walks the records (`len: u32 LE | crc: u32 LE | payload`) and writes each
/// one's correct checksum, as far as their lengths fit.
fn fix_checksums(log: &mut [u8]) {
    let mut at = 0;
    while at + 8 <= log.len() {
        let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        let Some(end) = (at + 8).checked_add(len).filter(|&end| end <= log.len()) else { return };
        let crc = crc32fast::hash(&log[at + 8..end]);
        log[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}
