//! Wire types, defined once for every party.
//!
//! - Storage node messages over ZeroMQ, in the seeds' JSON:
//!   `{"op":"PUT","key":"k","value":"v"}`, `{"op":"GET_ONE","key":"k"}` ->
//!   `{"key":"k","value":"v"}`, `{"op":"GET_ALL"}` -> `{"collection":[..]}`,
//!   and `{"op":"DELETE","key":"k"}`. Keys and values are [`Datum`]s: a plain
//!   JSON string, or seed 002's `{"encoding":"binary","data":"<base64>"}`.
//! - WebSocket messages between the page and the backend ([`ClientMsg`],
//!   [`ServerMsg`]).

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::placement::PlacementSpec;
pub use crate::version::Version;

/// A key or a value: raw bytes. On the wire it is a JSON string when the
/// bytes are UTF-8 and their escaped form is no longer than base64's, else
/// `{"encoding":"binary","data":"<base64>"}`; both that form and
/// `{"encoding":"string","data":"..."}` are accepted on input. So no datum
/// takes more than 4/3 of its size (plus a few bytes) on the wire: text of
/// control characters, escaped as `\u00XX`, would take six times it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Datum(pub Vec<u8>);

impl Datum {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The bytes as text, with invalid UTF-8 replaced (for display).
    pub fn to_text_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
    /// How many bytes `bytes` take as a serialized [`Datum`] (serde_json's
    /// escapes in a string, or the binary form's base64), without building it.
    pub fn json_len(bytes: &[u8]) -> usize {
        match as_text(bytes) {
            Some(text) => text.len() + escape_overhead(text) + 2,
            None => base64_form_len(bytes),
        }
    }
}

impl From<&str> for Datum {
    fn from(s: &str) -> Self {
        Datum(s.as_bytes().to_vec())
    }
}
impl From<String> for Datum {
    fn from(s: String) -> Self {
        Datum(s.into_bytes())
    }
}
impl From<Vec<u8>> for Datum {
    fn from(b: Vec<u8>) -> Self {
        Datum(b)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    String,
    Binary,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum DatumRepr {
    Plain(String),
    Encoded { encoding: Encoding, data: String },
}

/// What JSON's escapes add to `text` (as serde_json writes them: two
/// bytes for `"`, `\\` and the five short control escapes, six for the
/// other control characters).
fn escape_overhead(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..0x20 => 5,
            _ => 0,
        })
        .sum()
}

/// The bytes `{"encoding":"binary","data":""}` adds around the base64.
const ENCODED_OVERHEAD: usize = 31;

/// The length of `bytes` in the binary form.
fn base64_form_len(bytes: &[u8]) -> usize {
    bytes.len().div_ceil(3) * 4 + ENCODED_OVERHEAD
}

/// `bytes` as the text a datum is written as, when that is its form: UTF-8
/// whose escaped string is no longer than the binary form.
fn as_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    (text.len() + escape_overhead(text) <= base64_form_len(bytes)).then_some(text)
}

impl Serialize for Datum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match as_text(&self.0) {
            Some(text) => s.serialize_str(text),
            None => DatumRepr::Encoded {
                encoding: Encoding::Binary,
                data: base64::engine::general_purpose::STANDARD.encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Datum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let repr = DatumRepr::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a string or {\"encoding\":\"string\"|\"binary\",\"data\":\"...\"}")
        })?;
        match repr {
            DatumRepr::Plain(s) | DatumRepr::Encoded { encoding: Encoding::String, data: s } => {
                Ok(Datum(s.into_bytes()))
            }
            DatumRepr::Encoded { encoding: Encoding::Binary, data } => base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map(Datum)
                .map_err(|e| serde::de::Error::custom(format!("invalid base64 in \"data\": {e}"))),
        }
    }
}

