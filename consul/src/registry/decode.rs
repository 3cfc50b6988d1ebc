//! Request bodies as Consul decodes them: field names in any case, with or
//! without underscores (`name`, `Name`, `service_id`, `ServiceID`,
//! `enable_tag_override`), as clients such as py-consul send them. Keys of
//! the maps that hold users' own names (`Meta`, `NodeMeta`,
//! `TaggedAddresses`, `Header`) are kept as given. An empty body is `{}`.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Every field name the registry reads from a body, as Consul spells it.
const FIELDS: &[&str] = &[
    "Address",
    "Args",
    "Behavior",
    "Check",
    "CheckID",
    "Checks",
    "Datacenter",
    "DeregisterCriticalServiceAfter",
    "EnableTagOverride",
    "GRPC",
    "HTTP",
    "Header",
    "ID",
    "Interval",
    "LockDelay",
    "Meta",
    "Name",
    "Node",
    "NodeChecks",
    "NodeMeta",
    "Notes",
    "Output",
    "Passing",
    "Port",
    "Service",
    "ServiceChecks",
    "ServiceID",
    "SkipNodeUpdate",
    "Status",
    "TCP",
    "TTL",
    "TaggedAddresses",
    "Tags",
    "Timeout",
    "Warning",
    "Weights",
];

/// Maps whose keys are the user's, not field names.
const USER_MAPS: &[&str] = &["Meta", "NodeMeta", "TaggedAddresses", "Header"];

/// Consul's aliases that do not fold to a field's name.
const ALIASES: &[(&str, &str)] = &[("scriptargs", "Args")];

fn fold(key: &str) -> String {
    key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

fn canonical(key: &str) -> Option<&'static str> {
    let folded = fold(key);
    FIELDS
        .iter()
        .find(|f| fold(f) == folded)
        .copied()
        .or_else(|| ALIASES.iter().find(|(alias, _)| *alias == folded).map(|(_, f)| *f))
}

/// Renames the fields of `value` to Consul's spelling; two keys that name
/// one field (`Name` and `name`) are ambiguous, and refused.
fn normalize(value: Value, user_keys: bool) -> Result<Value, String> {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                let (name, inner_user) = match (user_keys, canonical(&key)) {
                    (true, _) | (false, None) => (key, false),
                    (false, Some(field)) => (field.to_string(), USER_MAPS.contains(&field)),
                };
                let v = normalize(v, inner_user)?;
                if out.insert(name.clone(), v).is_some() {
                    return Err(format!("Request decode failed: field {name} is given twice"));
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            items.into_iter().map(|v| normalize(v, false)).collect::<Result<_, _>>().map(Value::Array)
        }
        other => Ok(other),
    }
}

/// Decodes `body` as Consul would, into `T` (whose fields are Consul's
/// names); the error reads as Consul's, `Request decode failed: ...`.
pub(super) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let text = if body.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { body };
    let value: Value = serde_json::from_slice(text).map_err(|e| format!("Request decode failed: {e}"))?;
    serde_json::from_value(normalize(value, false)?).map_err(|e| format!("Request decode failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_fold_but_users_keys_stay() {
        let body = br#"{"name":"svc","service_id":"a","meta":{"some_Key":"v"},
            "tagged_addresses":{"lan":{"address":"10.0.0.1","port":80}},"checks":[{"ttl":"5s","script_args":["x"]}]}"#;
        let v: Value = decode(body).unwrap();
        assert_eq!(v["Name"], "svc");
        assert_eq!(v["ServiceID"], "a");
        assert_eq!(v["Meta"]["some_Key"], "v");
        assert_eq!(v["TaggedAddresses"]["lan"]["Address"], "10.0.0.1");
        assert_eq!(v["Checks"][0]["TTL"], "5s");
        assert_eq!(v["Checks"][0]["Args"][0], "x");
        assert_eq!(decode::<Value>(b"").unwrap(), serde_json::json!({}));
        assert!(decode::<Value>(b"{").unwrap_err().starts_with("Request decode failed"));
        assert!(decode::<Value>(br#"{"ID":"a","id":"b"}"#).unwrap_err().contains("given twice"));
    }
}
