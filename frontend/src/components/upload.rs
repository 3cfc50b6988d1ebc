//! Upload a key set (plain lines, CSV, JSON lines, the seeds' operations
//! file), parse it with `shared::keyset`, and compare every algorithm on it
//! over the cluster's nodes: keys per node, mean, std dev, max/mean, and the
//! keys a join would move next to the ideal. All computed in the browser.
//! Besides files and generated `key-i` sets, the shipped samples of
//! `shared::samples` (user ids, URLs, a Zipf workload) can be chosen.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shardscope_shared::hash::key_hash;
use shardscope_shared::keyset;
use shardscope_shared::placement::analysis::{distribution, joined, moved_keys, Distribution};
use shardscope_shared::placement::{build_for_keys, Member, PlacementSpec};
use shardscope_shared::protocol::{BatchSummary, ClientMsg, NodeReply, NodeRequest, ServerMsg};
use shardscope_shared::samples::Sample;
use std::sync::Arc;
use wasm_bindgen::JsCast;

use super::chart::{BarChart, Mark};
use super::page;
use crate::ws::backend;

/// A key set: uploaded, or generated like seed 000's result sets.
#[derive(Clone, PartialEq)]
pub struct KeySet {
    pub name: String,
    pub hashes: Arc<[u64]>,
    /// The hashes of the requests of a workload (the Zipf sample's reads),
    /// to chart requests per node as well as keys per node.
    pub requests: Option<Arc<[u64]>>,
    /// A file's (or a sample's) operations, as parsed; `None` for a generated set.
    ops: Option<Arc<Vec<NodeRequest>>>,
    /// How long reading, parsing and hashing the file took, in ms.
    read_ms: Option<f64>,
}

impl KeySet {
    /// `n` generated keys, `key-0` .. `key-{n-1}`.
    pub fn generated(n: usize) -> KeySet {
        let hashes = (0..n).map(|i| key_hash(generated_key(i).as_bytes())).collect();
        KeySet { name: format!("{n} generated keys"), hashes, requests: None, ops: None, read_ms: None }
    }

    /// One of the shipped samples: its keys, and its requests if it has some.
    pub fn sample(sample: Sample) -> KeySet {
        let keys = sample.keys();
        let hashes: Arc<[u64]> = keys.iter().map(|k| key_hash(k.as_bytes())).collect();
        let requests = sample.requests();
        let requests = (!requests.is_empty()).then(|| requests.into_iter().map(|i| hashes[i]).collect());
        let name = format!("sample: {} {}", keys.len(), sample.title());
        KeySet { name, hashes, requests, ops: Some(Arc::new(sample.operations())), read_ms: None }
    }

    /// The size of a generated set (the URL can carry it); `None` for a file.
    pub fn generated_size(&self) -> Option<usize> {
        self.ops.is_none().then_some(self.hashes.len())
    }

    /// What loading the set into the cluster runs: a file's operations, or a
    /// PUT of `value-i` under each generated `key-i`.
    fn operations(&self) -> Arc<Vec<NodeRequest>> {
        match &self.ops {
            Some(ops) => ops.clone(),
            None => Arc::new(
                (0..self.hashes.len())
                    .map(|i| NodeRequest::Put {
                        key: generated_key(i).into(),
                        value: format!("value-{i}").into(),
                        version: None,
                    })
                    .collect(),
            ),
        }
    }
}

/// The `i`th generated key.
pub(super) fn generated_key(i: usize) -> String {
    format!("key-{i}")
}

/// The preset sizes (seed 000 reports 5,000 to 100,000 keys).
const PRESETS: [usize; 4] = [5_000, 10_000, 50_000, 100_000];

/// One algorithm's numbers on the key set.
#[derive(Clone, PartialEq)]
struct Row {
    spec: PlacementSpec,
    ids: Vec<String>,
    dist: Distribution,
    moved: f64,
    ideal: f64,
    /// Time to place the set and count keys per node, in ms.
    ms: f64,
}

/// The page's clock, in ms (`performance.now()`).
pub(super) fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

/// Every algorithm's numbers on `hashes`; `now` is the clock (ms).
fn analyse(hashes: &[u64], members: &[Member], now: impl Fn() -> f64) -> Vec<Row> {
    PlacementSpec::all_defaults()
        .into_iter()
        .map(|spec| {
            let t0 = now();
            let before = build_for_keys(&spec, members, hashes);
            let dist = distribution(before.as_ref(), hashes);
            let ms = now() - t0;
            let after = joined(&spec, build_for_keys(&spec, members, hashes), hashes, Member::new("node-new"));
            let mv = moved_keys(before.as_ref(), after.as_ref(), hashes);
            Row {
                ids: before.members().iter().map(|m| m.id.clone()).collect(),
                dist,
                moved: mv.fraction,
                ideal: mv.ideal,
                ms,
                spec,
            }
        })
        .collect()
}