/// Largest key a node accepts, in bytes.
pub const MAX_KEY: usize = 64 * 1024;
/// Largest value a node accepts, in bytes.
pub const MAX_VALUE: usize = 4 * 1024 * 1024;
/// Largest request message a node answers; bigger ones get `too_large`.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Largest `GET_ALL` reply a node sends (its JSON); a node holding more
/// answers `too_large`, and its keys are paged through with `SCAN`.
pub const MAX_GET_ALL_BYTES: usize = MAX_MESSAGE;
/// Most entries one `SCAN` returns.
pub const MAX_SCAN_LIMIT: usize = 10_000;
/// Bytes of keys and values after which a `SCAN` page ends (it always holds
/// at least one entry): a page, and a `PUT_BATCH` made of it, stays well
/// under the message limit whatever the values' sizes.
pub const MAX_SCAN_BYTES: usize = 6 * 1024 * 1024;

/// The `rate` a page may give one change (`add_node`, `remove_node`,
/// `change_placement`), in keys moved per second; outside it the request
/// is refused and nothing changes.
pub const RATE: std::ops::RangeInclusive<u64> = 1..=10_000_000;

/// A request to a storage node.
///
/// Writes may carry a [`Version`] (the gateway's); a plain `PUT` or `DELETE`
/// from a seed client carries none and the node versions it itself. A copy
/// with a version never overwrites a newer one (`stale`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum NodeRequest {
    Put {
        key: Datum,
        value: Datum,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<Version>,
    },
    /// With `versioned`, the reply carries the value's version, and a
    /// `not_found` for a deleted key the tombstone's.
    GetOne {
        key: Datum,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        versioned: bool,
    },
    GetAll,
    /// Leaves a tombstone (with `version`, even when the key is absent, so
    /// an older copy arriving later cannot bring the key back).
    Delete {
        key: Datum,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<Version>,
    },
    /// Stores every entry that is newer than the node's copy (entries with a
    /// version; a tombstone is an entry with `deleted`), atomically (all or,
    /// on a rejected request, none). `count` says how many were newer and
    /// written: how a rebalance copies without ever overwriting a newer
    /// write.
    PutBatch {
        entries: Vec<Entry>,
    },
    /// Forgets every key (value or tombstone) that exists, atomically:
    /// how a rebalance removes what it has copied elsewhere. Answers how
    /// many were there.
    DeleteBatch {
        keys: Vec<Datum>,
    },
    /// Up to `limit` pairs in key order after `cursor` (from the start when
    /// absent), only keys whose `key_hash` lies in one of `ranges` (each
    /// `[lo, hi]`, inclusive) when given: how a node hands over exactly the
    /// keys that move; only keys starting with `prefix` when given. A page
    /// also ends once it holds [`MAX_SCAN_BYTES`]. Entries carry their
    /// versions; with `tombstones`, deleted keys come too (`deleted: true`).
    Scan {
        #[serde(default)]
        cursor: Option<Datum>,
        limit: usize,
        #[serde(default)]
        ranges: Option<Vec<(u64, u64)>>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tombstones: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<Datum>,
    },
    /// Key count, bytes stored and operations served.
    Stats,
}

impl NodeRequest {
    /// Checks sizes and arguments; a request that fails is rejected whole
    /// and changes nothing.
    pub fn validate(&self) -> Result<(), NodeReply> {
        let within = |what: &str, d: &Datum, max: usize| {
            if d.len() > max {
                let message = format!("{what} of {} bytes is over the {max}-byte limit", d.len());
                Err(NodeReply::error(ErrorCode::TooLarge, message))
            } else {
                Ok(())
            }
        };
        let key_ok = |k: &Datum| within("key", k, MAX_KEY);
        let value_ok = |v: &Datum| within("value", v, MAX_VALUE);
        match self {
            NodeRequest::Put { key, value, .. } => key_ok(key).and(value_ok(value)),
            NodeRequest::GetOne { key, .. } | NodeRequest::Delete { key, .. } => key_ok(key),
            NodeRequest::PutBatch { entries } => entries.iter().try_for_each(|e| {
                key_ok(&e.key).and(value_ok(&e.value))?;
                match (e.deleted, e.version) {
                    (true, None) => Err(NodeReply::error(
                        ErrorCode::BadRequest,
                        format!("tombstone for {:?} without a version", e.key.to_text_lossy()),
                    )),
                    (true, Some(_)) if !e.value.is_empty() => Err(NodeReply::error(
                        ErrorCode::BadRequest,
                        format!("tombstone for {:?} with a value", e.key.to_text_lossy()),
                    )),
                    _ => Ok(()),
                }
            }),
            NodeRequest::DeleteBatch { keys } => keys.iter().try_for_each(key_ok),
            NodeRequest::Scan { limit, ranges, .. } => {
                if *limit == 0 || *limit > MAX_SCAN_LIMIT {
                    return Err(NodeReply::error(
                        ErrorCode::BadRequest,
                        format!("SCAN limit must be 1..={MAX_SCAN_LIMIT}, got {limit}"),
                    ));
                }
                match ranges.iter().flatten().find(|(lo, hi)| lo > hi) {
                    Some((lo, hi)) => Err(NodeReply::error(
                        ErrorCode::BadRequest,
                        format!("SCAN range [{lo}, {hi}] is empty: split a wrapping range in two"),
                    )),
                    None => Ok(()),
                }
            }
            NodeRequest::GetAll | NodeRequest::Stats => Ok(()),
        }
    }
}

