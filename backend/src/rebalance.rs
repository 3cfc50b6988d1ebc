//! The rebalancer: moves keys when a node joins or leaves or the algorithm
//! changes, one change at a time, without losing an acknowledged write.
//!
//! For each change it builds the target placement from the current one (so
//! jump keeps its bucket history), publishes the plan, and switches routing
//! into two-placement mode (see [`crate::cluster`]). Then, node by node, it
//! pages through each current member's keys with `SCAN` (on a ring, only
//! those in the arcs that change owner), tombstones included; under the
//! exclusive routing gate it copies the page's moving keys to their new
//! owners with their versions (`PUT_BATCH`: the node keeps whichever copy
//! is newer, so a newer client write always wins, and a tombstone keeps an
//! older value from coming back) and forgets them at the source
//! (`DELETE_BATCH`). Keys only leave a source, never arrive there, so the
//! scan cursor never skips one. When every source
//! is done the target becomes the placement. Progress goes to every page at
//! least five times a second. A change may carry its own rate (keys per
//! second; the page slows a lesson's join so keys visibly travel); the
//! others keep the serve-wide [`Settings`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::analysis::{ideal_fraction, moved_ranges};
use shardscope_shared::placement::{build, build_for_keys, restore, Member, Placement, PlacementSpec};
use shardscope_shared::protocol::{
    Datum, Entry, Flow, NodeInfo, NodeReply, NodeRequest, Progress, ServerMsg, MAX_MESSAGE,
};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::Cluster;
use crate::node_client::NodeClient;

/// A membership or placement change.
#[derive(Clone, Debug)]
pub enum Change {
    Join(NodeInfo),
    Leave(String),
    Placement(PlacementSpec),
    /// Finish the change a restarted `serve` found recorded: move every key
    /// to where the routing target (restored from the state) places it.
    Resume,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Join(n) => write!(f, "join {}", n.id),
            Change::Leave(id) => write!(f, "leave {id}"),
            Change::Placement(spec) => write!(f, "placement {}", spec.name()),
            Change::Resume => write!(f, "resume the interrupted change"),
        }
    }
}

/// How fast to move keys.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Keys scanned per batch (and per hold of the routing gate).
    pub batch: usize,
    /// Most keys moved per second; `None` for as fast as it goes.
    pub max_keys_per_sec: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { batch: 1000, max_keys_per_sec: None }
    }
}

impl Settings {
    /// These settings for one change moving at most `rate` keys per
    /// second, in batches of at most a fifth of that (at least 1), so its
    /// progress advances several times a second.
    pub fn at_rate(self, rate: u64) -> Settings {
        let rate = rate.max(1);
        let fifth = usize::try_from(rate / 5).unwrap_or(usize::MAX).max(1);
        Settings { batch: self.batch.min(fifth), max_keys_per_sec: Some(rate) }
    }
}

type Outcome = Result<Progress, String>;

/// A queued change: its own rate (keys per second) if it has one, and who
/// waits for its end.
type Job = (Change, Option<u64>, Option<oneshot::Sender<Outcome>>);

/// Handle on the rebalancing task; cheap to clone.
#[derive(Clone)]
pub struct Rebalancer {
    jobs: mpsc::UnboundedSender<Job>,
    /// Rates asked for the joins of nodes launched but not yet seen by the
    /// membership watch (which submits their join), by node id.
    join_rates: Arc<Mutex<HashMap<String, u64>>>,
}

