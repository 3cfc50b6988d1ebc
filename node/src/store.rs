//! The node's key-value map and the semantics of every node operation.

use std::collections::BTreeMap;

use shardscope_shared::protocol::{Datum, Entry, ErrorCode, NodeReply, NodeRequest};

/// An ordered in-memory map of keys to values.
#[derive(Default)]
pub struct Store {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Carries out one request and returns its reply.
    pub fn apply(&mut self, req: NodeRequest) -> NodeReply {
        match req {
            NodeRequest::Put { key, value } => {
                self.map.insert(key.0, value.0);
                NodeReply::ok()
            }
            NodeRequest::GetOne { key } => match self.map.get(key.as_bytes()) {
                Some(v) => NodeReply::Value { value: Datum(v.clone()), key },
                None => not_found(&key),
            },
            NodeRequest::GetAll => NodeReply::Collection {
                collection: self
                    .map
                    .iter()
                    .map(|(k, v)| Entry { key: Datum(k.clone()), value: Datum(v.clone()) })
                    .collect(),
            },
            NodeRequest::Delete { key } => match self.map.remove(key.as_bytes()) {
                Some(_) => NodeReply::ok(),
                None => not_found(&key),
            },
        }
    }
}

fn not_found(key: &Datum) -> NodeReply {
    NodeReply::error(ErrorCode::NotFound, format!("key {:?} not found", key.to_text_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_one_returns_the_value() {
        let mut s = Store::new();
        assert_eq!(s.apply(NodeRequest::Put { key: "k".into(), value: "v".into() }), NodeReply::ok());
        assert_eq!(
            s.apply(NodeRequest::GetOne { key: "k".into() }),
            NodeReply::Value { key: "k".into(), value: "v".into() }
        );
    }

    #[test]
    fn missing_keys_are_not_found_and_delete_removes() {
        let mut s = Store::new();
        let miss = s.apply(NodeRequest::GetOne { key: "nope".into() });
        assert!(matches!(miss, NodeReply::Error { error: ErrorCode::NotFound, .. }));
        s.apply(NodeRequest::Put { key: "k".into(), value: "v".into() });
        assert_eq!(s.apply(NodeRequest::Delete { key: "k".into() }), NodeReply::ok());
        assert!(matches!(
            s.apply(NodeRequest::Delete { key: "k".into() }),
            NodeReply::Error { error: ErrorCode::NotFound, .. }
        ));
        assert!(s.is_empty());
    }

    #[test]
    fn get_all_lists_every_pair_in_key_order() {
        let mut s = Store::new();
        for k in ["b", "a", "c"] {
            s.apply(NodeRequest::Put { key: k.into(), value: format!("v{k}").into() });
        }
        let NodeReply::Collection { collection } = s.apply(NodeRequest::GetAll) else {
            panic!("GET_ALL must answer a collection")
        };
        let keys: Vec<_> = collection.iter().map(|e| e.key.to_text_lossy()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(collection[0].value, Datum::from("va"));
    }
}
