//! The registry's state file, `state.json` in its data dir: the index, every
//! service as it was registered (its check definition included) with its
//! check's current status, and every KV pair as Consul's KV API returns it
//! (`Value` in base64, `Flags`, `CreateIndex`, `ModifyIndex`), as one JSON
//! document:
//!
//! ```json
//! {"Version":1,"Index":7,
//!  "Services":[{"Registration":{"ID":"node-1","Name":"shardscope-node",..},
//!               "Check":{"Status":"passing","Output":".."}}],
//!  "KV":[{"Key":"cluster_size","Value":"Mw==","Flags":0,"CreateIndex":2,"ModifyIndex":2,"LockIndex":0}]}
//! ```
//!
//! Every save replaces it whole and atomically: write `state.json.tmp`,
//! fsync it, rename it over `state.json`, fsync the directory. A crash leaves
//! the old file or the new one, and at most a temp file, which the next
//! start removes. A file that does not read back whole (truncated, corrupt,
//! another version, larger than [`MAX_STATE`]) is an error naming it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{KvEntry, Limits, Service, Tables, STATUSES};
use crate::api::{KvPair, ServiceRegistration};

/// The state file's name in the data dir.
pub const STATE_FILE: &str = "state.json";
/// The largest state file, and so the most the registry holds with a data
/// dir: 64 MiB, over 90 KV values of the largest size (512 KiB, which is
/// 683 KiB in base64). A write that would pass it is refused.
pub const MAX_STATE: usize = 64 * 1024 * 1024;
const VERSION: u32 = 1;

/// A save that did not happen.
#[derive(Debug)]
pub(super) enum SaveError {
    /// The state would be larger than [`MAX_STATE`].
    TooLarge,
    Io(std::io::Error),
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveError::TooLarge => {
                write!(f, "the registry's state would be larger than {} MiB, its limit", MAX_STATE >> 20)
            }
            SaveError::Io(e) => write!(f, "saving the registry's state: {e}"),
        }
    }
}

/// The data dir of a registry, where it saves its state.
#[derive(Debug)]
pub(super) struct StateDir {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Saved {
    version: u32,
    index: u64,
    services: Vec<SavedService>,
    #[serde(rename = "KV")]
    kv: Vec<KvPair>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SavedService {
    registration: ServiceRegistration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<SavedCheck>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SavedCheck {
    status: String,
    output: String,
}

impl StateDir {
    /// Opens `dir` (creating it), removes a leftover temp file, and reads the
    /// state file if there is one; what it holds must be within `limits`.
    pub(super) fn open(dir: &Path, limits: &Limits) -> anyhow::Result<(StateDir, Option<Tables>)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the registry's data dir {}", dir.display()))?;
        let state = StateDir { path: dir.join(STATE_FILE) };
        let temp = crate::file::temp_of(&state.path);
        match std::fs::remove_file(&temp) {
            Ok(()) => tracing::info!(path = %temp.display(), "removed a save interrupted by a crash"),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", temp.display())),
        }
        let tables = state.load(limits).with_context(|| format!("registry state file {}", state.path.display()))?;
        Ok((state, tables))
    }

    fn load(&self, limits: &Limits) -> anyhow::Result<Option<Tables>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATE as u64 + 1).read_to_end(&mut bytes)?;
        if bytes.len() > MAX_STATE {
            anyhow::bail!("larger than {} MiB, the most the registry saves", MAX_STATE >> 20);
        }
        let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "corrupt or truncated ({e}); the registry does not start without the catalog it held: \
                 restore the file, or move it away to start empty"
            )
        })?;
        Ok(Some(saved.into_tables(Instant::now(), limits).map_err(anyhow::Error::msg)?))
    }

    /// Replaces the state file with `tables`, durably.
    pub(super) fn save(&self, tables: &Tables) -> Result<(), SaveError> {
        let bytes = serde_json::to_vec(&Saved::of(tables)).map_err(|e| SaveError::Io(e.into()))?;
        if bytes.len() > MAX_STATE {
            return Err(SaveError::TooLarge);
        }
        crate::file::replace(&self.path, &bytes, 0o600).map_err(SaveError::Io)
    }
}

