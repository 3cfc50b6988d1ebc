//! The lesson: six steps a teacher walks with *Next* / *Back* or the keys
//! (arrows, PageDown/PageUp as presenter clickers send, Home/End), from a
//! key's hash to why consistent hashing moves fewer keys than modulo, what
//! virtual nodes do for balance, and how the other algorithms decide. Every
//! number is computed here with `shared/` on the lesson's keys; steps 2
//! and 4 can also run their join on the live cluster, slowed (a `rate` on
//! the change) so it takes about ten seconds, next to shared's prediction.

use std::sync::Arc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use shardscope_shared::hash::{key_hash, ring_fraction};
use shardscope_shared::placement::analysis::{self, distribution, moved_keys, Distribution, Movement};
use shardscope_shared::placement::ring::Ring;
use shardscope_shared::placement::{
    build, build_for_keys, restore, Algorithm, Member, Placement, PlacementSpec, Settings,
};
use shardscope_shared::protocol::{ClientMsg, NodeReply, NodeRequest, ServerMsg, RATE};
use wasm_bindgen::JsCast;

use super::ring::{Drawn, RingView};
use super::upload::{generated_key, KeySet};
use super::{node_colour, node_pattern, page};
use crate::ws::{backend, Backend};

/// How many steps the lesson has (replicas, a seventh, comes with replication).
pub const STEPS: usize = 6;

/// The keys the lesson names, hashed in step 1 and drawn on every ring.
pub const NAMED: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];

/// The sample `key-0` .. written with the named keys and measured on.
pub const SAMPLE: usize = 3000;

/// About how long a live change takes: its rate is the keys it moves over this.
const SECONDS: u64 = 10;

/// Step 5's slider range (virtual nodes per node).
const MAX_VNODES: u32 = 500;

/// The algorithms step 6 shows, each with its rule in a sentence.
const OTHERS: [(Algorithm, &str); 4] = [
    (Algorithm::Rendezvous, "Every node scores the key (a hash of key and node together); the highest score wins."),
    (Algorithm::Jump, "The key jumps through bucket numbers drawn from a random sequence seeded by its hash; the last jump below the node count is its bucket."),
    (Algorithm::Maglev, "Each node fills the slots of a lookup table in its own order of preference; a key's slot, hash mod the table size, names its node."),
    (Algorithm::Bounded, "A ring, but a node already holding its capacity (1.25 × the mean) passes the key on clockwise."),
];

fn title(step: usize) -> &'static str {
    match step {
        1 => "Keys and a hash",
        2 => "Modulo: a fourth node joins",
        3 => "A ring with one point per node",
        4 => "A join on that ring",
        5 => "Virtual nodes",
        _ => "Rendezvous, jump, Maglev, bounded loads",
    }
}

/// The lesson's keys: the named ones, then the sample.
fn lesson_hashes() -> Arc<[u64]> {
    let sample = KeySet::generated(SAMPLE);
    NAMED.iter().map(|k| key_hash(k.as_bytes())).chain(sample.hashes.iter().copied()).collect()
}

/// The next `node-N` after the highest among `members`: the id the
/// backend most likely gives the node it adds.
fn next_id(members: &[Member]) -> String {
    let last = members.iter().filter_map(|m| m.id.strip_prefix("node-")?.parse::<u64>().ok()).max().unwrap_or(0);
    format!("node-{}", last + 1)
}

/// `spec` over `members`, and after `joiner` joins it, as the cluster does
/// it (shared's `analysis::joined`).
fn join(
    spec: &PlacementSpec,
    members: &[Member],
    joiner: &str,
    hashes: &[u64],
) -> (Box<dyn Placement>, Box<dyn Placement>) {
    let after = analysis::joined(spec, build_for_keys(spec, members, hashes), hashes, Member::new(joiner));
    (build_for_keys(spec, members, hashes), after)
}

/// The keys the cluster holds (its nodes' counts), else `fallback`.
async fn cluster_keys(backend: Backend, fallback: usize) -> usize {
    match backend.call(|id| ClientMsg::Stats { id }).await {
        Some(ServerMsg::Stats { stats, .. }) if !stats.is_empty() => {
            usize::try_from(stats.values().map(|s| s.keys).sum::<u64>()).unwrap_or(usize::MAX)
        }
        _ => fallback,
    }
}

/// Of `keys` in the cluster, as many as `moved` of the lesson's `hashes`
/// are of them (shared's fraction, applied to what the cluster holds).
fn scaled(moved: usize, hashes: &[u64], keys: usize) -> usize {
    let fraction = moved as f64 / hashes.len().max(1) as f64;
    (fraction * keys.max(hashes.len()) as f64).ceil() as usize
}

