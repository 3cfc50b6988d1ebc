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

/// A key or a value: raw bytes. On the wire it is a JSON string when the
/// bytes are UTF-8, else `{"encoding":"binary","data":"<base64>"}`; both that
/// form and `{"encoding":"string","data":"..."}` are accepted on input.
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

impl Serialize for Datum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => DatumRepr::Encoded {
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

/// A request to a storage node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeRequest {
    Put { key: Datum, value: Datum },
    GetOne { key: Datum },
    GetAll,
    Delete { key: Datum },
}

/// One key-value pair, as in `GET_ALL`'s `collection`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: Datum,
    pub value: Datum,
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
}

/// A storage node's reply. Shapes follow the seeds: a `GET_ONE` answer is
/// `{"key":..,"value":..}`, a `GET_ALL` answer `{"collection":[..]}`; writes
/// answer `{"status":"ok"}` and failures `{"error":"<code>","message":".."}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeReply {
    Error { error: ErrorCode, message: String },
    Value { key: Datum, value: Datum },
    Collection { collection: Vec<Entry> },
    Ok { status: OkStatus },
}

/// The `"ok"` of `{"status":"ok"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OkStatus {
    Ok,
}

impl NodeReply {
    pub fn ok() -> Self {
        NodeReply::Ok { status: OkStatus::Ok }
    }
    pub fn error(error: ErrorCode, message: impl Into<String>) -> Self {
        NodeReply::Error { error, message: message.into() }
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
}

/// A message from the page to the backend over the WebSocket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Put { id: u64, key: Datum, value: Datum },
    Get { id: u64, key: Datum },
    GetAll { id: u64 },
}

/// A message from the backend to the page over the WebSocket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Sent on connect and on every membership change: the nodes and the
    /// placement, from which the page recomputes every owner itself.
    Cluster { nodes: Vec<NodeInfo>, placement: PlacementSpec },
    /// The answer to the request with the same `id`; `node` is the node that
    /// served it (the key's owner), when there is one.
    Reply { id: u64, node: Option<String>, reply: NodeReply },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_messages_parse_exactly_as_written() {
        let put = br#"{
    "op": "PUT",
    "key": "key",
    "value": "value"
}"#;
        assert_eq!(parse_request(put).unwrap(), NodeRequest::Put { key: "key".into(), value: "value".into() });
        assert_eq!(
            parse_request(br#"{"op": "GET_ONE", "key": "key"}"#).unwrap(),
            NodeRequest::GetOne { key: "key".into() }
        );
        // Seed 000 writes GET_ALL with a trailing comma.
        assert_eq!(parse_request(b"{\n    \"op\": \"GET_ALL\",\n}").unwrap(), NodeRequest::GetAll);
    }

    #[test]
    fn commas_inside_strings_are_kept() {
        let req = parse_request(br#"{"op":"PUT","key":"a,}","value":"x,]",}"#).unwrap();
        assert_eq!(req, NodeRequest::Put { key: "a,}".into(), value: "x,]".into() });
    }

    #[test]
    fn replies_have_the_seeds_shapes() {
        let v = NodeReply::Value { key: "key".into(), value: "value".into() };
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"key":"key","value":"value"}"#);
        let c = NodeReply::Collection { collection: vec![Entry { key: "key1".into(), value: "value1".into() }] };
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
    fn unknown_ops_and_wrong_types_are_rejected() {
        assert!(parse_request(br#"{"op":"FLY"}"#).is_err());
        assert!(parse_request(br#"{"op":"PUT","key":1,"value":"v"}"#).is_err());
        assert!(parse_request(br#"{"op":"PUT","key":"k""#).is_err());
        assert!(parse_request(b"\xff\xfe").is_err());
    }
}