/// One key-value pair, as in `GET_ALL`'s `collection` (`{"key":..,"value":..}`);
/// in `SCAN` pages and `PUT_BATCH` copies also its version, and whether it
/// is a tombstone (a deleted key, with an empty value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: Datum,
    #[serde(default)]
    pub value: Datum,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Entry {
    /// A pair without a version (as `GET_ALL` lists it).
    pub fn new(key: impl Into<Datum>, value: impl Into<Datum>) -> Self {
        Entry { key: key.into(), value: value.into(), version: None, deleted: false }
    }
}

/// The length of the `GET_ALL` reply `{"collection":[..]}` listing `pairs`
/// (keys and values) as serde_json writes it, counted without building it;
/// `None` as soon as it passes `max`.
pub fn collection_json_len<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>, max: usize) -> Option<usize> {
    let mut len = r#"{"collection":[]}"#.len();
    for (i, (key, value)) in pairs.into_iter().enumerate() {
        let entry = r#"{"key":,"value":}"#.len() + Datum::json_len(key) + Datum::json_len(value);
        len = len.saturating_add(entry + usize::from(i > 0));
        if len > max {
            return None;
        }
    }
    (len <= max).then_some(len)
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The key does not exist.
    NotFound,
    /// The message is not valid JSON or not a valid request.
    BadRequest,
    /// A key, value or message is over the size limit.
    TooLarge,
    /// The node or backend could not serve the request.
    Unavailable,
    /// Administration without the admin token (backend only).
    Unauthorized,
    /// A versioned write older than the node's copy of the key (the reply
    /// carries that copy's version).
    Stale,
}

/// A storage node's reply. Shapes follow the seeds: a `GET_ONE` answer is
/// `{"key":..,"value":..}`, a `GET_ALL` answer `{"collection":[..]}`; writes
/// answer `{"status":"ok"}` and failures `{"error":"<code>","message":".."}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeReply {
    /// `version`: a `stale` write's newer copy, or a versioned `GET_ONE`'s tombstone.
    Error {
        error: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<Version>,
    },
    /// `version` only when asked for (`versioned`).
    Value {
        key: Datum,
        value: Datum,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<Version>,
    },
    Collection {
        collection: Vec<Entry>,
    },
    /// A `SCAN` page; `next` is the cursor for the following page, `null` at the end.
    Page {
        page: Vec<Entry>,
        next: Option<Datum>,
    },
    Stats {
        stats: NodeStats,
    },
    /// `count`: entries written by `PUT_BATCH`, keys removed by `DELETE_BATCH`.
    Ok {
        status: OkStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
}

/// A node's counters, as `STATS` reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    pub keys: u64,
    /// Bytes of keys and values stored.
    pub bytes: u64,
    /// Requests answered since start, rejected ones included.
    pub ops: u64,
    /// Bytes in the write-ahead log on disk.
    pub log_bytes: u64,
    /// Deleted keys remembered (until the tombstone grace period passes).
    #[serde(default)]
    pub tombstones: u64,
    /// The newest version the node has written or seen: a gateway's clock
    /// starts above it.
    #[serde(default)]
    pub max_version: Version,
}

/// The `"ok"` of `{"status":"ok"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OkStatus {
    Ok,
}