impl Saved {
    fn of(t: &Tables) -> Saved {
        let services = t
            .services
            .values()
            .map(|s| SavedService {
                registration: s.reg.clone(),
                check: s.check.as_ref().map(|c| SavedCheck { status: c.status.clone(), output: c.output.clone() }),
            })
            .collect();
        let kv = t.kv.iter().map(|(k, e)| e.to_pair(k)).collect();
        Saved { version: VERSION, index: t.index, services, kv }
    }

    /// The tables this file describes, as of a start at `now`: checks in the
    /// status they had (a TTL check's window starting at `now`; a critical
    /// one counting towards `DeregisterCriticalServiceAfter` from `now`).
    /// What a client could not write is not loaded either: every service and
    /// pair must be within `limits`, as a write is.
    fn into_tables(self, now: Instant, limits: &Limits) -> Result<Tables, String> {
        if self.version != VERSION {
            return Err(format!("version {} (this registry reads version {VERSION})", self.version));
        }
        limits.services_fit(self.services.len(), true).map_err(|(_, e)| e)?;
        let mut services = BTreeMap::new();
        for saved in self.services {
            let name = saved.registration.name.clone();
            let mut service = Service::new(saved.registration).map_err(|e| format!("service {name:?}: {e}"))?;
            match (service.check.as_mut(), saved.check) {
                (Some(check), Some(s)) if STATUSES.contains(&s.status.as_str()) => {
                    check.set(&s.status, s.output, now);
                }
                (None, None) => {}
                _ => return Err(format!("service {:?}: its check's state does not match its definition", service.id)),
            }
            if services.insert(service.id.clone(), service).is_some() {
                return Err(format!("service {name:?} is listed twice"));
            }
        }
        let mut kv = BTreeMap::new();
        let mut bytes = 0usize;
        for pair in self.kv {
            limits.key_fits(&pair.key).map_err(|(_, e)| e)?;
            let value = base64::engine::general_purpose::STANDARD
                .decode(pair.value.as_deref().unwrap_or_default())
                .map_err(|e| format!("key {:?}: value is not base64: {e}", pair.key))?;
            limits.value_fits(value.len()).map_err(|(_, e)| format!("key {:?}: {e}", pair.key))?;
            bytes = bytes.saturating_add(pair.key.len() + value.len());
            if pair.create_index > pair.modify_index || pair.modify_index > self.index {
                return Err(format!("key {:?}: indexes do not fit the registry's index {}", pair.key, self.index));
            }
            let entry =
                KvEntry { value, flags: pair.flags, create_index: pair.create_index, modify_index: pair.modify_index };
            if kv.insert(pair.key.clone(), entry).is_some() {
                return Err(format!("key {:?} is listed twice", pair.key));
            }
        }
        limits.kv_fits(kv.len(), bytes, true).map_err(|(_, e)| e)?;
        if self.index == 0 {
            return Err("index 0 (a registry's index starts at 1)".into());
        }
        Ok(Tables { index: self.index, services, kv })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CheckDefinition;

    fn tables() -> Tables {
        let reg = ServiceRegistration {
            id: Some("a".into()),
            name: "svc".into(),
            check: Some(CheckDefinition { ttl: Some("30s".into()), ..Default::default() }),
            ..Default::default()
        };
        let mut service = Service::new(reg).unwrap();
        service.check.as_mut().unwrap().set("passing", "fine".into(), Instant::now());
        let entry = KvEntry { value: b"\x00bytes".to_vec(), flags: 42, create_index: 2, modify_index: 3 };
        Tables {
            index: 4,
            services: [("a".to_string(), service)].into_iter().collect(),
            kv: [("k".to_string(), entry)].into_iter().collect(),
        }
    }

    #[test]
    fn a_save_reads_back_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let (state, none) = StateDir::open(dir.path(), &Limits::default()).unwrap();
        assert!(none.is_none(), "a fresh dir has no state");
        state.save(&tables()).unwrap();
        let mut next = tables();
        next.index = 9;
        next.kv.get_mut("k").unwrap().modify_index = 9;
        state.save(&next).unwrap();
        assert!(!crate::file::temp_of(&dir.path().join(STATE_FILE)).exists());

        let (_, back) = StateDir::open(dir.path(), &Limits::default()).unwrap();
        let back = back.expect("the saved state");
        assert_eq!(back.index, 9);
        let k = &back.kv["k"];
        assert_eq!((k.value.as_slice(), k.flags, k.create_index, k.modify_index), (&b"\x00bytes"[..], 42, 2, 9));
        let check = back.services["a"].check.as_ref().unwrap();
        assert_eq!((check.status.as_str(), check.output.as_str()), ("passing", "fine"));
        assert!(check.ttl_deadline.is_some_and(|d| d > Instant::now()), "a restored TTL check gets a fresh window");
    }

