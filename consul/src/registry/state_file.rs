//! The registry's state file, `state.json` in its data dir: the index, the
//! nodes registered through the catalog, every service as it was
//! registered and every check with its definition and current status (with
//! their nodes and indexes), every KV pair as Consul's KV API returns it
//! (`Value` in base64, `Flags`, `CreateIndex`, `ModifyIndex`, `LockIndex`,
//! `Session`), and the sessions, as one JSON document:
//!
//! ```json
//! {"Version":2,"Index":7,"Nodes":[],
//!  "Services":[{"Node":"shardscope-embedded","Registration":{"ID":"node-1","Name":"shardscope-node",..},
//!               "CreateIndex":3,"ModifyIndex":3}],
//!  "Checks":[{"Node":"shardscope-embedded","Definition":{"CheckID":"service:node-1",..},
//!             "Status":"passing","Output":"..","CreateIndex":3,"ModifyIndex":4}],
//!  "KV":[{"Key":"cluster_size","Value":"Mw==","Flags":0,"CreateIndex":2,"ModifyIndex":2,"LockIndex":0}],
//!  "Sessions":[]}
//! ```
//!
//! Version 1 files (services with their one check, and KV) still load.
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

use super::agent::{build_check, is_maintenance, new_service};
use super::session::{Behavior, Session};
use super::{KvEntry, Limits, Node, Tables, AGENT, STATUSES};
use crate::api::{format_duration, parse_duration, CheckDefinition, KvPair, ServiceRegistration};

/// The state file's name in the data dir.
pub const STATE_FILE: &str = "state.json";
/// The largest state file, and so the most the registry holds with a data
/// dir: 64 MiB, over 90 KV values of the largest size (512 KiB, which is
/// 683 KiB in base64). A write that would pass it is refused.
pub const MAX_STATE: usize = 64 * 1024 * 1024;
const VERSION: u32 = 2;

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

