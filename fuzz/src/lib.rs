//! What the fuzz targets share: feeding ZMTP bytes to a decoder in chunks as
//! the node's and the backend's readers do, and reading a store's whole
//! contents back to compare.

use shardscope_node::store::Store;
use shardscope_node::zmtp::{self, Decoder, Item, ProtocolError};
use shardscope_shared::protocol::{Entry, NodeReply, NodeRequest, NodeStats, MAX_SCAN_LIMIT};

/// What a decoder made of some bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub items: Vec<Item>,
    /// The error that ended the connection, if one did.
    pub error: Option<ProtocolError>,
    /// Bytes received but not yet decoded (a partial greeting or frame);
    /// 0 after an error, which ends the connection wherever it is found.
    pub left: usize,
}

/// Feeds `wire` to a fresh decoder (limit `max_message`) in pieces of the
/// given sizes (the last one takes the rest), as `server.rs`'s `Conn::read`
/// and `node_client.rs`'s reader do: append what arrived, decode the
/// buffer, drain what was used; the first error ends it.
pub fn decode_in_chunks(max_message: usize, wire: &[u8], mut sizes: impl Iterator<Item = usize>) -> Decoded {
    let mut decoder = Decoder::new(max_message);
    let (mut buf, mut items, mut at) = (Vec::new(), Vec::new(), 0);
    while at < wire.len() {
        let n = sizes.next().unwrap_or(wire.len()).clamp(1, wire.len() - at);
        buf.extend_from_slice(&wire[at..at + n]);
        at += n;
        match decoder.decode(&buf, &mut items) {
            Ok(used) => drop(buf.drain(..used)),
            Err(e) => return Decoded { items, error: Some(e), left: 0 },
        }
    }
    Decoded { items, error: None, left: buf.len() }
}

/// Splits a fuzz input into a chunking plan (its first up-to-8 bytes, each a
/// piece of 1 to 64 bytes, cycled) and the bytes on the wire.
pub fn plan_and_wire(data: &[u8]) -> (impl Iterator<Item = usize> + Clone + '_, &[u8]) {
    let (plan, wire) = data.split_at(data.len().min(8));
    let sizes = plan.iter().map(|&b| usize::from(b % 64) + 1).cycle();
    (sizes, wire)
}

/// Decodes `wire` whole and in the chunks `sizes` says, asserts that both
/// give the same items, error and leftover, and that no message holds more
/// than `max_message` (counting the decoder's 32 bytes a frame); returns
/// what was decoded.
pub fn decode_checked(max_message: usize, wire: &[u8], sizes: impl Iterator<Item = usize>) -> Decoded {
    let whole = decode_in_chunks(max_message, wire, std::iter::empty());
    let chunked = decode_in_chunks(max_message, wire, sizes);
    assert_eq!(whole, chunked, "how the bytes were split changed what was decoded");
    for item in &whole.items {
        match item {
            Item::Message(frames) => {
                assert!(!frames.is_empty(), "a message without frames");
                let held: usize = frames.iter().map(|f| f.len() + 32).sum();
                assert!(held <= max_message, "a message of {held} bytes passed the {max_message}-byte limit");
            }
            Item::Ping(context) => assert!(context.len() <= 16, "a PING context of {} bytes", context.len()),
        }
    }
    whole
}

/// Encodes the messages among `items` after a peer's greeting and READY,
/// decodes that again and asserts the same messages come back.
pub fn assert_messages_round_trip(max_message: usize, items: &[Item], peer: &str) {
    let messages: Vec<&Vec<Vec<u8>>> =
        items.iter().filter_map(|i| if let Item::Message(m) = i { Some(m) } else { None }).collect();
    let mut wire = zmtp::greeting().to_vec();
    zmtp::encode_ready(peer, &mut wire);
    for frames in &messages {
        zmtp::encode_message(frames.iter().map(Vec::as_slice), &mut wire);
    }
    let again = decode_in_chunks(max_message, &wire, std::iter::empty());
    assert_eq!(again.error, None, "re-encoded messages did not decode");
    assert_eq!(again.left, 0);
    let back: Vec<&Vec<Vec<u8>>> =
        again.items.iter().filter_map(|i| if let Item::Message(m) = i { Some(m) } else { None }).collect();
    assert_eq!(back, messages, "decode -> encode -> decode changed the messages");
}

/// Every record a store holds, tombstones too, in key order (through
/// `SCAN`, page after page).
pub fn dump(store: &mut Store) -> Vec<Entry> {
    let mut all: Vec<Entry> = Vec::new();
    let mut cursor = None;
    loop {
        let scan = NodeRequest::Scan { cursor, limit: MAX_SCAN_LIMIT, ranges: None, tombstones: true, prefix: None };
        let NodeReply::Page { page, next } = store.apply(scan) else { panic!("SCAN must answer a page") };
        all.extend(page);
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert!(all.windows(2).all(|w| w[0].key < w[1].key), "SCAN pages out of key order or repeated");
    all
}

/// A fresh directory for a store, in memory (`/dev/shm`) where there is one,
/// so that a run measures the code and not the disk.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a temporary directory")
}

/// Asserts that a store's counters agree with its records: live keys and
/// their bytes, tombstones.
pub fn assert_counters(records: &[Entry], stats: &NodeStats) {
    let live = records.iter().filter(|e| !e.deleted);
    let bytes: u64 = live.clone().map(|e| (e.key.len() + e.value.len()) as u64).sum();
    let counted = (live.count() as u64, bytes, records.iter().filter(|e| e.deleted).count() as u64);
    assert_eq!((stats.keys, stats.bytes, stats.tombstones), counted, "counters disagree with the records");
}
