//! The node's write-ahead log: an append-only file of checksummed records,
//! replayed on start (the Redis AOF model: the data lives in memory, the log
//! makes it durable).
//!
//! Record: `len: u32 LE | crc32(payload): u32 LE | payload`, and a payload
//! is a batch of operations applied atomically:
//! `count: u32 | (op: u8, klen: u32, key, [vlen: u32, value])*` with op 1 =
//! put, 2 = delete. Replay stops at the first torn or corrupt record (a
//! crash mid-append) and truncates the file there. When the log grows well
//! past the live data it is rewritten from the map (write to a temp file,
//! fsync, rename, fsync the directory).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

const PUT: u8 = 1;
const DELETE: u8 = 2;
const LOG: &str = "wal.log";

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
        let mut file = OpenOptions::new().create(true).truncate(false).read(true).append(true).open(&path)?;
        let good = replay(&mut file, &mut apply)?;
        if good < file.metadata()?.len() {
            tracing::warn!(path = %path.display(), good, "torn or corrupt log tail dropped");
            file.set_len(good)?;
            file.sync_all()?;
        }
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
            match op {
                Op::Put(k, v) => {
                    payload.push(PUT);
                    payload.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    payload.extend_from_slice(k);
                    payload.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    payload.extend_from_slice(v);
                }
                Op::Delete(k) => {
                    payload.push(DELETE);
                    payload.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    payload.extend_from_slice(k);
                }
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

    /// Replaces the log with one holding just `pairs` (the live data).
    pub fn rewrite<'a>(&mut self, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> std::io::Result<()> {
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
        for (k, v) in pairs {
            chunk.push(Op::Put(k.to_vec(), v.to_vec()));
            if chunk.len() == 1024 {
                fresh.append(&chunk);
                fresh.commit()?;
                chunk.clear();
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

/// Applies every intact record; returns the offset after the last one.
fn replay(file: &mut File, apply: &mut impl FnMut(Op)) -> std::io::Result<u64> {
    let mut reader = BufReader::new(&*file);
    let mut good = 0u64;
    let mut header = [0u8; 8];
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(good),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
        if len > 2 * shardscope_shared::protocol::MAX_MESSAGE {
            return Ok(good);
        }
        let mut payload = vec![0u8; len];
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            return Ok(good);
        }
        let Some(ops) = decode(&payload) else { return Ok(good) };
        ops.into_iter().for_each(&mut *apply);
        good += 8 + len as u64;
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
    fn len(p: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(p, 4)?.try_into().ok()?) as usize)
    }
    let count = len(&mut p)?;
    let mut ops = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let op = take(&mut p, 1)?[0];
        let klen = len(&mut p)?;
        let key = take(&mut p, klen)?.to_vec();
        ops.push(match op {
            PUT => {
                let vlen = len(&mut p)?;
                Op::Put(key, take(&mut p, vlen)?.to_vec())
            }
            DELETE => Op::Delete(key),
            _ => return None,
        });
    }
    p.is_empty().then_some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reopen(dir: &Path) -> Vec<Op> {
        let mut ops = Vec::new();
        Wal::open(dir, FsyncPolicy::Always, |op| ops.push(op)).unwrap();
        ops
    }

    #[test]
    fn committed_batches_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).unwrap();
        wal.append(&[Op::Put(b"a".to_vec(), b"1".to_vec()), Op::Put(b"b".to_vec(), vec![0, 255])]);
        wal.append(&[Op::Delete(b"a".to_vec())]);
        wal.commit().unwrap();
        drop(wal);
        assert_eq!(
            reopen(dir.path()),
            [Op::Put(b"a".to_vec(), b"1".to_vec()), Op::Put(b"b".to_vec(), vec![0, 255]), Op::Delete(b"a".to_vec())]
        );
    }

    #[test]
    fn a_torn_tail_is_dropped_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).unwrap();
        wal.append(&[Op::Put(b"kept".to_vec(), b"1".to_vec())]);
        wal.append(&[Op::Put(b"torn".to_vec(), b"2".to_vec())]);
        wal.commit().unwrap();
        drop(wal);
        let path = dir.path().join(LOG);
        let full = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 3).unwrap();
        assert_eq!(reopen(dir.path()), [Op::Put(b"kept".to_vec(), b"1".to_vec())]);
        // The bad tail is gone, so new records append after the good ones.
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).unwrap();
        wal.append(&[Op::Put(b"after".to_vec(), b"3".to_vec())]);
        wal.commit().unwrap();
        drop(wal);
        assert_eq!(reopen(dir.path()).len(), 2);
    }

    #[test]
    fn a_corrupt_record_stops_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).unwrap();
        wal.append(&[Op::Put(b"a".to_vec(), b"1".to_vec())]);
        wal.append(&[Op::Put(b"b".to_vec(), b"2".to_vec())]);
        wal.commit().unwrap();
        drop(wal);
        let path = dir.path().join(LOG);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(reopen(dir.path()), [Op::Put(b"a".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn rewrite_keeps_only_live_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).unwrap();
        for i in 0..100u32 {
            wal.append(&[Op::Put(b"k".to_vec(), i.to_le_bytes().to_vec())]);
        }
        wal.commit().unwrap();
        let before = wal.size();
        let live: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"k".to_vec(), 99u32.to_le_bytes().to_vec())];
        wal.rewrite(live.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).unwrap();
        assert!(wal.size() < before);
        wal.append(&[Op::Put(b"z".to_vec(), b"1".to_vec())]);
        wal.commit().unwrap();
        drop(wal);
        assert_eq!(
            reopen(dir.path()),
            [Op::Put(b"k".to_vec(), 99u32.to_le_bytes().to_vec()), Op::Put(b"z".to_vec(), b"1".to_vec())]
        );
    }

    #[test]
    fn fsync_policies_parse() {
        assert_eq!("always".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Always));
        assert_eq!("periodic:10ms".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Periodic(Duration::from_millis(10))));
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
