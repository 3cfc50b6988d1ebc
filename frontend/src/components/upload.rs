//! Upload a key set (plain lines, CSV, JSON lines, the seeds' operations
//! file), parse it with `shared::keyset`, and compare every algorithm on it
//! over the cluster's nodes: keys per node, mean, std dev, max/mean, and the
//! keys a join would move next to the ideal. All computed in the browser.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shardscope_shared::hash::key_hash;
use shardscope_shared::keyset;
use shardscope_shared::placement::analysis::{distribution, moved_keys, Distribution};
use shardscope_shared::placement::{build_for_keys, Member, PlacementSpec};
use wasm_bindgen::JsCast;

use super::chart::BarChart;
use crate::ws::Backend;

/// A key set: uploaded, or generated like seed 000's result sets.
#[derive(Clone, PartialEq)]
pub struct KeySet {
    pub name: String,
    pub hashes: Vec<u64>,
    generated: bool,
}

impl KeySet {
    /// `n` generated keys, `key-0` .. `key-{n-1}`.
    pub fn generated(n: usize) -> KeySet {
        let hashes = (0..n).map(|i| key_hash(format!("key-{i}").as_bytes())).collect();
        KeySet { name: format!("{n} generated keys"), hashes, generated: true }
    }

    /// The size of a generated set (the URL can carry it); `None` for a file.
    pub fn generated_size(&self) -> Option<usize> {
        self.generated.then_some(self.hashes.len())
    }
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
}

fn analyse(hashes: &[u64], members: &[Member]) -> Vec<Row> {
    let mut joined = members.to_vec();
    joined.push(Member::new("node-new"));
    PlacementSpec::all_defaults()
        .into_iter()
        .map(|spec| {
            let before = build_for_keys(&spec, members, hashes);
            // A join is add_member on the live placement (jump keeps its
            // buckets); bounded places the set afresh over the new members.
            let after = if matches!(spec, PlacementSpec::Bounded { .. }) {
                build_for_keys(&spec, &joined, hashes)
            } else {
                let mut p = build_for_keys(&spec, members, hashes);
                p.add_member(Member::new("node-new"));
                p
            };
            let mv = moved_keys(before.as_ref(), after.as_ref(), hashes);
            Row {
                ids: before.members().iter().map(|m| m.id.clone()).collect(),
                dist: distribution(before.as_ref(), hashes),
                moved: mv.fraction,
                ideal: mv.ideal,
                spec,
            }
        })
        .collect()
}

#[component]
pub fn Upload(backend: Backend, keyset: RwSignal<Option<KeySet>>) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let took_ms = RwSignal::new(None::<f64>);
    let on_change = move |ev: leptos::ev::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
        spawn_local(async move {
            let text = match wasm_bindgen_futures::JsFuture::from(file.text()).await {
                Ok(t) => t.as_string().unwrap_or_default(),
                Err(_) => return error.set(Some(format!("could not read {}", file.name()))),
            };
            let name = file.name();
            match keyset::parse(&text, keyset::detect(&name, &text)) {
                Ok(ops) => {
                    let hashes = keyset::keys(&ops).into_iter().map(key_hash).collect();
                    error.set(None);
                    keyset.set(Some(KeySet { name, hashes, generated: false }));
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
        let now = || web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0);
        let start = now();
        let rows = analyse(&set.hashes, &members);
        took_ms.set(Some(now() - start));
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
        </div>
        {move || error.get().map(|e| view! { <p class="error" data-testid="upload-error">{e}</p> })}
        {move || {
            let (set, rows) = rows.get()?;
            let took = took_ms.get().unwrap_or(0.0);
            Some(view! {
                <p data-testid="upload-summary" data-keys=set.hashes.len().to_string()>
                    {format!("{}: {} keys, all six algorithms in {took:.0} ms", set.name, set.hashes.len())}
                </p>
                <table class="compare" data-testid="compare">
                    <thead><tr><th>"algorithm"</th><th>"keys per node"</th><th>"mean"</th><th>"std dev"</th>
                        <th>"max/mean"</th><th>"moved on a join"</th></tr></thead>
                    <tbody>
                        {rows.into_iter().map(|r| view! {
                            <tr data-algorithm=r.spec.name() data-moved=r.moved.to_string()>
                                <td>{r.spec.name()}</td>
                                <td><BarChart ids=r.ids.clone() counts=r.dist.counts.clone() label=format!("keys per node, {}", r.spec.name()) /></td>
                                <td>{format!("{:.1}", r.dist.mean)}</td>
                                <td>{format!("{:.1}", r.dist.std_dev)}</td>
                                <td data-max-over-mean=r.dist.max_over_mean.to_string()>{format!("{:.3}", r.dist.max_over_mean)}</td>
                                <td>{format!("{:.1}% (ideal {:.1}%)", 100.0 * r.moved, 100.0 * r.ideal)}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })
        }}
    }
}
