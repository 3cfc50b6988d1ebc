//! Seed 002's REST wire types (CS5600 HW6): `PUT /set`, `POST /fetch`,
//! `GET /fetch` and `POST /query` take and give lists of keys and values
//! written as `{"encoding": "string" | "binary", "data": ".."}` (binary
//! data in base64). The gateway serves them (`backend/src/seed002.rs`).

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::Datum;

/// A key or value in seed 002's form: read from either encoding (or a plain
/// JSON string), written as `string` when the bytes are UTF-8 text (no
/// control characters but tab, CR and LF), else as `binary`. Either way
/// the data decodes to the same bytes; the store keeps bytes, not which
/// encoding a client wrote them in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoded(pub Datum);

impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Form<'a> {
            encoding: &'static str,
            data: std::borrow::Cow<'a, str>,
        }
        let text = std::str::from_utf8(self.0.as_bytes())
            .ok()
            .filter(|t| !t.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')));
        let form = match text {
            Some(text) => Form { encoding: "string", data: text.into() },
            None => Form {
                encoding: "binary",
                data: base64::engine::general_purpose::STANDARD.encode(self.0.as_bytes()).into(),
            },
        };
        form.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Encoded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Datum::deserialize(d).map(Encoded)
    }
}

/// One item of `PUT /set`, and one pair of a `/fetch` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub key: Encoded,
    pub value: Encoded,
}

/// The answer to `PUT /set` (sent as a list of one): items stored, and the
/// keys that were not (each tried; the others are stored all the same).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SetOutcome {
    pub keys_added: u64,
    pub keys_failed: Vec<Encoded>,
}

/// One key of a `POST /query` answer: whether it exists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub key: Encoded,
    pub value: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_read_either_encoding_and_are_written_as_the_seed_writes_them() {
        let items: Vec<Pair> = serde_json::from_str(
            r#"[{"key":{"encoding":"string","data":"key1"},"value":{"encoding":"binary","data":"AAEC/w=="}}]"#,
        )
        .unwrap();
        assert_eq!(items[0].key.0.as_bytes(), b"key1");
        assert_eq!(items[0].value.0.as_bytes(), [0, 1, 2, 255]);
        assert_eq!(
            serde_json::to_string(&items[0]).unwrap(),
            r#"{"key":{"encoding":"string","data":"key1"},"value":{"encoding":"binary","data":"AAEC/w=="}}"#
        );
        // Text is written as text; UTF-8 that holds control characters is
        // data, written as binary.
        let text = Encoded(Datum::from("tab\tnew line\n"));
        assert_eq!(serde_json::to_string(&text).unwrap(), r#"{"encoding":"string","data":"tab\tnew line\n"}"#);
        let data = Encoded(Datum::from("\u{0}\u{1}"));
        assert_eq!(serde_json::to_string(&data).unwrap(), r#"{"encoding":"binary","data":"AAE="}"#);
        for bad in [r#"{"encoding":"hex","data":"00"}"#, r#"{"encoding":"binary","data":"!"}"#, "3"] {
            assert!(serde_json::from_str::<Encoded>(bad).is_err(), "{bad}");
        }
    }
}
