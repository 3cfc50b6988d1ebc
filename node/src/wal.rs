//! The node's write-ahead log: an append-only file of checksummed records,
//! replayed on start (the Redis AOF model: the data lives in memory, the log
//! makes it durable).
//!
//! Record: `len: u32 LE | crc32(payload): u32 LE | payload`, and a payload
//! is a batch of operations applied atomically:
//! `count: u32 | (op: u8, klen: u32, key, ..)*` with op 3 = versioned put
//! (`hlc: u64, writer: u32, vlen: u32, value`), 4 = tombstone (`hlc: u64,
//! writer: u32`), 2 = forget (the key moved away; also the old log's
//! delete) and 1 = the old log's unversioned put (read as version zero, so
//! any versioned copy is newer). Every length is checked against what is
//! left before anything is allocated, and no record is ever written that
//! replay would refuse: a record holds at most one request's batch (under
//! the message limit) or, in a rewrite, about a megabyte of pairs.
//!
//! Replay tells a *torn tail* (the last record cut short by a crash
//! mid-append, or zeros a machine crash left after it), which it drops and
//! truncates as Redis does, from *corruption* before intact data (a bad
//! record with more after it), where it refuses to start with an error
//! naming the file and the offset rather than throw away acknowledged
//! writes. When the log grows well past the live data it is rewritten from
//! the map (write to a temp file, fsync, rename, fsync the directory).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shardscope_shared::version::Version;

/// When acknowledged writes reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync before every acknowledgement (concurrent requests share one:
    /// group commit). Survives process and machine crashes.
    Always,
    /// write(2) before every acknowledgement, fdatasync at most this often.
    /// Survives a process crash (`kill -9`); a machine crash can lose the
    /// last interval.
    Periodic(Duration),
    /// write(2) before every acknowledgement, never fdatasync. Survives a
    /// process crash; a machine crash loses what the OS had not written.
    Never,
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncPolicy::Always => write!(f, "always"),
            FsyncPolicy::Never => write!(f, "never"),
            FsyncPolicy::Periodic(d) => write!(f, "periodic:{}ms", d.as_millis()),
        }
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    /// `always`, `never`, or `periodic:10ms` (any Consul-style duration).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => s
                .strip_prefix("periodic:")
                .and_then(shardscope_consul::api::parse_duration)
                .map(FsyncPolicy::Periodic)
                .ok_or_else(|| format!("unknown fsync policy {s:?}: use always, never or periodic:10ms")),
        }
    }
}

/// One logged operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The key holds `value`, written at `version`.
    Put { key: Vec<u8>, version: Version, value: Vec<u8> },
    /// The key was deleted at `version`.
    Tombstone { key: Vec<u8>, version: Version },
    /// The key (value or tombstone) is no longer kept here.
    Forget(Vec<u8>),
}

const LEGACY_PUT: u8 = 1;
const FORGET: u8 = 2;
const PUT: u8 = 3;
const TOMBSTONE: u8 = 4;
const LOG: &str = "wal.log";
/// Largest record replay accepts: one request's batch (under the message
/// limit, with room for the binary encoding's own lengths) fits.
const MAX_RECORD: usize = 2 * shardscope_shared::protocol::MAX_MESSAGE;
/// A rewrite starts a new record once the current one holds this much.
const REWRITE_RECORD: usize = 1 << 20;

/// The log holds damage before intact data: refusing to start keeps the
/// acknowledged writes after it from being thrown away.
#[derive(Debug)]
pub struct Corrupt {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    pub why: &'static str,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Corrupt { path, offset, len, why } = self;
        write!(
            f,
            "{} is corrupt at byte {offset} of {len} ({why}), with data after it: refusing to start rather than \
             drop acknowledged writes. To salvage what precedes the damage, keep a copy and cut the log there: \
             `cp {p} {p}.corrupt && truncate -s {offset} {p}`",
            path.display(),
            p = path.display()
        )
    }
}

impl std::error::Error for Corrupt {}