impl Rebalancer {
    pub fn spawn(cluster: Cluster, settings: Settings) -> Self {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let join_rates: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let rates = join_rates.clone();
        tokio::spawn(async move {
            while let Some((change, rate, done)) = rx.recv().await {
                let rate = match &change {
                    Change::Join(info) => rate.or_else(|| rates.lock().ok()?.remove(&info.id)),
                    _ => rate,
                };
                let this = rate.map_or(settings, |r| settings.at_rate(r));
                // A change recorded as in progress (found by a restart) is
                // finished first: nothing may start from a half-moved state.
                if cluster.pending().is_some() && !matches!(change, Change::Resume) {
                    if let Err(message) = rebalance(&cluster, &Change::Resume, settings).await {
                        tracing::warn!("finishing the interrupted change failed: {message}; rolling back");
                        roll_back(&cluster, settings).await;
                    }
                }
                let mut outcome = rebalance(&cluster, &change, this).await;
                if let Err(message) = &outcome {
                    tracing::warn!(%change, "rebalance failed: {message}");
                    cluster.publish(ServerMsg::RebalanceError { change: change.to_string(), message: message.clone() });
                    if cluster.pending().is_some() {
                        // It could not finish: move every key back to where
                        // it was, so that each has one owner that holds it.
                        let rolled = roll_back(&cluster, settings).await;
                        outcome = Err(format!("{message}; rolled back ({} keys moved back)", rolled.keys_moved));
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(outcome);
                }
            }
        });
        Rebalancer { jobs, join_rates }
    }

    /// Queues a change without waiting for it.
    pub fn submit(&self, change: Change) {
        let _ = self.jobs.send((change, None, None));
    }

    /// Queues a change and waits until its keys have moved, at most `rate`
    /// keys per second when given (else at the serve-wide setting).
    pub async fn run(&self, change: Change, rate: Option<u64>) -> Outcome {
        let (tx, rx) = oneshot::channel();
        self.jobs.send((change, rate, Some(tx))).map_err(|_| "the rebalancer has stopped".to_string())?;
        rx.await.map_err(|_| "the rebalancer has stopped".to_string())?
    }

    /// The join of node `id` (launched, not yet registered) moves at most
    /// `rate` keys per second; `None` forgets such a request.
    pub fn pace_join(&self, id: &str, rate: Option<u64>) {
        if let Ok(mut rates) = self.join_rates.lock() {
            match rate {
                Some(rate) => rates.insert(id.to_string(), rate),
                None => rates.remove(id),
            };
        }
    }
}

const GAVE_UP: &str = "gave up";
/// Tries of one batch before a change is rolled back (about a minute: long
/// enough for supervision to bring a crashed node back).
const RETRIES: u32 = 30;

/// A copy of a placement, history included.
fn copy(spec: &PlacementSpec, p: &dyn Placement) -> Box<dyn Placement> {
    restore(spec, p.members(), p.slots().as_deref())
}

/// What a rebalance does: route with `from` and `to`, move every key from
/// where `from` (or an earlier life) put it to where `to` does.
struct Plan {
    label: String,
    /// `None`: the live placement, as it is (bounded's assignment kept).
    from: Option<(PlacementSpec, Box<dyn Placement>)>,
    to: (PlacementSpec, Box<dyn Placement>),
    /// Nodes read whole (they may hold keys anywhere): joiners.
    read_whole: Vec<String>,
    /// Sources skipped because they are down: their keys are lost.
    skip: Vec<String>,
}

async fn rebalance(cluster: &Cluster, change: &Change, settings: Settings) -> Outcome {
    let (spec, members, slots) = cluster.placement_state();
    let old = restore(&spec, &members, slots.as_deref());
    let label = change.to_string();
    let plan = match change {
        Change::Join(info) => {
            if !cluster.knows(&info.id) {
                cluster.connect(info.clone()).await.map_err(|e| format!("cannot reach {}: {e:#}", info.id))?;
            }
            let mut t = copy(&spec, old.as_ref());
            t.add_member(Member::new(&info.id));
            Plan { label, from: None, to: (spec, t), read_whole: vec![info.id.clone()], skip: vec![] }
        }
        Change::Leave(id) => {
            if !members.iter().any(|m| &m.id == id) {
                return Err(format!("{id} is not a member"));
            }
            if members.len() == 1 {
                return Err(format!("{id} is the last node: its keys would have nowhere to go"));
            }
            let mut t = copy(&spec, old.as_ref());
            t.remove_member(id);
            // A node that is down cannot hand its keys over: removing it
            // loses them (said in the summary) rather than wait forever.
            let skip = if cluster.wait_healthy(id, SETTLE).await { vec![] } else { vec![id.clone()] };
            Plan { label, from: None, to: (spec, t), read_whole: vec![], skip }
        }
        Change::Placement(s) => {
            let t = build(s, &members);
            Plan { label, from: None, to: (s.clone(), t), read_whole: vec![], skip: vec![] }
        }
        Change::Resume => {
            let Some(pending) = cluster.pending() else { return Ok(Progress::default()) };
            let to_members: Vec<Member> = pending.members.iter().map(|m| m.member()).collect();
            let t = restore(&pending.placement, &to_members, pending.slots.as_deref());
            let read_whole = to_members.iter().filter(|m| !members.contains(m)).map(|m| m.id.clone()).collect();
            let label = if pending.change.is_empty() { label } else { pending.change.clone() };
            Plan { label, from: None, to: (pending.placement, t), read_whole, skip: vec![] }
        }
    };
    run(cluster, plan, settings).await
}

/// Moves every key back to where the current placement puts it, after a
/// change that could not finish: routing goes from the interrupted target
/// back to the current placement. Sources that are down are skipped (keys
/// only they held are lost; the rest keep one owner that holds them).
/// Retried until it succeeds.
async fn roll_back(cluster: &Cluster, settings: Settings) -> Progress {
    let Some(pending) = cluster.pending() else { return Progress::default() };
    let (spec, members, slots) = cluster.placement_state();
    let to_members: Vec<Member> = pending.members.iter().map(|m| m.member()).collect();
    let read_whole: Vec<String> = to_members.iter().filter(|m| !members.contains(m)).map(|m| m.id.clone()).collect();
    let mut skip = Vec::new();
    for m in to_members.iter().chain(&members) {
        if !skip.contains(&m.id) && !cluster.wait_healthy(&m.id, SETTLE).await {
            skip.push(m.id.clone());
        }
    }
    let mut delay = Duration::from_millis(500);
    loop {
        // The same plan every time: from the interrupted target back to the
        // placement before it, whatever a failed try left recorded.
        let plan = Plan {
            label: format!("roll back {}", pending.change),
            from: Some((pending.placement.clone(), restore(&pending.placement, &to_members, pending.slots.as_deref()))),
            to: (spec.clone(), restore(&spec, &members, slots.as_deref())),
            read_whole: read_whole.clone(),
            skip: skip.clone(),
        };
        match run(cluster, plan, settings).await {
            Ok(progress) => return progress,
            Err(message) => {
                cluster.publish(ServerMsg::RebalanceError { change: "roll back".into(), message });
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How long a node that is not healthy gets to come back (a supervised
/// restart takes well under a second) before a leave or a roll-back counts
/// it as down.
const SETTLE: Duration = Duration::from_secs(5);

async fn run(cluster: &Cluster, plan: Plan, settings: Settings) -> Outcome {
    let started = Instant::now();
    let Plan { label, from, to: (new_spec, new), read_whole, skip } = plan;
    let from_live = from.is_none();
    let (old_spec, old) = match from {
        Some(from) => from,
        None => {
            let (spec, members, slots) = cluster.placement_state();
            let old = restore(&spec, &members, slots.as_deref());
            (spec, old)
        }
    };
    // Every node of either placement is a source: a key may be on either
    // side of an interrupted change, and a joiner may hold keys from an
    // earlier life.
    let mut source_ids: Vec<String> = old.members().iter().chain(new.members()).map(|m| m.id.clone()).collect();
    source_ids.sort_unstable();
    source_ids.dedup();
    source_ids.retain(|id| !skip.contains(id));
    let sources: Vec<(String, NodeClient)> =
        source_ids.iter().filter_map(|id| cluster.client(id).map(|c| (id.clone(), c))).collect();
    let keys_total = count_keys(&sources).await;
    // On a ring only the arcs that change owner move: members are asked for
    // the keys there and no others. A joiner is read whole.
    let ranges = moved_ranges(old.as_ref(), new.as_ref());
    let ideal = ideal_fraction(old.members(), new.members());
    cluster.publish(ServerMsg::RebalancePlan {
        change: label.clone(),
        from: old.members().iter().map(|m| m.id.clone()).collect(),
        to: new.members().iter().map(|m| m.id.clone()).collect(),
        placement: new_spec.clone(),
        keys_total,
        ideal,
    });
    {
        let _routing = cluster.lock_routing().await;
        // A key-set placement (bounded) is placed over every key there is,
        // read while no write can slip in.
        let new = if new.depends_on_keys() {
            build_for_keys(&new_spec, new.members(), &all_hashes(&sources).await?)
        } else {
            new
        };
        // Recorded before the first key moves: a restart finishes it. A
        // change that was already under way stays routed as it is when
        // this fails (both placements); a fresh one has moved nothing yet.
        let fresh = cluster.pending().is_none();
        // Routing keeps the live placement unless the plan routes from another.
        let replaced = if from_live { None } else { Some((old_spec, old)) };
        cluster.begin_rebalance(&label, replaced, (new_spec.clone(), new));
        if let Err(e) = cluster.persist().await {
            if fresh {
                cluster.abandon_rebalance();
            }
            return Err(format!("cannot record the change in Consul KV: {e:#}"));
        }
    }
    cluster.metrics.set_rebalancing(true);
    let mut progress =
        Progress { change: label.clone(), keys_total, ideal, unreachable: skip.clone(), ..Default::default() };
    let mut flows: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    let mut last_report = Instant::now();
    for (source_id, _) in &sources {
        let mut cursor: Option<Datum> = None;
        let ranges = if read_whole.contains(source_id) { None } else { ranges.clone() };
        loop {
            let mut attempt = 0;
            let page = loop {
                let scan = NodeRequest::Scan {
                    cursor: cursor.clone(),
                    limit: settings.batch,
                    ranges: ranges.clone(),
                    tombstones: true,
                    prefix: None,
                };
                // Asked each try: a source restarted meanwhile is reached
                // at its new address.
                let Some(source) = cluster.client(source_id) else {
                    return Err(format!("{source_id} is no longer known"));
                };
                match move_batch(cluster, source_id, &source, scan).await {
                    Ok(page) => break page,
                    Err(message) if attempt < RETRIES => {
                        attempt += 1;
                        cluster.publish(ServerMsg::RebalanceError { change: label.clone(), message });
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)))).await;
                    }
                    Err(message) => {
                        cluster.metrics.set_rebalancing(false);
                        return Err(format!("{GAVE_UP} after {RETRIES} retries: {message}"));
                    }
                }
            };
            progress.keys_scanned += page.scanned;
            for (to, keys, bytes) in page.moved {
                cluster.metrics.moved(keys, bytes);
                progress.keys_moved += keys;
                progress.bytes_moved += bytes;
                let flow = flows.entry((source_id.clone(), to)).or_default();
                flow.0 += keys;
                flow.1 += bytes;
            }
            let elapsed = started.elapsed().as_secs_f64();
            if last_report.elapsed() >= Duration::from_millis(100) {
                last_report = Instant::now();
                cluster.publish(ServerMsg::RebalanceProgress { progress: finish(&progress, &flows, elapsed) });
            }
            if let Some(rate) = settings.max_keys_per_sec {
                let due = Duration::from_secs_f64(progress.keys_moved as f64 / rate.max(1) as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    {
        let _routing = cluster.lock_routing().await;
        cluster.finish_rebalance();
    }
    // Until this is recorded, a restart runs the (finished) change again,
    // which moves nothing more.
    let mut delay = Duration::from_millis(100);
    for _ in 0..10 {
        match cluster.persist().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!("cannot record the finished change yet: {e:#}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    cluster.metrics.set_rebalancing(false);
    let done = finish(&progress, &flows, started.elapsed().as_secs_f64());
    if !skip.is_empty() {
        tracing::warn!(?skip, "these nodes were down: the keys only they held are lost");
    }
    cluster.publish(ServerMsg::RebalanceDone { progress: done.clone() });
    tracing::info!(change = %label, moved = done.keys_moved, seconds = done.seconds, "rebalance done");
    Ok(done)
}

fn finish(p: &Progress, flows: &BTreeMap<(String, String), (u64, u64)>, seconds: f64) -> Progress {
    Progress {
        seconds,
        keys_per_sec: if seconds > 0.0 { p.keys_moved as f64 / seconds } else { 0.0 },
        fraction: if p.keys_total > 0 { p.keys_moved as f64 / p.keys_total as f64 } else { 0.0 },
        flows: flows
            .iter()
            .map(|((from, to), (keys, bytes))| Flow { from: from.clone(), to: to.clone(), keys: *keys, bytes: *bytes })
            .collect(),
        ..p.clone()
    }
}

/// The hashes of every key on `sources`.
async fn all_hashes(sources: &[(String, NodeClient)]) -> Result<Vec<u64>, String> {
    let mut hashes = Vec::new();
    for (id, client) in sources {
        hashes.extend(key_hashes(id, client).await?);
    }
    Ok(hashes)
}

/// The hashes of every live key on one node, paged through with `SCAN`.
pub async fn key_hashes(id: &str, client: &NodeClient) -> Result<Vec<u64>, String> {
    let mut hashes = Vec::new();
    let mut cursor = None;
    loop {
        let limit = shardscope_shared::protocol::MAX_SCAN_LIMIT;
        let scan = NodeRequest::Scan { cursor, limit, ranges: None, tombstones: false, prefix: None };
        let (page, next) = match client.request(&scan).await {
            NodeReply::Page { page, next } => (page, next),
            other => return Err(format!("SCAN on {id}: {other:?}")),
        };
        hashes.extend(page.iter().map(|e| key_hash(e.key.as_bytes())));
        match next {
            Some(n) => cursor = Some(n),
            None => return Ok(hashes),
        }
    }
}

async fn count_keys(sources: &[(String, NodeClient)]) -> u64 {
    let mut total = 0;
    for (_, client) in sources {
        if let NodeReply::Stats { stats } = client.request(&NodeRequest::Stats).await {
            total += stats.keys;
        }
    }
    total
}

/// `entries` in runs whose JSON stays under `limit` bytes (an entry bigger
/// than that alone in its run).
fn by_json_size(entries: Vec<Entry>, limit: usize) -> Vec<Vec<Entry>> {
    let mut runs: Vec<Vec<Entry>> = Vec::new();
    let mut size: usize = 0;
    for e in entries {
        let len = serde_json::to_vec(&e).map_or(usize::MAX, |j| j.len() + 1);
        match runs.last_mut() {
            Some(run) if size.saturating_add(len) <= limit => {
                size += len;
                run.push(e);
            }
            _ => {
                size = len;
                runs.push(vec![e]);
            }
        }
    }
    runs
}

/// One page of a source's keys, moved.
struct Page {
    scanned: u64,
    /// (target, keys, bytes) per target.
    moved: Vec<(String, u64, u64)>,
    next: Option<Datum>,
}

/// Under the exclusive routing gate: runs `scan` (a `SCAN`) on `source`,
/// copies the page's keys (and tombstones) whose owner under the target is
/// another node there, newer-wins, and forgets them at `source`.
async fn move_batch(
    cluster: &Cluster,
    source_id: &str,
    source: &NodeClient,
    scan: NodeRequest,
) -> Result<Page, String> {
    let _routing = cluster.lock_routing().await;
    let (entries, next) = match source.request(&scan).await {
        NodeReply::Page { page, next } => (page, next),
        other => return Err(format!("SCAN on {source_id}: {other:?}")),
    };
    let scanned = entries.len() as u64;
    let mut by_target: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for e in entries {
        if let Some(v) = e.version {
            cluster.observe(v);
        }
        match cluster.target_owner(e.key.as_bytes()) {
            Some(owner) if owner != source_id => by_target.entry(owner).or_default().push(e),
            _ => {}
        }
    }
    let mut moved = Vec::new();
    for (to, entries) in by_target {
        let client = cluster.client(&to).ok_or_else(|| format!("no connection to {to}"))?;
        let bytes: u64 = entries.iter().map(|e| (e.key.len() + e.value.len()) as u64).sum();
        let keys: Vec<Datum> = entries.iter().map(|e| e.key.clone()).collect();
        let n = keys.len() as u64;
        // Each PUT_BATCH under half the message limit as JSON (escapes can
        // make a value's JSON several times its size); copies need no
        // atomicity across keys, only each key's newer-wins.
        for chunk in by_json_size(entries, MAX_MESSAGE / 2) {
            match client.request(&NodeRequest::PutBatch { entries: chunk }).await {
                NodeReply::Ok { .. } => {}
                other => return Err(format!("PUT_BATCH on {to}: {other:?}")),
            }
        }
        match source.request(&NodeRequest::DeleteBatch { keys }).await {
            NodeReply::Ok { .. } => {}
            other => return Err(format!("DELETE_BATCH on {source_id}: {other:?}")),
        }
        moved.push((to, n, bytes));
    }
    Ok(Page { scanned, moved, next })
}