/// A change's rate: the keys it moves over [`SECONDS`], within [`RATE`].
fn rate_for(keys: usize) -> u64 {
    (keys as u64).div_ceil(SECONDS).clamp(*RATE.start(), *RATE.end())
}

fn pct(f: f64) -> String {
    format!("{:.1}%", 100.0 * f)
}

/// What one step draws: its placement and the one before its change.
#[derive(Clone)]
struct Scene {
    /// What the scene was built from, so an unchanged scene is not redrawn.
    key: String,
    drawn: Drawn,
    before: Option<Arc<dyn Placement>>,
}

impl PartialEq for Scene {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

/// Where a live run of step 2 or 4 is.
#[derive(Clone, Debug, Default, PartialEq)]
enum Phase {
    #[default]
    Idle,
    /// Changing the cluster's placement to the step's.
    Placing,
    /// The node was asked for; its join is moving keys.
    Joining,
    Joined,
    /// Putting the cluster back.
    Restoring,
    /// The backend refused or failed: the step stays a simulation.
    Refused(String),
}

impl Phase {
    /// Its name, for the page's `data-phase`.
    fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Placing => "placing",
            Phase::Joining => "joining",
            Phase::Joined => "joined",
            Phase::Restoring => "restoring",
            Phase::Refused(_) => "refused",
        }
    }
}

/// The lesson's change to the live cluster. It is kept by the App (see
/// [`provide_live_state`]), not by the lesson, so leaving the lesson and
/// coming back mid-run still knows what to put back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Live {
    /// The step that ran it (0: none).
    step: usize,
    phase: Phase,
    /// The members before the join.
    members: Vec<Member>,
    /// The placement the cluster had before the lesson changed it.
    restore: Option<PlacementSpec>,
    /// The node the join added (known once its rebalance is announced).
    added: Option<String>,
}

/// Called by the App once: the live run's state, for the page's lifetime.
pub fn provide_live_state() {
    provide_context(RwSignal::new(Live::default()));
}

/// An administrative request: the node it launched, if any; `Err` with the
/// backend's words when refused.
async fn admin(backend: Backend, make: impl FnOnce(u64) -> ClientMsg) -> Result<Option<String>, String> {
    match backend.call(make).await {
        Some(ServerMsg::AdminReply { ok: true, node, .. }) => Ok(node),
        Some(ServerMsg::AdminReply { message, .. }) => Err(message),
        Some(ServerMsg::Reply { reply: NodeReply::Error { message, .. }, .. }) => Err(message),
        _ => Err("no answer from the backend".into()),
    }
}

/// The lesson's state, shared by its steps.
#[derive(Clone, Copy)]
struct Lesson {
    hashes: StoredValue<Arc<[u64]>>,
    vnodes: RwSignal<u32>,
    /// The ring view's own vnode count (its control); `None` between steps.
    ring_vnodes: RwSignal<Option<u32>>,
    /// Step 6's algorithm on the ring.
    shown_algo: RwSignal<Algorithm>,
    live: RwSignal<Live>,
    /// The node that answered each named key's PUT, and the sample's outcome.
    answered: RwSignal<Vec<(String, String)>>,
    sample_written: RwSignal<Option<String>>,
}

impl Lesson {
    /// The members the lesson reasons about: the live cluster's (three
    /// made-up ones while there is none), before any join the lesson made.
    fn members(&self) -> Vec<Member> {
        let live = self.live.get();
        if live.step != 0 && !live.members.is_empty() {
            return live.members;
        }
        let nodes: Vec<Member> = backend().nodes.get().iter().map(|n| Member::new(&n.id)).collect();
        if nodes.is_empty() {
            (1..=3).map(|i| Member::new(format!("node-{i}"))).collect()
        } else {
            nodes
        }
    }

    /// The node that joins: the one the live run added, else the next id.
    fn joiner(&self, members: &[Member]) -> String {
        self.live.get().added.unwrap_or_else(|| next_id(members))
    }