    #[test]
    fn a_leftover_temp_file_is_removed_and_the_state_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = StateDir::open(dir.path(), &Limits::default()).unwrap();
        state.save(&tables()).unwrap();
        std::fs::write(crate::file::temp_of(&dir.path().join(STATE_FILE)), b"{\"Version\":1,\"Ind").unwrap();
        let (_, back) = StateDir::open(dir.path(), &Limits::default()).unwrap();
        assert_eq!(back.unwrap().index, 4);
        assert!(!crate::file::temp_of(&dir.path().join(STATE_FILE)).exists());
    }

    #[test]
    fn a_file_that_does_not_read_back_whole_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = StateDir::open(dir.path(), &Limits::default()).unwrap();
        state.save(&tables()).unwrap();
        let path = dir.path().join(STATE_FILE);
        let good = std::fs::read_to_string(&path).unwrap();
        let stale_kv = good.replace("\"ModifyIndex\":3", "\"ModifyIndex\":5");
        let bad_status = good.replace("\"Status\":\"passing\"", "\"Status\":\"fine\"");
        for broken in [
            &good[..good.len() / 2],
            "",
            "not json",
            &good.replace("\"Version\":1", "\"Version\":2"),
            &stale_kv,
            &bad_status,
        ] {
            std::fs::write(&path, broken).unwrap();
            let err = format!("{:#}", StateDir::open(dir.path(), &Limits::default()).unwrap_err());
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
    }

    #[test]
    fn a_state_larger_than_the_limit_is_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = StateDir::open(dir.path(), &Limits::default()).unwrap();
        state.save(&tables()).unwrap();
        let mut huge = tables();
        let value = vec![0u8; MAX_STATE / 4 * 3 + 1];
        huge.kv.insert("big".into(), KvEntry { value, flags: 0, create_index: 4, modify_index: 4 });
        assert!(matches!(state.save(&huge), Err(SaveError::TooLarge)));
        let (_, back) = StateDir::open(dir.path(), &Limits::default()).unwrap();
        assert!(!back.unwrap().kv.contains_key("big"), "the file still holds the last state saved");
    }

    #[test]
    fn a_file_past_the_limits_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = StateDir::open(dir.path(), &Limits::default()).unwrap();
        let path = dir.path().join(STATE_FILE);
        let small = Limits { services: 0, ..Limits::default() };
        state.save(&tables()).unwrap();
        let err = format!("{:#}", StateDir::open(dir.path(), &small).unwrap_err());
        assert!(err.contains(&path.display().to_string()) && err.contains("Too many services"), "{err}");

        let mut big = tables();
        let value = vec![7u8; Limits::default().value + 1];
        big.kv.insert("big".into(), KvEntry { value, flags: 0, create_index: 4, modify_index: 4 });
        state.save(&big).unwrap();
        let err = format!("{:#}", StateDir::open(dir.path(), &Limits::default()).unwrap_err());
        assert!(err.contains(&path.display().to_string()) && err.contains("too large"), "{err}");
        let short_keys = Limits { key: 0, ..Limits::default() };
        state.save(&tables()).unwrap();
        assert!(StateDir::open(dir.path(), &Limits::default()).is_ok());
        assert!(format!("{:#}", StateDir::open(dir.path(), &short_keys).unwrap_err()).contains("Key too long"));
        let few_bytes = Limits { kv_bytes: 3, ..Limits::default() };
        assert!(format!("{:#}", StateDir::open(dir.path(), &few_bytes).unwrap_err()).contains("KV store full"));
    }
}