#[component]
pub fn Upload() -> impl IntoView {
    let backend = backend();
    let keyset = page().keyset;
    let error = RwSignal::new(None::<String>);
    let took_ms = RwSignal::new(None::<f64>);
    let on_change = move |ev: leptos::ev::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
        spawn_local(async move {
            let t0 = now_ms();
            let text = match wasm_bindgen_futures::JsFuture::from(file.text()).await {
                Ok(t) => t.as_string().unwrap_or_default(),
                Err(_) => return error.set(Some(format!("could not read {}", file.name()))),
            };
            let name = file.name();
            match keyset::parse(&text, keyset::detect(&name, &text)) {
                Ok(ops) => {
                    let hashes = keyset::keys(&ops).into_iter().map(key_hash).collect::<Vec<_>>().into();
                    error.set(None);
                    let read_ms = Some(now_ms() - t0);
                    keyset.set(Some(KeySet { name, hashes, requests: None, ops: Some(Arc::new(ops)), read_ms }));
                }
                Err(e) => error.set(Some(format!("{name}: {e}"))),
            }
        });
    };
    let rows = Memo::new(move |_| {
        let set = keyset.get()?;
        let members: Vec<Member> = backend.nodes.get().iter().map(|n| Member::new(&n.id)).collect();
        if members.is_empty() {
            return None;
        }
        let start = now_ms();
        let rows = analyse(&set.hashes, &members, now_ms);
        took_ms.set(Some(now_ms() - start));
        Some((set, rows))
    });
    view! {
        <h2>"Compare algorithms on your keys"</h2>
        <div class="kv-form">
            <input type="file" data-testid="upload-input" accept=".txt,.csv,.json,.jsonl,.ndjson" on:change=on_change />
            {PRESETS.map(|n| view! {
                <button class="small" data-testid=format!("preset-{n}")
                    on:click=move |_| keyset.set(Some(KeySet::generated(n)))>{format!("{}k keys", n / 1000)}</button>
            }).collect_view()}
            <span class="samples">"Samples: "
                {Sample::ALL.map(|s| view! {
                    <button class="small" data-testid=format!("sample-{}", s.slug())
                        on:click=move |_| keyset.set(Some(KeySet::sample(s)))>{s.title()}</button>
                }).collect_view()}
            </span>
        </div>
        {move || error.get().map(|e| view! { <p class="error" data-testid="upload-error">{e}</p> })}
        <LoadIntoCluster />
        {move || {
            let (set, rows) = rows.get()?;
            let took = took_ms.get().unwrap_or(0.0);
            Some(view! {
                <p data-testid="upload-summary" data-keys=set.hashes.len().to_string()>
                    {format!("{}: {} keys{}, all six algorithms in {took:.0} ms", set.name, set.hashes.len(),
                        set.read_ms.map(|ms| format!(" (read, parsed and hashed in {ms:.0} ms)")).unwrap_or_default())}
                </p>
                <table class="compare" data-testid="compare">
                    <thead><tr><th>"algorithm"</th><th>"keys per node"</th><th>"mean"</th><th>"std dev"</th>
                        <th>"max/mean"</th><th>"moved on a join"</th>
                        <th title="placing the set and counting keys per node, in this browser">"time"</th></tr></thead>
                    <tbody>
                        {rows.into_iter().map(|r| view! {
                            <tr data-algorithm=r.spec.name() data-moved=r.moved.to_string()>
                                <td>{r.spec.name()}</td>
                                <td><BarChart compact=true title=format!("keys per node, {}", r.spec.name())
                                    x_title="node" y_title="keys" labels=r.ids.clone()
                                    values=r.dist.counts.iter().map(|&c| c as f64).collect()
                                    marks=vec![Mark { label: format!("mean {:.1}", r.dist.mean), value: r.dist.mean }] /></td>
                                <td>{format!("{:.1}", r.dist.mean)}</td>
                                <td>{format!("{:.1}", r.dist.std_dev)}</td>
                                <td data-max-over-mean=r.dist.max_over_mean.to_string()>{format!("{:.3}", r.dist.max_over_mean)}</td>
                                <td>{format!("{:.1}% (ideal {:.1}%)", 100.0 * r.moved, 100.0 * r.ideal)}</td>
                                <td data-ms=r.ms.to_string()>{if r.ms < 10.0 { format!("{:.1} ms", r.ms) } else { format!("{:.0} ms", r.ms) }}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })
        }}
    }
}

/// Operations per `batch` request, and the most value bytes one carries
/// (well under the WebSocket's message limit, even base64-encoded).
const CHUNK_OPS: usize = 1000;
const CHUNK_BYTES: usize = 4 << 20;

/// A load into the cluster, as far as it got.
#[derive(Clone, Default)]
struct Loading {
    total: usize,
    done: usize,
    summary: BatchSummary,
    seconds: f64,
    finished: bool,
    /// Why it stopped early: refused by the backend, connection lost, or stopped.
    stopped: Option<String>,
}

/// "Load into cluster": runs the set's operations through the backend in
/// `batch` requests of up to [`CHUNK_OPS`], one after another (so each key's
/// operations keep the file's order), with live progress and a stop button.
#[component]
fn LoadIntoCluster() -> impl IntoView {
    let backend = backend();
    let keyset = page().keyset;
    let loading = RwSignal::new(None::<Loading>);
    let stop = StoredValue::new(false);
    let start = move |_| {
        if loading.with_untracked(|l| l.as_ref().is_some_and(|l| !l.finished)) {
            return;
        }
        let Some(ops) = keyset.with_untracked(|k| k.as_ref().map(KeySet::operations)) else { return };
        stop.set_value(false);
        spawn_local(async move {
            let t0 = now_ms();
            let mut state = Loading { total: ops.len(), ..Default::default() };
            loading.set(Some(state.clone()));
            for chunk in chunks(&ops) {
                if stop.get_value() {
                    state.stopped = Some("stopped".into());
                    break;
                }
                match backend.call(|id| ClientMsg::Batch { id, ops: chunk.to_vec() }).await {
                    Some(ServerMsg::BatchReply { summary, .. }) => state.summary.add(summary),
                    Some(ServerMsg::Reply { reply: NodeReply::Error { message, .. }, .. }) => {
                        state.stopped = Some(format!("the backend refused a batch: {message}"));
                        break;
                    }
                    _ => {
                        state.stopped = Some("the connection to the backend was lost".into());
                        break;
                    }
                }
                state.done += chunk.len();
                state.seconds = (now_ms() - t0) / 1000.0;
                loading.set(Some(state.clone()));
            }
            state.seconds = (now_ms() - t0) / 1000.0;
            state.finished = true;
            loading.set(Some(state));
        });
    };
    let running = move || loading.with(|l| l.as_ref().is_some_and(|l| !l.finished));
    view! {
        <div class="kv-form">
            <button data-testid="load-cluster" on:click=start
                disabled=move || running() || !backend.connected.get() || keyset.with(Option::is_none)>
                "Load into cluster"</button>
            <button class="small" data-testid="load-stop" on:click=move |_| stop.set_value(true)
                disabled=move || !running()>"Stop"</button>
        </div>
        {move || loading.get().map(|l| {
            let width = format!("width:{:.1}%", 100.0 * l.done as f64 / l.total.max(1) as f64);
            let rate = l.done as f64 / l.seconds.max(1e-3);
            let s = &l.summary;
            let head = if l.finished && l.stopped.is_none() { "Loaded" } else { "Loading" };
            let text = format!(
                "{head} {} of {} operations in {:.1} s ({rate:.0}/s): {} ok, {} not found, {} failed",
                l.done, l.total, l.seconds, s.ok, s.not_found, s.failed
            );
            view! {
                <div class="flow" data-testid="load-progress" data-done=l.done.to_string()
                    data-total=l.total.to_string() data-ok=s.ok.to_string()
                    data-not-found=s.not_found.to_string() data-failed=s.failed.to_string()
                    data-finished=l.finished.to_string()>
                    <span>{text}</span>
                    <div class="bar"><div class="fill" style=width></div></div>
                </div>
                {s.first_error.clone().map(|e| view! { <p class="error">{format!("first failure: {e}")}</p> })}
                {l.stopped.map(|e| view! { <p class="error" data-testid="load-stopped">{e}</p> })}
            }
        })}
    }
}

/// Splits operations into `batch` requests of at most [`CHUNK_OPS`]
/// operations and about [`CHUNK_BYTES`] of keys and values.
fn chunks(ops: &[NodeRequest]) -> Vec<&[NodeRequest]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, op) in ops.iter().enumerate() {
        let size = match op {
            NodeRequest::Put { key, value, .. } => key.len() + value.len(),
            NodeRequest::GetOne { key, .. } | NodeRequest::Delete { key, .. } => key.len(),
            _ => 0,
        };
        if i > start && (i - start == CHUNK_OPS || bytes + size > CHUNK_BYTES) {
            out.push(&ops[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < ops.len() {
        out.push(&ops[start..]);
    }
    out
}