    /// Step `step`'s scene.
    fn scene(&self, step: usize) -> Scene {
        let members = self.members();
        let hashes = self.hashes.get_value();
        let joiner = self.joiner(&members);
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        let key = |spec: &PlacementSpec| format!("{step} {spec:?} {ids:?} {joiner}");
        let joined = |spec: PlacementSpec| {
            let (before, after) = join(&spec, &members, &joiner, &hashes);
            Scene { key: key(&spec), drawn: Drawn::new(spec, after), before: Some(before.into()) }
        };
        let alone = |spec: PlacementSpec| {
            let placement = build(&spec, &members);
            Scene { key: key(&spec), drawn: Drawn::new(spec, placement), before: None }
        };
        match step {
            1 => {
                let backend = backend();
                let spec = backend.placement.get().unwrap_or_default();
                let slots = backend.slots.get();
                // Bounded loads places by the keys there are: the lesson's.
                let placement = match (&spec, &slots) {
                    (PlacementSpec::Bounded { .. }, _) | (_, None) => build_for_keys(&spec, &members, &hashes),
                    (_, Some(slots)) => restore(&spec, &members, Some(slots)),
                };
                Scene { key: format!("{} {slots:?}", key(&spec)), drawn: Drawn::new(spec, placement), before: None }
            }
            2 => joined(PlacementSpec::Modulo),
            3 => alone(PlacementSpec::Ring { vnodes: 1 }),
            4 => joined(PlacementSpec::Ring { vnodes: 1 }),
            5 => alone(PlacementSpec::Ring { vnodes: self.vnodes.get() }),
            _ => joined(self.shown_algo.get().spec(Settings::default())),
        }
    }
}

#[component]
pub fn Lesson() -> impl IntoView {
    let step = page().lesson_step;
    let lesson = Lesson {
        hashes: StoredValue::new(lesson_hashes()),
        vnodes: RwSignal::new(1),
        ring_vnodes: RwSignal::new(None),
        shown_algo: RwSignal::new(Algorithm::Rendezvous),
        live: expect_context::<RwSignal<Live>>(),
        answered: RwSignal::new(Vec::new()),
        sample_written: RwSignal::new(None),
    };
    let go = move |to: usize| step.set(to.clamp(1, STEPS));
    // The keys a presenter's clicker sends, and the arrows, Home and End;
    // not while the focus is in a field (typing, or a slider's own arrows):
    // Escape leaves the field.
    let keys = window_event_listener(leptos::ev::keydown, move |ev| {
        // Taken already: the ring pans with the arrows when it has the focus.
        if ev.ctrl_key() || ev.alt_key() || ev.meta_key() || ev.default_prevented() {
            return;
        }
        let field = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlElement>().ok()).filter(|e| {
            matches!(e.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT") || e.has_attribute("contenteditable")
        });
        if let Some(field) = field {
            if ev.key() == "Escape" {
                let _ = field.blur();
            }
            return;
        }
        let now = step.get_untracked();
        let to = match ev.key().as_str() {
            "ArrowRight" | "PageDown" => now + 1,
            "ArrowLeft" | "PageUp" => now.saturating_sub(1),
            "Home" => 1,
            "End" => STEPS,
            _ => return,
        };
        ev.prevent_default();
        go(to);
    });
    on_cleanup(move || keys.remove());
    // A new step takes the focus to its title, so Tab reaches its controls.
    let heading = NodeRef::<leptos::html::H2>::new();
    Effect::new(move |prev: Option<usize>| {
        let now = step.get();
        if prev.is_some_and(|p| p != now) {
            if let Some(h) = heading.get() {
                let _ = h.focus();
            }
        }
        now
    });
    let scene = Memo::new(move |_| lesson.scene(step.get()));
    // Each step starts with the ring as the step draws it; in step 5 the
    // ring's own vnode control moves the slider too.
    Effect::new(move || {
        step.track();
        lesson.ring_vnodes.set(None);
    });
    Effect::new(move || {
        if let Some(v) = lesson.ring_vnodes.get().filter(|_| step.get_untracked() == 5) {
            let within = v.clamp(1, MAX_VNODES);
            lesson.vnodes.set(within);
            if within != v {
                // The ring's own control went past the slider: both show the slider's.
                lesson.ring_vnodes.set(Some(within));
            }
        }
    });
    // The keys the step's change moves, by shared; of those, the share the
    // cluster has moved while the lesson runs it (all of them otherwise:
    // the simulation shows the change done).
    let backend = backend();
    let moving = Memo::new(move |_| {
        let scene = scene.get();
        scene
            .before
            .map(|b| moved_keys(b.as_ref(), scene.drawn.placement.as_ref(), &lesson.hashes.get_value()).moves.len())
    });
    let progress = Signal::derive(move || {
        let l = lesson.live.get();
        if l.step != step.get() {
            return None;
        }
        match l.phase {
            Phase::Placing => Some(0.0),
            // The cluster may hold other keys than the lesson's: of all it
            // holds (`keys_total`), shared's fraction is expected to move.
            Phase::Joining => Some(match &l.added {
                Some(added) => {
                    let fraction =
                        moving.get().unwrap_or(0) as f64 / lesson.hashes.with_value(|h| h.len()).max(1) as f64;
                    backend.rebalance.with(|r| {
                        r.as_ref().filter(|r| r.progress.change == format!("join {added}")).map_or(0.0, |r| {
                            let expected = (fraction * r.progress.keys_total as f64).max(1.0);
                            (r.progress.keys_moved as f64 / expected).clamp(0.0, 1.0)
                        })
                    })
                }
                None => 0.0,
            }),
            Phase::Joined => Some(1.0),
            _ => None,
        }
    });
    let travelled = Signal::derive(move || progress.get().unwrap_or(1.0));
    let shown = Signal::derive(move || Some(scene.get().drawn));
    let before = Signal::derive(move || scene.get().before);
    let set = Signal::derive(move || Some(lesson.hashes.get_value()));
    let named = Signal::derive(|| NAMED.iter().map(|k| k.to_string()).collect::<Vec<_>>());
    view! {
        <section class="lesson" data-testid="lesson" data-step=move || step.get().to_string() aria-label="Lesson">
            <nav class="lesson-nav" aria-label="Lesson steps">
                <button data-testid="lesson-back" disabled={move || step.get() <= 1} on:click=move |_| go(step.get().saturating_sub(1))>"Back"</button>
                <p class="lesson-indicator" data-testid="lesson-indicator" aria-live="polite">
                    {move || format!("Step {} of {STEPS}: {}", step.get(), title(step.get()))}
                </p>
                <button data-testid="lesson-next" disabled={move || step.get() >= STEPS} on:click=move |_| go(step.get() + 1)>"Next"</button>
            </nav>
            <div class="lesson-body">
                <div class="lesson-text">
                    <h2 node_ref=heading tabindex="-1" data-testid="lesson-title">{move || title(step.get())}</h2>
                    {move || match step.get() {
                        1 => view! { <KeysStep lesson /> }.into_any(),
                        2 | 4 => view! { <JoinStep lesson step=step.get() scene progress /> }.into_any(),
                        3 | 5 => view! { <BalanceStep lesson step=step.get() scene /> }.into_any(),
                        _ => view! { <AlgorithmsStep lesson /> }.into_any(),
                    }}
                </div>
                <div class="lesson-ring">
                    <RingView shown before set named lookup=page().lookup_key travelled vnodes=lesson.ring_vnodes />
                </div>
            </div>
        </section>
    }
}