pub struct Wal {
    path: PathBuf,
    dir: PathBuf,
    file: File,
    policy: FsyncPolicy,
    /// Encoded records not yet written.
    pending: Vec<u8>,
    /// Bytes written but not yet fsynced.
    unsynced: bool,
    last_sync: Instant,
    size: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir` and replays it into `apply`.
    pub fn open(dir: &Path, policy: FsyncPolicy, mut apply: impl FnMut(Op)) -> std::io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG);
        let existed = path.exists();
        let mut file = OpenOptions::new().create(true).truncate(false).read(true).append(true).open(&path)?;
        if !existed {
            // The new file's name must survive a machine crash too.
            File::open(dir)?.sync_all()?;
        }
        let len = file.metadata()?.len();
        let good = match replay(&mut file, len, &mut apply)? {
            Replay::Clean(good) => good,
            Replay::TornTail(good) => {
                tracing::warn!(path = %path.display(), good, dropped = len - good, "torn log tail dropped");
                file.set_len(good)?;
                file.sync_all()?;
                good
            }
            Replay::Corrupt(offset, why) => {
                let err = Corrupt { path: path.clone(), offset, len, why };
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, err));
            }
        };
        Ok(Wal {
            path,
            dir: dir.to_path_buf(),
            file,
            policy,
            pending: Vec::new(),
            unsynced: false,
            last_sync: Instant::now(),
            size: good,
        })
    }

    /// Queues one atomic batch of operations; [`Wal::commit`] writes it.
    pub fn append(&mut self, ops: &[Op]) {
        if ops.is_empty() {
            return;
        }
        let mut payload = Vec::new();
        payload.extend_from_slice(&(ops.len() as u32).to_le_bytes());
        for op in ops {
            let (code, key) = match op {
                Op::Put { key, .. } => (PUT, key),
                Op::Tombstone { key, .. } => (TOMBSTONE, key),
                Op::Forget(key) => (FORGET, key),
            };
            payload.push(code);
            payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
            payload.extend_from_slice(key);
            if let Op::Put { version, .. } | Op::Tombstone { version, .. } = op {
                payload.extend_from_slice(&version.hlc.to_le_bytes());
                payload.extend_from_slice(&version.writer.to_le_bytes());
            }
            if let Op::Put { value, .. } = op {
                payload.extend_from_slice(&(value.len() as u32).to_le_bytes());
                payload.extend_from_slice(value);
            }
        }
        self.pending.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        self.pending.extend_from_slice(&payload);
    }

    /// Writes queued records and syncs as the policy says. After it
    /// returns, the queued operations may be acknowledged.
    pub fn commit(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.file.write_all(&self.pending)?;
            self.size += self.pending.len() as u64;
            self.pending.clear();
            self.unsynced = true;
        }
        match self.policy {
            FsyncPolicy::Always => self.sync(),
            FsyncPolicy::Periodic(every) if self.last_sync.elapsed() >= every => self.sync(),
            _ => Ok(()),
        }
    }

    /// How long until a periodic sync is due (for the server's poll timeout).
    pub fn sync_due_in(&self) -> Option<Duration> {
        match self.policy {
            FsyncPolicy::Periodic(every) if self.unsynced => Some(every.saturating_sub(self.last_sync.elapsed())),
            _ => None,
        }
    }

    /// fdatasync if anything was written since the last one.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the log has grown enough past `live_bytes` to rewrite it.
    pub fn wants_rewrite(&self, live_bytes: u64) -> bool {
        self.size > 64 * 1024 * 1024 && self.size > 2 * live_bytes + 1024 * 1024
    }

    /// Replaces the log with one holding just `ops` (the live data: a put
    /// or a tombstone per key), in records of about a megabyte each.
    pub fn rewrite(&mut self, ops: impl Iterator<Item = Op>) -> std::io::Result<()> {
        self.commit()?;
        let tmp = self.dir.join("wal.rewrite");
        let mut fresh = Wal {
            path: tmp.clone(),
            dir: self.dir.clone(),
            file: OpenOptions::new().create(true).write(true).truncate(true).open(&tmp)?,
            policy: FsyncPolicy::Never,
            pending: Vec::new(),
            unsynced: false,
            last_sync: Instant::now(),
            size: 0,
        };
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0;
        for op in ops {
            chunk_bytes += match &op {
                Op::Put { key, value, .. } => key.len() + value.len() + 25,
                Op::Tombstone { key, .. } | Op::Forget(key) => key.len() + 17,
            };
            chunk.push(op);
            if chunk_bytes >= REWRITE_RECORD {
                fresh.append(&chunk);
                fresh.commit()?;
                chunk.clear();
                chunk_bytes = 0;
            }
        }
        fresh.append(&chunk);
        fresh.commit()?;
        fresh.file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.size = fresh.size;
        self.unsynced = false;
        Ok(())
    }
}

/// How replay ended.
enum Replay {
    /// Every byte was an intact record.
    Clean(u64),
    /// Intact records up to this offset, then a torn last record (or zeros).
    TornTail(u64),
    /// A bad record at this offset with data after it.
    Corrupt(u64, &'static str),
}

/// Applies every intact record, and says where and how the log ends.
fn replay(file: &mut File, len: u64, apply: &mut impl FnMut(Op)) -> std::io::Result<Replay> {
    let mut reader = BufReader::new(&*file);
    let mut good = 0u64;
    let mut header = [0u8; 8];
    loop {
        let left = len - good;
        if left == 0 {
            return Ok(Replay::Clean(good));
        }
        if left < 8 {
            return Ok(Replay::TornTail(good));
        }
        reader.read_exact(&mut header)?;
        let size = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let why = if size > MAX_RECORD as u64 {
            "record length over the limit"
        } else if size > left - 8 {
            // Past the end of the file: the last append, cut short by a
            // crash; unless an intact record lies in what follows, when it
            // is this length that broke.
            drop(reader);
            if !intact_record_within(file, good + 8, left - 8)? {
                return Ok(Replay::TornTail(good));
            }
            return Ok(Replay::Corrupt(good, "record length past the end of the file"));
        } else {
            let mut payload = vec![0u8; size as usize];
            reader.read_exact(&mut payload)?;
            if let Some(ops) = (crc32fast::hash(&payload) == crc).then(|| decode(&payload)).flatten() {
                ops.into_iter().for_each(&mut *apply);
                good += 8 + size;
                continue;
            }
            if size == left - 8 {
                // The last record, damaged in its last write; unless it
                // spans intact records, when it is its length that broke.
                drop(reader);
                if !intact_record_within(file, good + 8, size)? {
                    return Ok(Replay::TornTail(good));
                }
                return Ok(Replay::Corrupt(good, "a record's length spans the intact records after it"));
            }
            "checksum mismatch or undecodable record"
        };
        // A bad record: a torn tail if nothing but zeros follows it (what a
        // machine crash can leave past the last write), else corruption.
        // (Zeros from its own end on count too: its start reached the
        // disk, the rest of it and what followed did not.)
        drop(reader);
        let torn = zeros_from(file, good)? || (size <= left - 8 && zeros_from(file, good + 8 + size)?);
        return Ok(if torn { Replay::TornTail(good) } else { Replay::Corrupt(good, why) });
    }
}

/// Whether an intact record (length within the bytes, a plausible start —
/// at least one operation of a known kind —, checksum and contents good)
/// starts anywhere in the `n` bytes (under the record limit) of `file` from
/// `offset`. The plausibility test keeps random bytes (a big value cut
/// short) from costing a checksum at every offset.
fn intact_record_within(file: &mut File, offset: u64, n: u64) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0u8; n as usize];
    file.read_exact(&mut bytes)?;
    // The intact record at `i`, by its length.
    let intact_at = |i: usize| -> Option<usize> {
        let header = bytes.get(i..i + 8)?;
        let size = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let body = &bytes[i + 8..];
        // count (>= 1, each operation at least 5 bytes), then a known op.
        if size < 10 || size > body.len() {
            return None;
        }
        let count = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
        if count == 0 || count > size / 5 || !matches!(body[4], LEGACY_PUT | FORGET | PUT | TOMBSTONE) {
            return None;
        }
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        (crc32fast::hash(&body[..size]) == crc && decode(&body[..size]).is_some()).then_some(size)
    };
    // Intact records that run on, one after another, to the end (or to
    // zeros only): the log that followed the damage. A record-like run of
    // bytes inside a value that a crash cut short is followed by the rest of
    // that value, not by records to the end, so it does not count.
    for i in 0..bytes.len().saturating_sub(8) {
        let mut j = i;
        while let Some(size) = intact_at(j) {
            j += 8 + size;
        }
        if j > i && bytes[j..].iter().all(|&b| b == 0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether every byte of `file` from `offset` on is zero.
fn zeros_from(file: &mut File, offset: u64) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(&*file);
    let mut buf = [0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf)? {
            0 => return Ok(true),
            n if buf[..n].iter().any(|&b| b != 0) => return Ok(false),
            _ => {}
        }
    }
}

fn decode(mut p: &[u8]) -> Option<Vec<Op>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        (p.len() >= n).then(|| {
            let (head, rest) = p.split_at(n);
            *p = rest;
            head
        })
    }
    fn u32_at(p: &mut &[u8]) -> Option<u32> {
        Some(u32::from_le_bytes(take(p, 4)?.try_into().ok()?))
    }
    fn version(p: &mut &[u8]) -> Option<Version> {
        let hlc = u64::from_le_bytes(take(p, 8)?.try_into().ok()?);
        Some(Version { hlc, writer: u32_at(p)? })
    }
    let count = u32_at(&mut p)? as usize;
    // Each operation takes at least 5 bytes: a count beyond that is a lie.
    let mut ops = Vec::with_capacity(count.min(p.len() / 5));
    for _ in 0..count {
        let op = take(&mut p, 1)?[0];
        let klen = u32_at(&mut p)? as usize;
        let key = take(&mut p, klen)?.to_vec();
        ops.push(match op {
            LEGACY_PUT => {
                let vlen = u32_at(&mut p)? as usize;
                Op::Put { key, version: Version::default(), value: take(&mut p, vlen)?.to_vec() }
            }
            PUT => {
                let version = version(&mut p)?;
                let vlen = u32_at(&mut p)? as usize;
                Op::Put { key, version, value: take(&mut p, vlen)?.to_vec() }
            }
            TOMBSTONE => Op::Tombstone { key, version: version(&mut p)? },
            FORGET => Op::Forget(key),
            _ => return None,
        });
    }
    p.is_empty().then_some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(hlc: u64) -> Version {
        Version { hlc, writer: 1 }
    }

    fn put(k: &str, value: &[u8], hlc: u64) -> Op {
        Op::Put { key: k.as_bytes().to_vec(), version: v(hlc), value: value.to_vec() }
    }

    fn reopen(dir: &Path) -> Vec<Op> {
        let mut ops = Vec::new();
        Wal::open(dir, FsyncPolicy::Always, |op| ops.push(op)).unwrap();
        ops
    }

    fn write(dir: &Path, batches: &[Vec<Op>]) {
        let mut wal = Wal::open(dir, FsyncPolicy::Always, |_| {}).unwrap();
        for b in batches {
            wal.append(b);
        }
        wal.commit().unwrap();
    }

    #[test]
    fn committed_batches_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let tomb = Op::Tombstone { key: b"a".to_vec(), version: v(3) };
        write(
            dir.path(),
            &[vec![put("a", b"1", 1), put("b", &[0, 255], 2)], vec![tomb.clone(), Op::Forget(b"b".to_vec())]],
        );
        assert_eq!(reopen(dir.path()), [put("a", b"1", 1), put("b", &[0, 255], 2), tomb, Op::Forget(b"b".to_vec())]);
    }

    #[test]
    fn the_unversioned_log_of_earlier_releases_replays_as_version_zero() {
        let dir = tempfile::tempdir().unwrap();
        // count 2 | put "k" = "v" | delete "k", as the first release wrote them.
        let mut payload = 2u32.to_le_bytes().to_vec();
        payload.extend([LEGACY_PUT, 1, 0, 0, 0, b'k', 1, 0, 0, 0, b'v', FORGET, 1, 0, 0, 0, b'k']);
        let mut log = (payload.len() as u32).to_le_bytes().to_vec();
        log.extend(crc32fast::hash(&payload).to_le_bytes());
        log.extend(payload);
        std::fs::write(dir.path().join(LOG), log).unwrap();
        let ops = reopen(dir.path());
        assert_eq!(
            ops,
            [put("k", b"v", 0), Op::Forget(b"k".to_vec())].map(|op| match op {
                Op::Put { key, value, .. } => Op::Put { key, version: Version::default(), value },
                other => other,
            })
        );
    }

    #[test]
    fn a_torn_tail_is_dropped_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[vec![put("kept", b"1", 1)], vec![put("torn", b"2", 2)]]);
        let path = dir.path().join(LOG);
        let full = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 3).unwrap();
        assert_eq!(reopen(dir.path()), [put("kept", b"1", 1)]);
        // The bad tail is gone, so new records append after the good ones.
        write(dir.path(), &[vec![put("after", b"3", 3)]]);
        assert_eq!(reopen(dir.path()).len(), 2);
    }

    #[test]
    fn zeros_after_the_last_record_are_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[vec![put("kept", b"1", 1)]]);
        let path = dir.path().join(LOG);
        let mut bytes = std::fs::read(&path).unwrap();
        let good = bytes.len() as u64;
        bytes.extend([0u8; 4096]);
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(reopen(dir.path()), [put("kept", b"1", 1)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
    }

    #[test]
    fn a_bad_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[vec![put("a", b"1", 1)], vec![put("b", b"2", 2)]]);
        let path = dir.path().join(LOG);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(reopen(dir.path()), [put("a", b"1", 1)]);
    }

    #[test]
    fn a_big_record_of_random_bytes_cut_short_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        // xorshift bytes: no structure for a resync to find.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let random: Vec<u8> = (0..4 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        write(dir.path(), &[vec![put("kept", b"1", 1)], vec![put("big", &random, 2)]]);
        let path = dir.path().join(LOG);
        let full = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(full - (1 << 20)).unwrap();
        assert_eq!(reopen(dir.path()), [put("kept", b"1", 1)]);
    }

    #[test]
    fn a_record_planted_in_a_value_does_not_make_a_torn_tail_corruption() {
        // A client's value that holds the bytes of an intact record.
        let plant = tempfile::tempdir().unwrap();
        write(plant.path(), &[vec![put("x", b"y", 0)]]);
        let planted = std::fs::read(plant.path().join(LOG)).unwrap();
        let mut value = vec![0xaa; 1000];
        value.extend_from_slice(&planted);
        value.extend(std::iter::repeat_n(0xbb, 100_000));
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[vec![put("kept", b"1", 1)], vec![put("big", &value, 2)]]);
        let path = dir.path().join(LOG);
        let full = std::fs::read(&path).unwrap();
        // The append cut short by a crash, or zeros where its end should be:
        // a torn tail both ways, and the node starts.
        std::fs::write(&path, &full[..full.len() - 50_000]).unwrap();
        assert_eq!(reopen(dir.path()), [put("kept", b"1", 1)]);
        let mut zeroed = full.clone();
        let n = zeroed.len();
        zeroed[n - 50_000..].fill(0);
        std::fs::write(&path, &zeroed).unwrap();
        assert_eq!(reopen(dir.path()), [put("kept", b"1", 1)]);
    }

    #[test]
    fn zeros_where_the_rest_of_the_last_records_should_be_are_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[vec![put("kept", b"1", 1)], vec![put("half", &[7u8; 5000], 2)], vec![put("b", b"2", 3)]]);
        let path = dir.path().join(LOG);
        let mut bytes = std::fs::read(&path).unwrap();
        let first = 8 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        // The second record's first 4 KiB reached the disk; from there on, zeros.
        for b in &mut bytes[first + 4096..] {
            *b = 0;
        }
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(reopen(dir.path()), [put("kept", b"1", 1)]);
    }

    #[test]
    fn corruption_before_intact_records_refuses_to_start_and_names_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[vec![put("a", b"1", 1)], vec![put("b", b"2", 2)], vec![put("c", b"3", 3)]]);
        let path = dir.path().join(LOG);
        let mut bytes = std::fs::read(&path).unwrap();
        let first = 8 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        bytes[first + 10] ^= 0xff; // inside the second record's payload
        std::fs::write(&path, &bytes).unwrap();
        let err = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).err().expect("a corrupt log is refused");
        let text = err.to_string();
        assert!(text.contains(&format!("corrupt at byte {first}")) && text.contains("wal.log"), "{text}");
        assert!(text.contains("truncate -s"), "says how to salvage: {text}");
        // Nothing was cut: the file is as it was.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // A length past the record limit in the middle is corruption too.
        let mut huge = bytes.clone();
        huge[first..first + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &huge).unwrap();
        assert!(Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).is_err());
        // So is a length within the limit that runs past the end, when
        // intact records follow (the length broke, not the append).
        let mut long = bytes.clone();
        long[first..first + 4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
        std::fs::write(&path, &long).unwrap();
        let err = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).err().expect("refused");
        assert!(err.to_string().contains("past the end"), "{err}");
        // And one that ends exactly at the end of the file, over them.
        let mut spanning = bytes.clone();
        spanning[first..first + 4].copy_from_slice(&((bytes.len() - first - 8) as u32).to_le_bytes());
        std::fs::write(&path, &spanning).unwrap();
        let err = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).err().expect("refused");
        assert!(err.to_string().contains("spans the intact records"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), spanning, "nothing was cut");
    }

    #[test]
    fn rewrite_keeps_only_live_data_in_records_replay_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).unwrap();
        for i in 0..100u32 {
            wal.append(&[put("k", &i.to_le_bytes(), u64::from(i))]);
        }
        wal.commit().unwrap();
        let before = wal.size();
        // Values big enough that 1024 of them would pass the record limit.
        let big = vec![7u8; 3 << 20];
        let live: Vec<Op> = (0..12)
            .map(|i| put(&format!("big{i:02}"), &big, 200))
            .chain([put("k", &99u32.to_le_bytes(), 99), Op::Tombstone { key: b"t".to_vec(), version: v(5) }])
            .collect();
        wal.rewrite(live.clone().into_iter()).unwrap();
        assert!(wal.size() > before);
        wal.append(&[put("z", b"1", 300)]);
        wal.commit().unwrap();
        drop(wal);
        let mut want = live;
        want.push(put("z", b"1", 300));
        assert_eq!(reopen(dir.path()), want);
    }

    #[test]
    fn fsync_policies_parse() {
        assert_eq!("always".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Always));
        assert_eq!("periodic:10ms".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Periodic(Duration::from_millis(10))));
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