/// Just the version, to pick the format.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Versioned {
    version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Saved {
    version: u32,
    index: u64,
    nodes: Vec<SavedNode>,
    services: Vec<SavedService>,
    checks: Vec<SavedCheck>,
    #[serde(rename = "KV")]
    kv: Vec<KvPair>,
    sessions: Vec<SavedSession>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SavedNode {
    node: String,
    address: String,
    tagged_addresses: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
    create_index: u64,
    modify_index: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SavedService {
    node: String,
    registration: ServiceRegistration,
    create_index: u64,
    modify_index: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SavedCheck {
    node: String,
    definition: CheckDefinition,
    status: String,
    output: String,
    create_index: u64,
    modify_index: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SavedSession {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    node: String,
    lock_delay: String,
    behavior: String,
    #[serde(rename = "TTL")]
    ttl: String,
    node_checks: Vec<String>,
    service_checks: Vec<String>,
    create_index: u64,
    modify_index: u64,
}

/// Version 1: services with their one check (status apart), and KV.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SavedV1 {
    #[serde(rename = "Version")]
    _version: u32,
    index: u64,
    services: Vec<SavedServiceV1>,
    #[serde(rename = "KV")]
    kv: Vec<KvPair>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SavedServiceV1 {
    registration: ServiceRegistration,
    #[serde(default)]
    check: Option<SavedCheckV1>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SavedCheckV1 {
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
        let corrupt = |e: serde_json::Error| {
            anyhow::anyhow!(
                "corrupt or truncated ({e}); the registry does not start without the catalog it held: \
                 restore the file, or move it away to start empty"
            )
        };
        let now = Instant::now();
        let tables = match serde_json::from_slice::<Versioned>(&bytes).map_err(corrupt)?.version {
            1 => serde_json::from_slice::<SavedV1>(&bytes).map_err(corrupt)?.into_tables(now, limits),
            VERSION => serde_json::from_slice::<Saved>(&bytes).map_err(corrupt)?.into_tables(now, limits),
            v => Err(format!("version {v} (this registry reads versions 1 and {VERSION})")),
        };
        let mut tables = tables.map_err(anyhow::Error::msg)?;
        tables.encoded_len = bytes.len();
        Ok(Some(tables))
    }

    /// Replaces the state file with `tables`, durably.
    pub(super) fn save(&self, tables: &Tables) -> Result<(), SaveError> {
        self.write(&encode(tables)?)
    }

    /// Replaces the file with `bytes` (an [`encode`]d state).
    pub(super) fn write(&self, bytes: &[u8]) -> Result<(), SaveError> {
        crate::file::replace(&self.path, bytes, 0o600).map_err(SaveError::Io)
    }
}

/// The state as saved; an error past [`MAX_STATE`].
pub(super) fn encode(tables: &Tables) -> Result<Vec<u8>, SaveError> {
    let bytes = serde_json::to_vec(&Saved::of(tables)).map_err(|e| SaveError::Io(e.into()))?;
    if bytes.len() > MAX_STATE {
        return Err(SaveError::TooLarge);
    }
    Ok(bytes)
}

impl Saved {
    fn of(t: &Tables) -> Saved {
        let mut saved = Saved {
            version: VERSION,
            index: t.index,
            nodes: Vec::new(),
            services: Vec::new(),
            checks: Vec::new(),
            kv: t.kv.iter().map(|(k, e)| e.to_pair(k)).collect(),
            sessions: t.sessions.values().map(SavedSession::of).collect(),
        };
        for (name, node) in &t.nodes {
            if name != AGENT {
                saved.nodes.push(SavedNode {
                    node: name.clone(),
                    address: node.address.clone(),
                    tagged_addresses: node.tagged_addresses.clone(),
                    meta: node.meta.clone(),
                    create_index: node.create_index,
                    modify_index: node.modify_index,
                });
            }
            saved.services.extend(node.services.values().map(|s| SavedService {
                node: name.clone(),
                registration: s.reg.clone(),
                create_index: s.create_index,
                modify_index: s.modify_index,
            }));
            saved.checks.extend(node.checks.values().map(|c| SavedCheck {
                node: name.clone(),
                definition: c.def.clone(),
                status: c.status.clone(),
                output: c.output.clone(),
                create_index: c.create_index,
                modify_index: c.modify_index,
            }));
        }
        saved
    }

    /// The tables this file describes, as of a start at `now`: checks in the
    /// status they had (a TTL check's window, and a TTL session's, starting
    /// at `now`; a critical check counting towards
    /// `DeregisterCriticalServiceAfter` from `now`). What a client could not
    /// write is not loaded either: everything must be within `limits` and
    /// as a write would make it.
    fn into_tables(self, now: Instant, limits: &Limits) -> Result<Tables, String> {
        if self.index == 0 {
            return Err("index 0 (a registry's index starts at 1)".into());
        }
        let index_fits = |what: &str, create: u64, modify: u64| match create <= modify && modify <= self.index {
            true => Ok(()),
            false => Err(format!("{what}: indexes do not fit the registry's index {}", self.index)),
        };
        let mut t = Tables { index: self.index, ..Tables::default() };
        for n in self.nodes {
            index_fits(&format!("node {:?}", n.node), n.create_index, n.modify_index)?;
            let node = Node {
                address: n.address,
                tagged_addresses: n.tagged_addresses,
                meta: n.meta,
                create_index: n.create_index,
                modify_index: n.modify_index,
                ..Node::agent()
            };
            if n.node == AGENT || t.nodes.insert(n.node.clone(), node).is_some() {
                return Err(format!("node {:?} is listed twice", n.node));
            }
        }
        for s in self.services {
            let what = format!("service {:?}", s.registration.name);
            index_fits(&what, s.create_index, s.modify_index)?;
            if s.registration.check.is_some() || !s.registration.checks.is_empty() {
                return Err(format!("{what}: its checks are kept apart, under Checks"));
            }
            let (mut service, _) = new_service(s.registration, s.create_index).map_err(|e| format!("{what}: {e}"))?;
            service.modify_index = s.modify_index;
            let node = t.nodes.get_mut(&s.node).ok_or(format!("{what}: on node {:?}, which is not listed", s.node))?;
            if node.services.insert(service.id.clone(), service).is_some() {
                return Err(format!("{what} is listed twice"));
            }
        }
        for c in self.checks {
            let what = format!("check {:?}", c.definition.check_id.as_deref().unwrap_or_default());
            index_fits(&what, c.create_index, c.modify_index)?;
            let node = t.nodes.get_mut(&c.node).ok_or(format!("{what}: on node {:?}, which is not listed", c.node))?;
            let sid = c.definition.service_id.clone().unwrap_or_default();
            let address = match node.services.get(&sid) {
                Some(s) => s.reg.address.clone(),
                None if sid.is_empty() => String::new(),
                None => return Err(format!("{what}: of service {sid:?}, which is not listed")),
            };
            let id = c.definition.check_id.clone().unwrap_or_default();
            let fixed = c.node != AGENT || is_maintenance(&id);
            let mut check =
                build_check(c.definition, &address, fixed, c.create_index).map_err(|e| format!("{what}: {e}"))?;
            if !STATUSES.contains(&c.status.as_str()) {
                return Err(format!("{what}: its status {:?} is not a check's", c.status));
            }
            check.set(&c.status, c.output, now, c.modify_index);
            check.modify_index = c.modify_index;
            if node.checks.insert(check.id.clone(), check).is_some() {
                return Err(format!("{what} is listed twice"));
            }
        }
        for s in self.sessions {
            let what = format!("session {:?}", s.id);
            index_fits(&what, s.create_index, s.modify_index)?;
            let session = s.into_session(now).map_err(|e| format!("{what}: {e}"))?;
            if !t.nodes.contains_key(&session.node) {
                return Err(format!("{what}: on node {:?}, which is not listed", session.node));
            }
            if t.sessions.insert(session.id.clone(), session).is_some() {
                return Err(format!("{what} is listed twice"));
            }
        }
        limits.counts_fit(&Tables::default(), &t, true).map_err(|(_, e)| e)?;
        load_kv(&mut t, self.kv, limits)?;
        Ok(t)
    }
}

impl SavedV1 {
    /// A version 1 file: its services (each with its check) on the agent's node.
    fn into_tables(self, now: Instant, limits: &Limits) -> Result<Tables, String> {
        if self.index == 0 {
            return Err("index 0 (a registry's index starts at 1)".into());
        }
        let mut t = Tables { index: self.index, ..Tables::default() };
        for saved in self.services {
            let name = saved.registration.name.clone();
            let (service, mut checks) =
                new_service(saved.registration, self.index).map_err(|e| format!("service {name:?}: {e}"))?;
            let one = checks.len() <= 1;
            match (checks.first_mut(), saved.check) {
                (Some(check), Some(s)) if one && STATUSES.contains(&s.status.as_str()) => {
                    check.set(&s.status, s.output, now, self.index);
                }
                (None, None) => {}
                _ => return Err(format!("service {:?}: its check's state does not match its definition", service.id)),
            }
            let agent = t.agent_mut();
            agent.checks.extend(checks.into_iter().map(|c| (c.id.clone(), c)));
            if agent.services.insert(service.id.clone(), service).is_some() {
                return Err(format!("service {name:?} is listed twice"));
            }
        }
        limits.counts_fit(&Tables::default(), &t, true).map_err(|(_, e)| e)?;
        load_kv(&mut t, self.kv, limits)?;
        Ok(t)
    }
}

impl SavedSession {
    fn of(s: &Session) -> SavedSession {
        SavedSession {
            id: s.id.clone(),
            name: s.name.clone(),
            node: s.node.clone(),
            lock_delay: format_duration(s.lock_delay),
            behavior: s.behavior.name().into(),
            ttl: s.ttl.map(format_duration).unwrap_or_default(),
            node_checks: s.node_checks.clone(),
            service_checks: s.service_checks.clone(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }

    fn into_session(self, now: Instant) -> Result<Session, String> {
        let duration =
            |field: &str, text: &str| parse_duration(text).ok_or(format!("{field} {text:?} is not a duration"));
        let mut session = Session {
            lock_delay: duration("LockDelay", &self.lock_delay)?,
            behavior: Behavior::parse(&self.behavior).ok_or(format!("Behavior {:?}", self.behavior))?,
            ttl: (!self.ttl.is_empty()).then(|| duration("TTL", &self.ttl)).transpose()?,
            id: self.id,
            name: self.name,
            node: self.node,
            node_checks: self.node_checks,
            service_checks: self.service_checks,
            create_index: self.create_index,
            modify_index: self.modify_index,
            deadline: None,
        };
        session.renew(now);
        Ok(session)
    }
}

/// Loads the KV pairs into `t`, each within `limits` and its lock's
/// session one of `t`'s.
fn load_kv(t: &mut Tables, pairs: Vec<KvPair>, limits: &Limits) -> Result<(), String> {
    let mut bytes = 0usize;
    for pair in pairs {
        limits.key_fits(&pair.key).map_err(|(_, e)| e)?;
        let value = base64::engine::general_purpose::STANDARD
            .decode(pair.value.as_deref().unwrap_or_default())
            .map_err(|e| format!("key {:?}: value is not base64: {e}", pair.key))?;
        limits.value_fits(value.len()).map_err(|(_, e)| format!("key {:?}: {e}", pair.key))?;
        bytes = bytes.saturating_add(pair.key.len() + value.len());
        if pair.create_index > pair.modify_index || pair.modify_index > t.index {
            return Err(format!("key {:?}: indexes do not fit the registry's index {}", pair.key, t.index));
        }
        if let Some(s) = pair.session.as_ref().filter(|s| !t.sessions.contains_key(*s)) {
            return Err(format!("key {:?}: locked by session {s:?}, which is not listed", pair.key));
        }
        let entry = KvEntry {
            value,
            flags: pair.flags,
            create_index: pair.create_index,
            modify_index: pair.modify_index,
            lock_index: pair.lock_index,
            session: pair.session,
        };
        if t.kv.insert(pair.key.clone(), entry).is_some() {
            return Err(format!("key {:?} is listed twice", pair.key));
        }
    }
    limits.kv_fits(t.kv.len(), bytes, true).map_err(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        let reg = ServiceRegistration {
            id: Some("a".into()),
            name: "svc".into(),
            check: Some(CheckDefinition { ttl: Some("30s".into()), ..Default::default() }),
            ..Default::default()
        };
        let (service, mut checks) = new_service(reg, 1).unwrap();
        checks[0].set("passing", "fine".into(), Instant::now(), 1);
        let entry = KvEntry {
            value: b"\x00bytes".to_vec(),
            flags: 42,
            create_index: 2,
            modify_index: 3,
            lock_index: 0,
            session: None,
        };
        let mut t = Tables { index: 4, ..Tables::default() };
        let agent = t.agent_mut();
        agent.checks.insert(checks[0].id.clone(), checks.remove(0));
        agent.services.insert("a".into(), service);
        t.kv.insert("k".into(), entry);
        t
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
        let check = &back.agent().checks["service:a"];
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
            &good.replace("\"Version\":2", "\"Version\":3"),
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
        huge.kv.insert(
            "big".into(),
            KvEntry { value, flags: 0, create_index: 4, modify_index: 4, lock_index: 0, session: None },
        );
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
        big.kv.insert(
            "big".into(),
            KvEntry { value, flags: 0, create_index: 4, modify_index: 4, lock_index: 0, session: None },
        );
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

    #[test]
    fn a_version_1_file_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = r#"{"Version":1,"Index":5,
            "Services":[{"Registration":{"ID":"node-1","Name":"shardscope-node","Address":"127.0.0.1","Port":5001,
                "Tags":[],"Meta":{},"Check":{"TTL":"30s","Status":"passing"}},"Check":{"Status":"passing","Output":"ok"}}],
            "KV":[{"Key":"cluster_size","Value":"Mw==","Flags":0,"CreateIndex":2,"ModifyIndex":3,"LockIndex":0}]}"#;
        std::fs::write(dir.path().join(STATE_FILE), v1).unwrap();
        let (state, back) = StateDir::open(dir.path(), &Limits::default()).unwrap();
        let back = back.expect("the version 1 state");
        assert_eq!(back.index, 5);
        assert_eq!(back.kv["cluster_size"].value, b"3");
        let check = &back.agent().checks["service:node-1"];
        assert_eq!(
            (check.status.as_str(), check.output.as_str(), check.service_id.as_str()),
            ("passing", "ok", "node-1")
        );
        assert_eq!(back.agent().services["node-1"].reg.port, 5001);
        // The next save is version 2, and reads back the same.
        state.save(&back).unwrap();
        assert!(std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap().starts_with("{\"Version\":2"));
        let (_, again) = StateDir::open(dir.path(), &Limits::default()).unwrap();
        assert_eq!(again.unwrap().agent().checks["service:node-1"].output, "ok");
    }
}