/// Step 1: the named keys' hashes, on a line from 0 to 2^64 and on the
/// ring; written to the cluster, each with the node that answered.
#[component]
fn KeysStep(lesson: Lesson) -> impl IntoView {
    let backend = backend();
    let owners = Memo::new(move |_| {
        let scene = lesson.scene(1);
        let p = scene.drawn.placement;
        NAMED.map(|k| p.owner_of(k.as_bytes()).map(str::to_string).zip(p.owner_index(key_hash(k.as_bytes()))))
    });
    let write = move |_| {
        lesson.answered.set(Vec::new());
        lesson.sample_written.set(Some("writing…".into()));
        spawn_local(async move {
            for k in NAMED {
                let put = |id| ClientMsg::Put { id, key: k.into(), value: format!("hello {k}").into() };
                let node = match backend.call(put).await {
                    Some(ServerMsg::Reply { node: Some(node), reply: NodeReply::Ok { .. }, .. }) => node,
                    Some(ServerMsg::Reply { reply: NodeReply::Error { message, .. }, .. }) => {
                        format!("failed: {message}")
                    }
                    _ => "no answer".into(),
                };
                lesson.answered.update(|a| a.push((k.to_string(), node)));
            }
            let (mut ok, mut failed) = (0u64, 0u64);
            for start in (0..SAMPLE).step_by(1000) {
                let ops = (start..(start + 1000).min(SAMPLE))
                    .map(|i| NodeRequest::Put {
                        key: generated_key(i).into(),
                        value: format!("value-{i}").into(),
                        version: None,
                    })
                    .collect();
                match backend.call(|id| ClientMsg::Batch { id, ops }).await {
                    Some(ServerMsg::BatchReply { summary, .. }) => {
                        ok += summary.ok;
                        failed += summary.failed + summary.not_found;
                    }
                    _ => failed += 1000,
                }
            }
            lesson.sample_written.set(Some(format!(
                "{ok} of {SAMPLE} sample keys (key-0 … key-{}) written, {failed} failed.",
                SAMPLE - 1
            )));
        });
    };
    let line = move || {
        let owners = owners.get();
        // Labels alternate above and below the line in hash order, so
        // neighbours do not overlap.
        let mut order: Vec<u64> = NAMED.iter().map(|k| key_hash(k.as_bytes())).collect();
        order.sort_unstable();
        NAMED
            .iter()
            .zip(owners)
            .map(|(k, owner)| {
                let h = key_hash(k.as_bytes());
                let x = 1000.0 * ring_fraction(h);
                let rank = order.iter().position(|&o| o == h).unwrap_or(0);
                let y = [30.0, 92.0, 12.0, 108.0][rank % 4];
                let fill = owner.as_ref().map_or("#999".to_string(), |(_, i)| node_pattern(*i));
                view! {
                    <g class="line-key" data-key=k.to_string() data-hash=format!("{h:016x}")>
                        <line x1=x y1="50" x2=x y2="70" stroke="#fff" stroke-width="2" />
                        <circle cx=x cy="60" r="7" fill=fill stroke="#fff" />
                        <text x=x y=y text-anchor="middle">{k.to_string()}</text>
                        <title>{format!("{k}: hash {h:016x}, {:.4} of the way", ring_fraction(h))}</title>
                    </g>
                }
            })
            .collect_view()
    };
    let rows = move || {
        let owners = owners.get();
        let answered = lesson.answered.get();
        NAMED
            .iter()
            .zip(owners)
            .map(|(k, owner)| {
                let h = key_hash(k.as_bytes());
                let answer = answered.iter().find(|(a, _)| a == k).map(|(_, n)| n.clone());
                let (owner, index) = owner.map_or((String::new(), None), |(o, i)| (o, Some(i)));
                let (owner_attr, answer_attr) = (owner.clone(), answer.clone().unwrap_or_default());
                view! {
                    <tr data-key=k.to_string() data-hash=format!("{h:016x}") data-owner=owner_attr
                        data-answered=answer_attr>
                        <td>{k.to_string()}</td>
                        <td><code>{format!("{h:016x}")}</code></td>
                        <td>{format!("{:.4}", ring_fraction(h))}</td>
                        <td>{index.map(|i| view! { <Swatch index=i /> })}" "{owner}</td>
                        <td>{answer.unwrap_or_else(|| "–".into())}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <p class="say">"A key's hash (XXH3-64) is a number from 0 to 2^64, the same on every machine. Drawn on a line, the keys land anywhere; bend the line into a circle and you have the ring."</p>
        <p class="say">{move || {
            let spec = lesson.scene(1).drawn.spec;
            format!("The cluster places each key by its hash with {}; the page computes the owner itself, and the backend agrees.", spec.name())
        }}</p>
        <svg class="hash-line" viewBox="-60 -8 1150 130" role="img" aria-label="The named keys on a line from 0 to 2^64, at their hash">
            <title>"Key hashes on a line from 0 to 2^64"</title>
            <rect x="0" y="55" width="1000" height="10" fill="#2a3540" />
            <text x="-15" y="66" text-anchor="end">"0"</text>
            <text x="1015" y="66" text-anchor="start">"2^64"</text>
            {line}
        </svg>
        <button data-testid="lesson-write" on:click=write disabled=move || !backend.connected.get()>"Write them to the cluster"</button>
        <table class="compare lesson-keys" data-testid="lesson-keys">
            <thead><tr><th>"key"</th><th>"hash"</th><th>"of a turn"</th><th>"owner (page)"</th><th>"answered by"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
        <p class="outcome" data-testid="lesson-sample">{move || lesson.sample_written.get()}</p>
    }
}

/// A node's colour and texture, as a small square.
#[component]
fn Swatch(index: usize) -> impl IntoView {
    view! {
        <svg class="swatch" width="14" height="14" viewBox="0 0 14 14" aria-hidden="true">
            <rect width="14" height="14" fill=node_pattern(index) stroke=node_colour(index) />
        </svg>
    }
}

/// Each node's share of the ring (`shares`, from shared's `Ring`), its
/// keys, the mean, the std dev and max/mean, from shared.
fn distribution_view(placement: &dyn Placement, shares: &[f64], d: &Distribution) -> impl IntoView {
    let rows = placement
        .members()
        .iter()
        .zip(&d.counts)
        .zip(shares)
        .enumerate()
        .map(|(i, ((m, &c), &share))| {
            view! {
                <tr data-node=m.id.clone() data-keys=c.to_string() data-share=share.to_string()>
                    <td><Swatch index=i />" "{m.id.clone()}</td>
                    <td>{pct(share)}</td>
                    <td>{c.to_string()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="compare" data-testid="lesson-distribution">
            <thead><tr><th>"node"</th><th>"share of the ring"</th><th>"keys"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
        <p class="numbers" data-testid="lesson-balance" data-std-dev=d.std_dev.to_string()
            data-max-over-mean=d.max_over_mean.to_string() data-mean=d.mean.to_string()>
            {format!("mean {:.1} keys, std dev {:.1}, max/mean {:.3}", d.mean, d.std_dev, d.max_over_mean)}
        </p>
    }
}

/// The keys a join moves, their fraction next to the ideal, and the flows.
fn movement_view(mv: &Movement) -> impl IntoView {
    let flows = mv
        .flows
        .iter()
        .map(|(from, to, n)| {
            view! { <li data-from=from.clone() data-to=to.clone() data-keys=n.to_string()>{format!("{from} → {to}: {n} keys")}</li> }
        })
        .collect_view();
    view! {
        <p class="numbers" data-testid="lesson-moved" data-moved=mv.moves.len().to_string() data-total=mv.total.to_string()
            data-fraction=mv.fraction.to_string() data-ideal=mv.ideal.to_string()>
            {format!(
                "{} of {} keys change owner: {}; a placement that stays balanced must move {} (the new node's fair share).",
                mv.moves.len(), mv.total, pct(mv.fraction), pct(mv.ideal)
            )}
        </p>
        <ul class="flows" data-testid="lesson-flows">{flows}</ul>
    }
}

/// Steps 3 and 5: how evenly a ring spreads the keys; step 5 with a slider
/// for the virtual nodes per node.
#[component]
fn BalanceStep(lesson: Lesson, step: usize, scene: Memo<Scene>) -> impl IntoView {
    let numbers = move || {
        let scene = scene.get();
        let placement = scene.drawn.placement.as_ref();
        let d = distribution(placement, &lesson.hashes.get_value());
        let vnodes = if step == 3 { 1 } else { lesson.vnodes.get() };
        distribution_view(placement, &Ring::new(placement.members(), vnodes).shares(), &d)
    };
    let n = move || lesson.members().len();
    let text = move || {
        if step == 3 {
            format!(
                "Consistent hashing puts each of the {} nodes at one point on the ring (the hash of its name); a key belongs to the first node clockwise from it. The points fall where they fall, so the arcs, and the keys, are very uneven.",
                n()
            )
        } else {
            "Give every node many points (virtual nodes) instead of one: the arcs interleave and each node's total evens out. Move the slider and watch the std dev fall.".to_string()
        }
    };
    view! {
        <p class="say">{text}</p>
        {(step == 5).then(|| view! {
            <label class="lesson-slider">
                {move || format!("{} virtual nodes per node", lesson.vnodes.get())}
                <input type="range" min="1" max=MAX_VNODES.to_string() data-testid="lesson-vnodes"
                    aria-label="Virtual nodes per node" prop:value=move || lesson.vnodes.get().to_string()
                    on:input=move |ev| {
                        let v: u32 = event_target_value(&ev).parse().unwrap_or(1);
                        lesson.vnodes.set(v.clamp(1, MAX_VNODES));
                        lesson.ring_vnodes.set(None);
                    } />
            </label>
        })}
        {numbers}
    }
}

/// Steps 2 and 4: a fourth node joins under modulo, then on the ring with
/// one point per node; what moves, and running it on the cluster.
#[component]
fn JoinStep(lesson: Lesson, step: usize, scene: Memo<Scene>, progress: Signal<Option<f64>>) -> impl IntoView {
    let movement = Memo::new(move |_| {
        let scene = scene.get();
        let before = scene.before?;
        Some(moved_keys(before.as_ref(), scene.drawn.placement.as_ref(), &lesson.hashes.get_value()))
    });
    let text = move || {
        let members = lesson.members();
        let joiner = lesson.joiner(&members);
        let n = members.len();
        if step == 2 {
            format!(
                "Modulo sends a key to node number hash mod N. With {n} nodes, {joiner} joins: now it is hash mod {}, which differs from hash mod {n} for most keys, so most keys change owner, between old nodes too.",
                n + 1
            )
        } else {
            format!(
                "On the ring, {joiner} takes one point. Only the keys on the arc just before that point change owner, all to {joiner}, from the one node that held that arc; every other key stays."
            )
        }
    };
    view! {
        <p class="say">{text}</p>
        {move || movement.get().map(|mv| movement_view(&mv))}
        <LiveRun lesson step progress />
    }
}

/// "Run it on the cluster": the step's placement and a join, each slowed
/// to take about [`SECONDS`]; the backend's live progress next to shared's
/// prediction; and "Put the cluster back".
#[component]
fn LiveRun(lesson: Lesson, step: usize, progress: Signal<Option<f64>>) -> impl IntoView {
    let backend = backend();
    let live = lesson.live;
    let mine = move || live.with(|l| l.step == step);
    // A change of the lesson's is on the cluster (one at a time).
    let busy = move || live.with(|l| l.step != 0 && !matches!(l.phase, Phase::Refused(_)));
    let target = if step == 2 { PlacementSpec::Modulo } else { PlacementSpec::Ring { vnodes: 1 } };
    let run = {
        let target = target.clone();
        move |_| {
            if busy() || !backend.connected.get_untracked() {
                return;
            }
            let target = target.clone();
            let Some(current) = backend.placement.get_untracked() else { return };
            let slots = backend.slots.get_untracked();
            let hashes = lesson.hashes.get_value();
            // A run refused half-way keeps what it recorded: the members
            // and the placement from before the lesson changed anything.
            let earlier = live.get_untracked();
            let (members, placement_before) = match earlier.restore {
                Some(p) if earlier.step != 0 => (earlier.members, p),
                _ => (backend.nodes.get_untracked().iter().map(|n| Member::new(&n.id)).collect(), current.clone()),
            };
            if earlier.added.is_some() {
                return; // a node of the lesson's is on the cluster: put it back first
            }
            live.set(Live {
                step,
                phase: Phase::Placing,
                members: members.clone(),
                restore: Some(placement_before),
                added: None,
            });
            spawn_local(async move {
                let keys = cluster_keys(backend, hashes.len()).await;
                if current != target {
                    let from = restore(&current, &members, slots.as_deref());
                    let to = build(&target, &members);
                    let rate =
                        rate_for(scaled(moved_keys(from.as_ref(), to.as_ref(), &hashes).moves.len(), &hashes, keys));
                    let placement = target.clone();
                    if let Err(why) =
                        admin(backend, |id| ClientMsg::ChangePlacement { id, placement, rate: Some(rate) }).await
                    {
                        live.update(|l| l.phase = Phase::Refused(why));
                        return;
                    }
                }
                let (before, after) = join(&target, &members, &next_id(&members), &hashes);
                let rate =
                    rate_for(scaled(moved_keys(before.as_ref(), after.as_ref(), &hashes).moves.len(), &hashes, keys));
                live.update(|l| l.phase = Phase::Joining);
                match admin(backend, |id| ClientMsg::AddNode { id, rate: Some(rate) }).await {
                    // The lesson's node is the one the backend launched, and
                    // only its join (`join ID`) is the lesson's.
                    Ok(added) => live.update(|l| l.added = added),
                    Err(why) => live.update(|l| l.phase = Phase::Refused(why)),
                }
            });
        }
    };
    // The join of the node the backend launched for the lesson: done when
    // its rebalance is (another client's join is not the lesson's).
    Effect::new(move || {
        let Some(r) = backend.rebalance.get() else { return };
        let l = live.get();
        if l.step != step || !matches!(l.phase, Phase::Joining) {
            return;
        }
        let Some(added) = &l.added else { return };
        if r.done && r.progress.change == format!("join {added}") {
            live.update(|l| l.phase = Phase::Joined);
        }
    });
    let put_back = move |_| {
        let l = live.get_untracked();
        let hashes = lesson.hashes.get_value();
        live.update(|l| l.phase = Phase::Restoring);
        spawn_local(async move {
            let spec = backend.placement.get_untracked().unwrap_or_default();
            let keys = cluster_keys(backend, hashes.len()).await;
            if let Some(node) = l.added.clone() {
                let (before, after) = join(&spec, &l.members, &node, &hashes);
                let rate =
                    rate_for(scaled(moved_keys(after.as_ref(), before.as_ref(), &hashes).moves.len(), &hashes, keys));
                if let Err(why) = admin(backend, |id| ClientMsg::RemoveNode { id, node, rate: Some(rate) }).await {
                    live.update(|l| l.phase = Phase::Refused(why));
                    return;
                }
                // Gone: a retry after a refusal below only restores the placement.
                live.update(|l| l.added = None);
            }
            if let Some(placement) = l.restore.filter(|r| *r != spec) {
                let (from, to) = (build(&spec, &l.members), build(&placement, &l.members));
                let rate = rate_for(scaled(moved_keys(from.as_ref(), to.as_ref(), &hashes).moves.len(), &hashes, keys));
                if let Err(why) =
                    admin(backend, |id| ClientMsg::ChangePlacement { id, placement, rate: Some(rate) }).await
                {
                    live.update(|l| l.phase = Phase::Refused(why));
                    return;
                }
            }
            live.set(Live::default());
        });
    };
    // Of the keys shared says the join moves, the share the backend has moved.
    let travelled = move || progress.get().filter(|_| live.with(|l| l.added.is_some()));
    let status = move || {
        let l = live.get();
        if l.step != step {
            return None;
        }
        let text = match &l.phase {
            Phase::Idle => return None,
            Phase::Placing => {
                format!("Changing the cluster's placement to {}, slowed to take about {SECONDS} s…", target.name())
            }
            Phase::Joining => format!(
                "{} is joining, slowed to take about {SECONDS} s…",
                l.added.clone().unwrap_or_else(|| "A node".into())
            ),
            Phase::Joined => format!("{} joined.", l.added.clone().unwrap_or_default()),
            Phase::Restoring => "Putting the cluster back…".into(),
            Phase::Refused(why) => format!("The cluster refused ({why}); this step stays a simulation."),
        };
        Some(text)
    };
    let live_progress = move || {
        if !mine() || !matches!(live.with(|l| l.phase.clone()), Phase::Placing | Phase::Joining | Phase::Joined) {
            return None;
        }
        let r = backend.rebalance.get()?;
        let p = r.progress;
        let flows = p
            .flows
            .iter()
            .map(|f| view! { <li data-from=f.from.clone() data-to=f.to.clone() data-keys=f.keys.to_string()>{format!("{} → {}: {} keys", f.from, f.to, f.keys)}</li> })
            .collect_view();
        Some(view! {
            <div class="lesson-live" data-testid="lesson-live" data-change=p.change.clone() data-done=r.done.to_string()
                data-moved=p.keys_moved.to_string() data-total=p.keys_total.to_string()>
                <p>{format!("The cluster ({}): {} of {} keys moved{}", p.change, p.keys_moved, p.keys_total, if r.done { "." } else { "…" })}</p>
                <ul class="flows">{flows}</ul>
            </div>
        })
    };
    view! {
        <div class="kv-form">
            // aria-disabled, not disabled: the focus stays on it while it runs.
            <button data-testid="lesson-run" on:click=run
                aria-disabled=move || (busy() || !backend.connected.get()).to_string()>"Run it on the cluster"</button>
            <button data-testid="lesson-put-back" on:click=put_back
                disabled=move || !mine() || !matches!(live.with(|l| l.phase.clone()), Phase::Joined | Phase::Refused(_))>"Put the cluster back"</button>
        </div>
        <p class="outcome" data-testid="lesson-status" data-phase=move || live.with(|l| if l.step == step { l.phase.name() } else { "idle" })>{status}</p>
        {live_progress}
        <p class="numbers" data-testid="lesson-travelled" data-travelled=move || travelled().map(|t| t.to_string()).unwrap_or_default()>
            {move || travelled().map(|t| format!("Keys arrived at {}: {}", live.get().added.unwrap_or_default(), pct(t)))}
        </p>
    }
}

/// Step 6: the other algorithms, each its rule, its balance and what a
/// join moves, on the same keys, and one named key's placement by each.
#[component]
fn AlgorithmsStep(lesson: Lesson) -> impl IntoView {
    let rows = Memo::new(move |_| {
        let members = lesson.members();
        let joiner = lesson.joiner(&members);
        let hashes = lesson.hashes.get_value();
        OTHERS
            .iter()
            .map(|&(algo, rule)| {
                let spec = algo.spec(Settings::default());
                let (before, after) = join(&spec, &members, &joiner, &hashes);
                let d = distribution(before.as_ref(), &hashes);
                let mv = moved_keys(before.as_ref(), after.as_ref(), &hashes);
                let why = before.explain(key_hash(NAMED[0].as_bytes())).summary(before.members());
                (algo, rule, d, mv.fraction, mv.ideal, why)
            })
            .collect::<Vec<_>>()
    });
    let shown = lesson.shown_algo;
    view! {
        <p class="say">{move || format!("Four more ways to pick a key's node, on the same {} keys and {} nodes; then {} joins.", lesson.hashes.get_value().len(), lesson.members().len(), lesson.joiner(&lesson.members()))}</p>
        <table class="compare" data-testid="lesson-algorithms">
            <thead><tr><th>"algorithm"</th><th>"rule"</th><th>"std dev"</th><th>"max/mean"</th><th>"moved on a join"</th><th>{format!("why {} goes where it goes", NAMED[0])}</th></tr></thead>
            <tbody>
                {move || rows.get().into_iter().map(|(algo, rule, d, fraction, ideal, why)| view! {
                    <tr data-algorithm=algo.name() data-std-dev=d.std_dev.to_string() data-max-over-mean=d.max_over_mean.to_string()
                        data-fraction=fraction.to_string() data-ideal=ideal.to_string()>
                        <td>
                            <button class="small" aria-pressed=move || (shown.get() == algo).to_string()
                                on:click=move |_| shown.set(algo)>{algo.name()}</button>
                        </td>
                        <td>{rule}</td>
                        <td>{format!("{:.1}", d.std_dev)}</td>
                        <td>{format!("{:.3}", d.max_over_mean)}</td>
                        <td>{format!("{} (ideal {})", pct(fraction), pct(ideal))}</td>
                        <td class="why" data-testid="lesson-why">{why}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        <p class="outcome">{move || format!("The ring shows {} after the join; press a name to show another.", shown.get().name())}</p>
    }
}