impl NodeReply {
    pub fn ok() -> Self {
        NodeReply::Ok { status: OkStatus::Ok, count: None }
    }
    pub fn ok_count(count: u64) -> Self {
        NodeReply::Ok { status: OkStatus::Ok, count: Some(count) }
    }
    pub fn error(error: ErrorCode, message: impl Into<String>) -> Self {
        NodeReply::Error { error, message: message.into(), version: None }
    }
}

/// Parses a node request. Besides strict JSON it accepts the seeds' own
/// examples, which put a trailing comma before `}` (`{"op": "GET_ALL",}`).
pub fn parse_request(bytes: &[u8]) -> Result<NodeRequest, String> {
    match serde_json::from_slice(bytes) {
        Ok(req) => Ok(req),
        Err(strict) => {
            let relaxed = strip_trailing_commas(bytes);
            if relaxed.len() != bytes.len() {
                if let Ok(req) = serde_json::from_slice(&relaxed) {
                    return Ok(req);
                }
            }
            Err(strict.to_string())
        }
    }
}

/// Removes commas that directly precede (whitespace aside) a `}` or `]`,
/// outside of strings.
fn strip_trailing_commas(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let (mut in_string, mut escaped) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b',' {
            let next = bytes[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
            if matches!(next, Some(b'}') | Some(b']')) {
                continue;
            }
        }
        out.push(b);
    }
    out
}

/// A storage node as the backend and page see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    /// ZeroMQ endpoint, e.g. `tcp://127.0.0.1:5601`.
    pub addr: String,
    /// Whether its registry health check passes; keys of an unhealthy node
    /// get `unavailable` errors until it recovers or is removed.
    #[serde(default = "healthy_by_default")]
    pub healthy: bool,
    /// How `serve` keeps the node's process running; only for nodes that
    /// `serve` launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervision: Option<Supervision>,
}

fn healthy_by_default() -> bool {
    true
}

/// The supervision of a node process `serve` launched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervision {
    pub state: SupervisionState,
    /// Times the process was started again after it exited.
    pub restarts: u32,
    /// How the process last ended, e.g. `killed by signal 9`, `exit status 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SupervisionState {
    /// The process is listening.
    Running,
    /// The process exited; it is started again after a back-off.
    Restarting,
    /// It exited too often in a short time; it is not started again.
    Failed,
}

/// Keys and bytes a rebalance moved from one node to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub from: String,
    pub to: String,
    pub keys: u64,
    pub bytes: u64,
}

/// A rebalance's progress, as pushed to pages at least 5 times a second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// What changed, e.g. `join node-4`, `leave node-2`, `placement jump`.
    pub change: String,
    pub keys_moved: u64,
    pub bytes_moved: u64,
    /// Keys looked at so far, and in all (the cluster's key count at the start).
    pub keys_scanned: u64,
    pub keys_total: u64,
    pub keys_per_sec: f64,
    pub seconds: f64,
    /// `keys_moved / keys_total`, and the least fraction any placement must move.
    pub fraction: f64,
    pub ideal: f64,
    pub flows: Vec<Flow>,
    /// Nodes that were down and could not hand their keys over (a forced
    /// removal, or a roll-back): the keys only they held are lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// A message from the page to the backend over the WebSocket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Put {
        id: u64,
        key: Datum,
        value: Datum,
    },
    Get {
        id: u64,
        key: Datum,
    },
    Delete {
        id: u64,
        key: Datum,
    },
    /// Every pair in key order; with `limit`, one page of the pairs whose key
    /// starts with `prefix`, after the key `after` (answered with a `page`).
    GetAll {
        id: u64,
        #[serde(default)]
        prefix: Option<Datum>,
        #[serde(default)]
        after: Option<Datum>,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Launch one more node (answered once launched; it joins through the
    /// registry). With `rate`, its join moves at most that many keys per
    /// second (see [`RATE`]).
    AddNode {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<u64>,
    },
    /// Drain, deregister and stop `node` (answered once its keys have
    /// moved), at most `rate` keys per second when given.
    RemoveNode {
        id: u64,
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<u64>,
    },
    /// Move every key to where `placement` puts it, then route with it, at
    /// most `rate` keys per second when given.
    ChangePlacement {
        id: u64,
        placement: PlacementSpec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<u64>,
    },
    /// Every node's counters (`STATS`).
    Stats {
        id: u64,
    },
    /// Run `PUT`, `GET_ONE`, `DELETE` and `GET_ALL` operations through the
    /// cluster (a page loading a key set): each key's operations in order, a
    /// `GET_ALL` after everything before it. Answered with `batch_reply`.
    Batch {
        id: u64,
        ops: Vec<NodeRequest>,
    },
}

/// What a batch of operations came to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    pub ok: u64,
    /// `GET_ONE` or `DELETE` of a key that is not there.
    pub not_found: u64,
    pub failed: u64,
    /// The first failure, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl BatchSummary {
    /// Counts one operation's outcome.
    pub fn count(&mut self, outcome: Result<&NodeReply, String>) {
        match outcome {
            Ok(NodeReply::Error { error: ErrorCode::NotFound, .. }) => self.not_found += 1,
            Ok(NodeReply::Error { message, .. }) => self.fail(message.clone()),
            Err(message) => self.fail(message),
            Ok(_) => self.ok += 1,
        }
    }

    /// Adds another summary's counts (the first error seen stays).
    pub fn add(&mut self, other: BatchSummary) {
        self.ok += other.ok;
        self.not_found += other.not_found;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn fail(&mut self, message: String) {
        self.failed += 1;
        self.first_error.get_or_insert(message);
    }
}

/// A message from the backend to the page over the WebSocket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Sent on connect and on every membership change: the nodes and the
    /// placement, from which the page recomputes every owner itself.
    Cluster {
        nodes: Vec<NodeInfo>,
        placement: PlacementSpec,
        /// Jump's slot table (its history), when the algorithm has one; the
        /// page rebuilds the placement with `placement::restore`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slots: Option<Vec<Option<String>>>,
    },
    /// A rebalance starts: the membership and placement it moves to.
    RebalancePlan {
        change: String,
        from: Vec<String>,
        to: Vec<String>,
        placement: PlacementSpec,
        keys_total: u64,
        ideal: f64,
    },
    /// A rebalance moved more keys.
    RebalanceProgress { progress: Progress },
    /// A rebalance finished; the new placement is in the next `cluster` message.
    RebalanceDone { progress: Progress },
    /// A rebalance step failed; it is retried.
    RebalanceError { change: String, message: String },
    /// The answer to `stats`: each node's counters, by node id (nodes that
    /// did not answer are left out).
    Stats { id: u64, stats: std::collections::BTreeMap<String, NodeStats> },
    /// The answer to an administrative request with the same `id`.
    AdminReply {
        id: u64,
        ok: bool,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        progress: Option<Progress>,
        /// The node an `add_node` launched (its join follows, as `join ID`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// The answer to the request with the same `id`; `node` is the node that
    /// served it (the key's owner), when there is one.
    Reply { id: u64, node: Option<String>, reply: NodeReply },
    /// The answer to `batch`.
    BatchReply { id: u64, summary: BatchSummary },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datum_never_takes_more_than_base64_on_the_wire() {
        // Text stays text, escapes and all, while that is the shorter form.
        for text in ["plain", "a \"quoted\" line\n", "ünïcödé", ""] {
            let json = serde_json::to_string(&Datum::from(text)).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
        }
        // Control characters (valid UTF-8, six bytes each as `\u00XX`),
        // and bytes that are not UTF-8, go as base64.
        for raw in [vec![1u8; 3 << 20], vec![0xff; 1000], (0..=255u8).cycle().take(10_000).collect()] {
            let datum = Datum(raw.clone());
            let json = serde_json::to_vec(&datum).unwrap();
            assert!(json.len() <= raw.len().div_ceil(3) * 4 + ENCODED_OVERHEAD + 2, "{} for {}", json.len(), raw.len());
            assert_eq!(serde_json::from_slice::<Datum>(&json).unwrap(), datum);
        }
        let one_tab = serde_json::to_string(&Datum::from("\t")).unwrap();
        assert_eq!(one_tab, r#""\t""#, "short text with an escape stays text");
    }

    #[test]
    fn json_lengths_are_what_serde_json_writes() {
        let data: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"plain".to_vec(),
            "quote \" backslash \\ tab \t nl \n cr \r bs \x08 ff \x0c nul \0 esc \x1b del \x7f".into(),
            "caf\u{e9} \u{1f600}".into(),
            (0u8..=255).collect(),
            vec![0xff],
            vec![0xff, 0],
            vec![0xff, 0, 1],
        ];
        for d in &data {
            let want = serde_json::to_vec(&Datum(d.clone())).unwrap().len();
            assert_eq!(Datum::json_len(d), want, "{d:?}");
        }
        for n in 0..data.len() {
            let pairs: Vec<(&[u8], &[u8])> =
                data[..n].iter().zip(data.iter().rev()).map(|(k, v)| (&k[..], &v[..])).collect();
            let reply = NodeReply::Collection {
                collection: pairs.iter().map(|&(k, v)| Entry::new(k.to_vec(), v.to_vec())).collect(),
            };
            let want = serde_json::to_vec(&reply).unwrap().len();
            assert_eq!(collection_json_len(pairs.iter().copied(), want), Some(want), "{n} pairs");
            assert_eq!(collection_json_len(pairs.iter().copied(), want - 1), None, "{n} pairs");
        }
    }

    #[test]
    fn seed_messages_parse_exactly_as_written() {
        let put = br#"{
    "op": "PUT",
    "key": "key",
    "value": "value"
}"#;
        assert_eq!(
            parse_request(put).unwrap(),
            NodeRequest::Put { key: "key".into(), value: "value".into(), version: None }
        );
        assert_eq!(
            parse_request(br#"{"op": "GET_ONE", "key": "key"}"#).unwrap(),
            NodeRequest::GetOne { key: "key".into(), versioned: false }
        );
        // Seed 000 writes GET_ALL with a trailing comma.
        assert_eq!(parse_request(b"{\n    \"op\": \"GET_ALL\",\n}").unwrap(), NodeRequest::GetAll);
    }

    #[test]
    fn commas_inside_strings_are_kept() {
        let req = parse_request(br#"{"op":"PUT","key":"a,}","value":"x,]",}"#).unwrap();
        assert_eq!(req, NodeRequest::Put { key: "a,}".into(), value: "x,]".into(), version: None });
    }

    #[test]
    fn replies_have_the_seeds_shapes() {
        let v = NodeReply::Value { key: "key".into(), value: "value".into(), version: None };
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"key":"key","value":"value"}"#);
        let c = NodeReply::Collection { collection: vec![Entry::new("key1", "value1")] };
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"collection":[{"key":"key1","value":"value1"}]}"#);
        for reply in [v, c, NodeReply::ok(), NodeReply::error(ErrorCode::NotFound, "no key")] {
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(serde_json::from_str::<NodeReply>(&text).unwrap(), reply);
        }
    }

    #[test]
    fn binary_datums_round_trip_as_base64() {
        let d: Datum = serde_json::from_str(r#"{"encoding":"binary","data":"AP8="}"#).unwrap();
        assert_eq!(d.0, vec![0x00, 0xff]);
        assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"encoding":"binary","data":"AP8="}"#);
        let s: Datum = serde_json::from_str(r#"{"encoding":"string","data":"key1"}"#).unwrap();
        assert_eq!(s, Datum::from("key1"));
        let bad = serde_json::from_str::<Datum>(r#"{"encoding":"binary","data":"@@"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn batch_scan_and_stats_requests_parse() {
        let batch = parse_request(br#"{"op":"PUT_BATCH","entries":[{"key":"a","value":"1"}]}"#).unwrap();
        assert_eq!(batch, NodeRequest::PutBatch { entries: vec![Entry::new("a", "1")] });
        let scan = parse_request(br#"{"op":"SCAN","limit":10,"ranges":[[0,18446744073709551615]]}"#).unwrap();
        assert_eq!(
            scan,
            NodeRequest::Scan {
                cursor: None,
                limit: 10,
                ranges: Some(vec![(0, u64::MAX)]),
                tombstones: false,
                prefix: None
            }
        );
        assert_eq!(parse_request(br#"{"op":"STATS"}"#).unwrap(), NodeRequest::Stats);
        let page = NodeReply::Page { page: vec![], next: Some("k".into()) };
        assert_eq!(serde_json::to_string(&page).unwrap(), r#"{"page":[],"next":"k"}"#);
        let text = serde_json::to_string(&page).unwrap();
        assert_eq!(serde_json::from_str::<NodeReply>(&text).unwrap(), page);
        let stats = NodeReply::Stats {
            stats: NodeStats {
                keys: 1,
                bytes: 2,
                ops: 3,
                log_bytes: 4,
                tombstones: 5,
                max_version: Version { hlc: 6, writer: 7 },
            },
        };
        let text = serde_json::to_string(&stats).unwrap();
        assert_eq!(serde_json::from_str::<NodeReply>(&text).unwrap(), stats);
        assert_eq!(serde_json::to_string(&NodeReply::ok_count(2)).unwrap(), r#"{"status":"ok","count":2}"#);
    }

    #[test]
    fn oversize_and_invalid_arguments_fail_validation() {
        let big_key = NodeRequest::Put { key: Datum(vec![b'k'; MAX_KEY + 1]), value: "v".into(), version: None };
        assert!(matches!(big_key.validate(), Err(NodeReply::Error { error: ErrorCode::TooLarge, .. })));
        let big_value = NodeRequest::Put { key: "k".into(), value: Datum(vec![0; MAX_VALUE + 1]), version: None };
        assert!(matches!(big_value.validate(), Err(NodeReply::Error { error: ErrorCode::TooLarge, .. })));
        let zero = NodeRequest::Scan { cursor: None, limit: 0, ranges: None, tombstones: false, prefix: None };
        assert!(matches!(zero.validate(), Err(NodeReply::Error { error: ErrorCode::BadRequest, .. })));
        let backwards =
            NodeRequest::Scan { cursor: None, limit: 5, ranges: Some(vec![(9, 1)]), tombstones: false, prefix: None };
        assert!(backwards.validate().is_err());
        assert!(NodeRequest::Put { key: "k".into(), value: "v".into(), version: None }.validate().is_ok());
        let bare_tombstone = NodeRequest::PutBatch { entries: vec![Entry { deleted: true, ..Entry::new("k", "") }] };
        assert!(matches!(bare_tombstone.validate(), Err(NodeReply::Error { error: ErrorCode::BadRequest, .. })));
    }

    #[test]
    fn unknown_ops_and_wrong_types_are_rejected() {
        assert!(parse_request(br#"{"op":"FLY"}"#).is_err());
        assert!(parse_request(br#"{"op":"GET_ONE","key":"k","extra":1}"#).is_err());
        assert!(parse_request(br#"{"op":"PUT","key":1,"value":"v"}"#).is_err());
        assert!(parse_request(br#"{"op":"PUT","key":"k""#).is_err());
        assert!(parse_request(b"\xff\xfe").is_err());
    }
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn versions_travel_only_where_asked_for() {
        // The seeds' shapes are untouched: no version unless one is given or asked for.
        let plain = NodeRequest::Put { key: "k".into(), value: "v".into(), version: None };
        assert_eq!(serde_json::to_string(&plain).unwrap(), r#"{"op":"PUT","key":"k","value":"v"}"#);
        let v = Version { hlc: 42, writer: 3 };
        let versioned = parse_request(br#"{"op":"PUT","key":"k","value":"v","version":[42,3]}"#).unwrap();
        assert_eq!(versioned, NodeRequest::Put { key: "k".into(), value: "v".into(), version: Some(v) });
        let tomb = Entry { version: Some(v), deleted: true, ..Entry::new("k", "") };
        let text = serde_json::to_string(&tomb).unwrap();
        assert_eq!(text, r#"{"key":"k","value":"","version":[42,3],"deleted":true}"#);
        assert_eq!(serde_json::from_str::<Entry>(r#"{"key":"k","version":[42,3],"deleted":true}"#).unwrap(), tomb);
        let stale = NodeReply::Error { error: ErrorCode::Stale, message: "newer".into(), version: Some(v) };
        let text = serde_json::to_string(&stale).unwrap();
        assert_eq!(serde_json::from_str::<NodeReply>(&text).unwrap(), stale);
        let value = NodeReply::Value { key: "k".into(), value: "v".into(), version: Some(v) };
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(serde_json::from_str::<NodeReply>(&text).unwrap(), value);
    }
}
