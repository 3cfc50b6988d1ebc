//! The ring: the hash circle cut into arcs by owner (one `<path>` per node
//! however many virtual nodes it has), node labels and a legend with each
//! node's share of the ring and its keys, keys as dots at their hash (one
//! `<path>` per owner), zoom and pan, and a vnode count for the view.
//! Every number comes from `shardscope-shared`. [`RingView`] draws any
//! placement it is given (the lesson draws its own); [`ClusterRing`] is
//! the live cluster's.

mod geometry;
mod moving;

use std::sync::Arc;

use leptos::prelude::*;
use shardscope_shared::hash::{key_hash, ring_fraction};
use shardscope_shared::placement::analysis::{distribution, Distribution};
use shardscope_shared::placement::ring::{OwnedArc, Ring};
use shardscope_shared::placement::{build, build_for_keys, restore, Member, Placement, PlacementSpec, VNODES};
use wasm_bindgen::JsCast;

use geometry::{decimals, push_arc, push_dot, View, R};

use super::upload::KeySet;
use super::{node_colour, node_pattern, page};
use crate::ws::backend;

/// Most key-set dots drawn; larger sets are sampled.
const MAX_DOTS: usize = 10_000;
/// Virtual-node ticks are drawn when at most this many are in view.
const MAX_TICKS: usize = 512;
/// Named keys are labelled when at most this many are in view.
const MAX_LABELS: usize = 24;
/// The keys drawn when no key set is chosen.
const SAMPLE: usize = 1_000;
/// The zoom buttons' and keys' step.
const STEP: f64 = 2.0;
/// How far inside the ring the key set's dots sit, and the named keys'
/// (in screen-sized units: divided by the zoom).
const KEYS_IN: f64 = 10.0;
const NAMED_IN: f64 = 20.0;
/// How far outside the ring the node labels sit.
const LABELS_OUT: f64 = 14.0;
/// Colour of a key whose owner is not (or no longer) a member.
const NO_OWNER: &str = "#999";

/// A placement as a ring view draws it: the spec says whether it has
/// points on the ring (ring, bounded) to draw as arcs.
#[derive(Clone)]
pub struct Drawn {
    pub spec: PlacementSpec,
    pub placement: Arc<dyn Placement>,
}

impl Drawn {
    pub fn new(spec: PlacementSpec, placement: Box<dyn Placement>) -> Self {
        Drawn { spec, placement: placement.into() }
    }

    /// Virtual nodes per node, for the algorithms that place by them.
    fn vnodes(&self) -> Option<u32> {
        match self.spec {
            PlacementSpec::Ring { vnodes } | PlacementSpec::Bounded { vnodes, .. } => Some(vnodes),
            _ => None,
        }
    }

    /// The same algorithm over the same members with `vnodes` per node (for
    /// the view only); itself when it has no virtual nodes or already that many.
    fn with_vnodes(&self, vnodes: u32) -> Drawn {
        let spec = match self.spec {
            PlacementSpec::Ring { vnodes: own } if own != vnodes => PlacementSpec::Ring { vnodes },
            PlacementSpec::Bounded { vnodes: own, capacity } if own != vnodes => {
                PlacementSpec::Bounded { vnodes, capacity }
            }
            _ => return self.clone(),
        };
        Drawn::new(spec.clone(), build(&spec, self.placement.members()))
    }

    /// The virtual nodes.
    fn ring(&self) -> Option<Ring> {
        self.vnodes().map(|v| Ring::new(self.placement.members(), v))
    }
}

/// The ring of the live cluster: its placement, the placement before its
/// latest change, the chosen key set (or a generated sample, said so) and
/// the keys stored from this page.
#[component]
pub fn ClusterRing() -> impl IntoView {
    let backend = backend();
    let page = page();
    let sample = KeySet::generated(SAMPLE).hashes;
    let set = Signal::derive(move || {
        Some(page.keyset.with(|k| k.as_ref().map(|k| k.hashes.clone())).unwrap_or_else(|| sample.clone()))
    });
    // Bounded loads places by the keys there are: the drawn set's, as if
    // they were the cluster's (the others ignore them).
    let placed = move |spec: &PlacementSpec, members: &[Member], slots: Option<&[Option<String>]>| match spec {
        PlacementSpec::Bounded { .. } => set.with(|h| build_for_keys(spec, members, h.as_deref().unwrap_or(&[]))),
        _ => restore(spec, members, slots),
    };
    let shown = Signal::derive(move || {
        let members: Vec<Member> = backend.nodes.get().iter().map(|n| Member::new(&n.id)).collect();
        let spec = backend.placement.get()?;
        let slots = backend.slots.get();
        Some(Drawn::new(spec.clone(), placed(&spec, &members, slots.as_deref())))
    });
    let before = Signal::derive(move || {
        backend.previous.get().map(|(nodes, spec, slots)| {
            let members: Vec<Member> = nodes.iter().map(|n| Member::new(&n.id)).collect();
            Arc::from(placed(&spec, &members, slots.as_deref()))
        })
    });
    let caption = move || {
        page.keyset.with(|k| match k {
            Some(k) => format!("Keys: {}.", k.name),
            None => format!(
                "Keys: a sample of {SAMPLE} generated keys (key-0 … key-{}); choose a key set under Compare algorithms.",
                SAMPLE - 1
            ),
        })
    };
    view! {
        <RingView shown before set named=page.stored_keys lookup=page.lookup_key />
        <p class="ring-caption" data-testid="ring-caption">{caption}</p>
    }
}

/// What the ring draws, for the view's vnode count: the placement, its
/// arcs and each node's share of the ring (when it has virtual nodes).
#[derive(Clone)]
struct Scene {
    drawn: Drawn,
    /// The given placement's own vnode count (`None`: no virtual nodes).
    own_vnodes: Option<u32>,
    ring: Option<Arc<Ring>>,
    arcs: Arc<[OwnedArc]>,
    shares: Option<Vec<f64>>,
}

impl Scene {
    fn new(given: &Drawn, vnodes: Option<u32>) -> Scene {
        let (drawn, ring) = match (&given.spec, vnodes.map(|v| v.clamp(*VNODES.start(), *VNODES.end()))) {
            // The view's own ring is its placement too: built once.
            (PlacementSpec::Ring { vnodes: own }, Some(v)) if *own != v => {
                let ring = Arc::new(Ring::new(given.placement.members(), v));
                (Drawn { spec: PlacementSpec::Ring { vnodes: v }, placement: ring.clone() }, Some(ring))
            }
            (_, v) => {
                let drawn = v.map(|v| given.with_vnodes(v)).unwrap_or_else(|| given.clone());
                let ring = drawn.ring().map(Arc::new);
                (drawn, ring)
            }
        };
        Scene {
            own_vnodes: given.vnodes(),
            arcs: ring.as_ref().map(|r| r.arcs().into()).unwrap_or_else(|| Arc::from([])),
            shares: ring.as_ref().map(|r| r.shares()),
            ring,
            drawn,
        }
    }

    fn members(&self) -> &[Member] {
        self.drawn.placement.members()
    }

    fn id(&self, owner: Option<usize>) -> String {
        owner.map(|o| self.members()[o].id.clone()).unwrap_or_default()
    }
}

/// The drawn keys: the set (every k-th key past [`MAX_DOTS`]: hashes are
/// uniform, so a stride is a faithful sample), sorted by hash.
#[derive(Clone)]
struct Keys {
    sorted: Arc<[u64]>,
    total: usize,
}

/// Memos whose values hold `Arc`s: every recomputation is a change.
fn changed<T>(_: Option<&T>, _: Option<&T>) -> bool {
    true
}

/// A ring: `shown`'s arcs (when it has points on the ring, with `vnodes`
/// per node when the view sets them) and keys as dots in their owner's
/// colour: a key set (sampled past [`MAX_DOTS`]), named keys (labelled,
/// clickable: a click looks the key up) and the looked-up key. Keys whose
/// owner differs under `before` (the moving keys) pulse from the old
/// owner's colour to the new one's; with `travelled` (keys moved so far /
/// keys to move, while a change runs) the first ceil(travelled x moving)
/// in hash order are drawn at their new owner, the rest at their old one,
/// all of them marked. `vnodes` is the view's vnode count (`None`: the
/// placement's own); a parent may own it, else the view keeps its own.
#[component]
pub fn RingView(
    #[prop(into)] shown: Signal<Option<Drawn>>,
    #[prop(into)] before: Signal<Option<Arc<dyn Placement>>>,
    #[prop(into)] set: Signal<Option<Arc<[u64]>>>,
    #[prop(into)] named: Signal<Vec<String>>,
    lookup: RwSignal<String>,
    #[prop(optional, into)] travelled: Option<Signal<f64>>,
    #[prop(optional)] vnodes: Option<RwSignal<Option<u32>>>,
) -> impl IntoView {
    let vnodes = vnodes.unwrap_or_else(|| RwSignal::new(None));
    let view_at = RwSignal::new(View::WHOLE);
    let zoom = Memo::new(move |_| view_at.get().z);
    let hover = RwSignal::new(None::<u64>);

    let scene = Memo::new_with_compare(move |_| shown.get().map(|given| Scene::new(&given, vnodes.get())), changed);
    let keys = Memo::new_with_compare(
        move |_| {
            set.get().map(|hashes| {
                let stride = hashes.len().div_ceil(MAX_DOTS).max(1);
                let mut sorted: Vec<u64> = hashes.iter().step_by(stride).copied().collect();
                sorted.sort_unstable();
                Keys { sorted: sorted.into(), total: hashes.len() }
            })
        },
        changed,
    );
    // Keys per node over the whole set (not only the drawn sample).
    let counts: Memo<Option<Distribution>> = Memo::new(move |_| {
        let scene = scene.get()?;
        set.with(|s| s.as_ref().map(|h| distribution(scene.drawn.placement.as_ref(), h)))
    });
    // Before the change, for the view's vnode count too.
    let was = Memo::new_with_compare(
        move |_| {
            let before = before.get()?;
            let scene = scene.get()?;
            Some(match scene.own_vnodes {
                Some(own) if scene.drawn.vnodes() != Some(own) => Arc::from(build(&scene.drawn.spec, before.members())),
                _ => before,
            })
        },
        changed,
    );
    // One dot's path data per drawn key, at the current zoom: the vnode
    // control regroups these, it does not format them again.
    let dots = Memo::new_with_compare(
        move |_| {
            let z = zoom.get();
            let dp = decimals(z);
            keys.get().map(|k| {
                let mut text = String::with_capacity(k.sorted.len() * (14 + 2 * dp));
                let mut ends = Vec::with_capacity(k.sorted.len());
                for &h in k.sorted.iter() {
                    push_dot(&mut text, ring_fraction(h), R - KEYS_IN / z, dp);
                    ends.push(text.len());
                }
                (text, ends)
            })
        },
        changed,
    );

    let arcs_layer = move || {
        let scene = scene.get()?;
        let dp = decimals(zoom.get());
        let mut paths = vec![String::new(); scene.members().len()];
        for arc in scene.arcs.iter() {
            push_arc(&mut paths[arc.owner], arc, R, dp);
        }
        let ids: Vec<String> = scene.members().iter().map(|m| m.id.clone()).collect();
        Some(
            paths
                .into_iter()
                .zip(ids)
                .enumerate()
                .filter(|(_, (d, _))| !d.is_empty())
                .map(|(i, (d, id))| {
                    let arcs = scene.arcs.iter().filter(|a| a.owner == i).count();
                    view! { <path class="arc" d=d stroke=node_pattern(i) data-owner=id data-arcs=arcs.to_string() /> }
                })
                .collect_view(),
        )
    };

    let ticks_layer = move || {
        let scene = scene.get()?;
        let ring = scene.ring.clone()?;
        let view = view_at.get();
        let in_view: Vec<(u64, usize)> =
            ring.points().filter(|&(p, _)| view.contains(geometry::at(ring_fraction(p), R))).collect();
        if in_view.len() > MAX_TICKS {
            return None;
        }
        let (r0, r1) = (R - 5.0 / view.z, R + 5.0 / view.z);
        Some(
            in_view
                .into_iter()
                .map(|(p, owner)| {
                    let f = ring_fraction(p);
                    let ((x0, y0), (x1, y1)) = (geometry::at(f, r0), geometry::at(f, r1));
                    let id = scene.members()[owner].id.clone();
                    view! {
                        <line class="vnode" x1=x0 y1=y0 x2=x1 y2=y1 stroke=node_colour(owner)
                            data-owner=id.clone() data-hash=format!("{p:016x}")>
                            <title>{format!("virtual node of {id} at {p:016x} ({f:.4} of a turn)")}</title>
                        </line>
                    }
                })
                .collect_view(),
        )
    };

    // Each node's name outside the ring, at the middle of its largest arc.
    let labels_layer = move || {
        let scene = scene.get()?;
        let z = zoom.get();
        let mut largest: Vec<Option<&OwnedArc>> = vec![None; scene.members().len()];
        for arc in scene.arcs.iter() {
            if largest[arc.owner].is_none_or(|l| l.span < arc.span) {
                largest[arc.owner] = Some(arc);
            }
        }
        Some(
            largest
                .into_iter()
                .enumerate()
                .filter_map(|(i, arc)| {
                    let arc = arc?;
                    let (x, y) = geometry::at(geometry::middle(arc), R + LABELS_OUT / z);
                    let anchor = if x.abs() < 20.0 / z { "middle" } else if x > 0.0 { "start" } else { "end" };
                    let id = scene.members()[i].id.clone();
                    Some(view! {
                        <text class="node-label" x=x y=y dy="0.35em" text-anchor=anchor data-node=id.clone()>{id.clone()}</text>
                    })
                })
                .collect_view(),
        )
    };

    // The key set, one path per owner; the moving keys pulse (or, with
    // `travelled`, split between old and new owner, marked).
    let keys_layer = move || {
        let scene = scene.get()?;
        let keys = keys.get()?;
        let (text, ends) = dots.get()?;
        let z = zoom.get();
        let now = scene.drawn.placement.as_ref();
        let was = was.get();
        let n = scene.members().len();
        let seg = |i: usize| &text[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
        let owners: Vec<Option<usize>> = keys.sorted.iter().map(|&h| now.owner_index(h)).collect();
        let moves = was.as_deref().map(|w| moving::moving(&keys.sorted, &owners, now.members(), w)).unwrap_or_default();
        let was_members = was.as_deref().map(|w| w.members()).unwrap_or_default();
        let was_colour = |from: usize| {
            now.members().iter().position(|m| m.id == was_members[from].id).map(node_colour).unwrap_or(NO_OWNER)
        };
        let width = |w: f64| format!("{:.5}", w / z);
        // Index n gathers keys without an owner.
        let mut by_owner = vec![String::new(); n + 1];
        // Drawn bottom up: the moving keys' halo, keys at their owner, moving
        // keys still at their old owner, the keys a change moved (pulsing).
        let mut halo: Option<AnyView> = None;
        let mut waiting: Vec<AnyView> = Vec::new();
        let mut travelled_n = 0;
        match travelled {
            // A change running: moving keys are drawn where they are now.
            Some(travelled) if !moves.is_empty() => {
                let (done, wait) = moving::split(&moves, travelled.get());
                travelled_n = done.len();
                let mut skip = vec![false; owners.len()];
                let mut ring = String::new();
                for m in &moves {
                    skip[m.key] = true;
                    ring.push_str(seg(m.key));
                }
                for m in done {
                    by_owner[m.to].push_str(seg(m.key));
                }
                let mut by_old = vec![String::new(); was_members.len()];
                for m in wait {
                    by_old[m.from].push_str(seg(m.key));
                }
                for (i, o) in owners.iter().enumerate().filter(|(i, _)| !skip[*i]) {
                    by_owner[o.unwrap_or(n)].push_str(seg(i));
                }
                halo = Some(view! { <path class="moving-halo" d=ring stroke-width=width(6.0) /> }.into_any());
                for (from, d) in by_old.into_iter().enumerate().filter(|(_, d)| !d.is_empty()) {
                    let id = was_members[from].id.clone();
                    waiting.push(
                        view! { <path class="dots waiting" d=d stroke=was_colour(from) stroke-width=width(2.4) data-owner=id /> }
                            .into_any(),
                    );
                }
            }
            _ => {
                for (i, o) in owners.iter().enumerate() {
                    by_owner[o.unwrap_or(n)].push_str(seg(i));
                }
            }
        }
        let mut paths: Vec<AnyView> = halo.into_iter().collect();
        paths.extend(by_owner.into_iter().enumerate().filter(|(_, d)| !d.is_empty()).map(|(o, d)| {
            let colour = if o < n { node_colour(o) } else { NO_OWNER };
            let id = scene.id((o < n).then_some(o));
            view! { <path class="dots" d=d stroke=colour stroke-width=width(2.4) data-owner=id /> }.into_any()
        }));
        paths.append(&mut waiting);
        if travelled.is_none() {
            // After a change, the keys it moved pulse: one path per (old owner, new owner).
            let mut pairs: std::collections::BTreeMap<(usize, usize), (String, usize)> = Default::default();
            for m in &moves {
                let entry = pairs.entry((m.from, m.to)).or_default();
                entry.0.push_str(seg(m.key));
                entry.1 += 1;
            }
            for ((from, to), (d, count)) in pairs {
                let values = format!("{};{};{}", width(2.4), width(6.0), width(2.4));
                paths.push(
                    view! {
                        <path class="moved" d=d stroke=node_colour(to) stroke-width=width(2.4)
                            data-from=was_members[from].id.clone() data-to=scene.id(Some(to)) data-keys=count.to_string()>
                            <animate attributeName="stroke" from=was_colour(from) to=node_colour(to) dur="2s" repeatCount="3" />
                            <animate attributeName="stroke-width" values=values dur="2s" repeatCount="3" />
                        </path>
                    }
                    .into_any(),
                );
            }
        }
        let drawn = keys.sorted.len();
        let label = if drawn < keys.total {
            format!("{} keys ({drawn} shown)", keys.total)
        } else {
            format!("{} keys", keys.total)
        };
        Some(view! {
            <g data-testid="ring-keyset" data-shown=drawn.to_string() data-total=keys.total.to_string()
                data-moving=moves.len().to_string() data-travelled=travelled_n.to_string()>{paths}</g>
            <text class="count" x="0" y="0" dy="0.35em" text-anchor="middle">{label}</text>
        })
    };

    let named_layer = move || {
        let scene = scene.get()?;
        let view = view_at.get();
        let names = named.get();
        let in_view = names
            .iter()
            .filter(|k| view.contains(geometry::at(ring_fraction(key_hash(k.as_bytes())), R - NAMED_IN / view.z)))
            .count();
        let labelled = in_view <= MAX_LABELS;
        Some(
            names
                .into_iter()
                .map(|k| key_dot(scene.drawn.placement.as_ref(), &k, "key", lookup, view.z, labelled))
                .collect_view(),
        )
    };
    let lookup_layer = move || {
        let scene = scene.get()?;
        let k = lookup.get();
        (!k.is_empty()).then(|| key_dot(scene.drawn.placement.as_ref(), &k, "key lookup", lookup, zoom.get(), false))
    };

    // The drawn key nearest the pointer's angle.
    let hovered = Memo::new(move |_| {
        let h = hover.get()?;
        let keys = keys.get()?;
        let i = geometry::nearest(&keys.sorted, h)?;
        let hash = keys.sorted[i];
        let scene = scene.get()?;
        Some((hash, scene.id(scene.drawn.placement.owner_index(hash))))
    });
    let hover_mark = move || {
        let (hash, _) = hovered.get()?;
        let z = zoom.get();
        let (x, y) = geometry::at(ring_fraction(hash), R - KEYS_IN / z);
        Some(view! { <circle class="hover-mark" cx=x cy=y r=format!("{:.5}", 4.0 / z) /> })
    };

    // Pointer: hover, drag to pan, wheel to zoom.
    let drag = StoredValue::new(None::<(f64, f64, View)>);
    let on_move = move |ev: web_sys::PointerEvent| {
        let Some((px, py, w, h)) = element_box(&ev) else { return };
        let view = view_at.get_untracked();
        if let Some((x0, y0, from)) = drag.get_value().filter(|_| ev.buttons() & 1 == 1) {
            let u = from.units_per_px(w, h);
            view_at.set(from.panned(-(ev.client_x() as f64 - x0) * u, -(ev.client_y() as f64 - y0) * u));
            return;
        }
        let (x, y) = view.point_at(px, py, w, h);
        hover.set(Some(geometry::hash_at(geometry::fraction_at(x, y))));
    };
    let on_down = move |ev: web_sys::PointerEvent| {
        if ev.button() == 0 {
            drag.set_value(Some((ev.client_x() as f64, ev.client_y() as f64, view_at.get_untracked())));
        }
    };
    let on_wheel = move |ev: web_sys::WheelEvent| {
        let Some((px, py, w, h)) = element_box(&ev) else { return };
        ev.prevent_default();
        let view = view_at.get_untracked();
        let factor = if ev.delta_y() < 0.0 { 1.25 } else { 0.8 };
        view_at.set(view.zoomed(factor, view.point_at(px, py, w, h)));
    };
    let on_key = move |ev: web_sys::KeyboardEvent| {
        let view = view_at.get_untracked();
        let step = view.half() * 0.2;
        let next = match ev.key().as_str() {
            "+" | "=" => view.stepped(STEP),
            "-" | "_" => view.stepped(1.0 / STEP),
            "0" => View::WHOLE,
            "ArrowLeft" => view.panned(-step, 0.0),
            "ArrowRight" => view.panned(step, 0.0),
            "ArrowUp" => view.panned(0.0, -step),
            "ArrowDown" => view.panned(0.0, step),
            _ => return,
        };
        ev.prevent_default();
        view_at.set(next);
    };

    let summary = move || summarise(scene.get().as_ref(), counts.get().as_ref(), keys.get().map(|k| k.total));
    view! {
        <div class="ring-controls" role="group" aria-label="Ring view">
            <button class="small" data-testid="ring-zoom-in" aria-label="Zoom in"
                on:click=move |_| view_at.update(|v| *v = v.stepped(STEP))>"+"</button>
            <button class="small" data-testid="ring-zoom-out" aria-label="Zoom out"
                on:click=move |_| view_at.update(|v| *v = v.stepped(1.0 / STEP))>"−"</button>
            <button class="small" data-testid="ring-zoom-reset" aria-label="Show the whole ring"
                on:click=move |_| view_at.set(View::WHOLE)>"Whole ring"</button>
            <span class="zoom" data-testid="ring-zoom">{move || format!("zoom {}x", zoom.get())}</span>
            <VnodeControl scene vnodes />
        </div>
        <svg class="ring" viewBox=move || view_at.get().view_box() data-testid="ring" role="img" tabindex="0"
            style=move || format!("--z:{}", zoom.get()) data-zoom=move || zoom.get().to_string()
            aria-label=summary
            on:pointermove=on_move on:pointerdown=on_down
            on:pointerup=move |_| drag.set_value(None) on:pointerleave=move |_| { drag.set_value(None); hover.set(None) }
            on:wheel=on_wheel on:keydown=on_key>
            <title>"The hash ring"</title>
            <desc>{summary}</desc>
            <circle class="track" r=R />
            {arcs_layer}
            {ticks_layer}
            {labels_layer}
            {keys_layer}
            <g>{named_layer}</g>
            {lookup_layer}
            {hover_mark}
        </svg>
        <p class="ring-hover" data-testid="ring-hover" aria-live="polite"
            data-hash=move || hovered.get().map(|(h, _)| format!("{h:016x}")).unwrap_or_default()
            data-owner=move || hovered.get().map(|(_, o)| o).unwrap_or_default()>
            {move || match hovered.get() {
                Some((h, owner)) => format!("Nearest key: hash {h:016x} ({:.4} of a turn), owner {owner}", ring_fraction(h)),
                None => "Point at the ring for the nearest key; drag or use the arrow keys to pan, the wheel or +/− to zoom, 0 for the whole ring.".into(),
            }}
        </p>
        <Legend scene counts />
    }
}

/// The pointer within the element listening: (x, y, width, height) in pixels.
fn element_box(ev: &web_sys::MouseEvent) -> Option<(f64, f64, f64, f64)> {
    let el = ev.current_target()?.dyn_into::<web_sys::Element>().ok()?;
    let r = el.get_bounding_client_rect();
    Some((ev.client_x() as f64 - r.left(), ev.client_y() as f64 - r.top(), r.width(), r.height()))
}

/// What the ring shows, in words: its aria-label.
fn summarise(scene: Option<&Scene>, counts: Option<&Distribution>, keys: Option<usize>) -> String {
    let Some(scene) = scene else { return "The hash ring: no placement yet".into() };
    let ids = scene.members().iter().map(|m| m.id.as_str());
    let mut out = match scene.drawn.vnodes() {
        Some(v) => format!("Hash ring of {} nodes, {v} virtual nodes each", scene.members().len()),
        None => {
            format!("Keys on the hash ring placed by {} over {} nodes", scene.drawn.spec.name(), scene.members().len())
        }
    };
    if let Some(n) = keys {
        out.push_str(&format!(", {n} keys"));
    }
    let parts: Vec<String> = ids
        .enumerate()
        .map(|(i, id)| {
            let share = scene.shares.as_ref().map(|s| format!(" {:.1}% of the ring", 100.0 * s[i])).unwrap_or_default();
            let keys = counts.and_then(|c| c.counts.get(i)).map(|k| format!(", {k} keys")).unwrap_or_default();
            format!("{id}{share}{keys}")
        })
        .collect();
    if !parts.is_empty() {
        out.push_str(": ");
        out.push_str(&parts.join("; "));
    }
    out
}

/// The view's virtual nodes per node: a slider and a number (1..=1000), the
/// cluster's count beside it and a reset; or, for an algorithm without a
/// ring, a note that only keys are drawn.
#[component]
fn VnodeControl(scene: Memo<Option<Scene>>, vnodes: RwSignal<Option<u32>>) -> impl IntoView {
    // Rebuilt only when the algorithm changes, not as the slider moves.
    let algorithm = Memo::new(move |_| scene.with(|s| s.as_ref().map(|s| (s.own_vnodes, s.drawn.spec.name()))));
    let own = move || algorithm.get().and_then(|(own, _)| own);
    let current = move || vnodes.get().or_else(own).unwrap_or(*VNODES.start());
    let set = move |value: String| {
        if let Ok(v) = value.trim().parse::<u32>() {
            vnodes.set(Some(v.clamp(*VNODES.start(), *VNODES.end())));
        }
    };
    let on_input = move |ev: web_sys::Event| set(event_target_value(&ev));
    move || {
        match own() {
        None => {
            let name = algorithm.get().map(|(_, name)| name).unwrap_or_default();
            view! {
                <span class="vnodes" data-testid="ring-vnodes-none">
                    {format!("{name} has no ring of virtual nodes: keys only, each in its owner's colour.")}
                </span>
            }
            .into_any()
        }
        Some(cluster) => view! {
            <label class="vnodes">
                "virtual nodes per node "
                <input type="range" data-testid="ring-vnodes" min=VNODES.start().to_string() max=VNODES.end().to_string()
                    prop:value=move || current().to_string() aria-label="virtual nodes per node, for this view"
                    on:input=on_input />
            </label>
            <input type="number" data-testid="ring-vnodes-number" min=VNODES.start().to_string()
                max=VNODES.end().to_string() prop:value=move || current().to_string()
                aria-label="virtual nodes per node, for this view" on:change=on_input />
            <span class="vnodes-note" data-testid="ring-vnodes-note">
                {move || if current() == cluster {
                    format!("view: {cluster}, the cluster's")
                } else {
                    format!("view: {} (the cluster has {cluster})", current())
                }}
            </span>
            <button class="small" data-testid="ring-vnodes-reset" disabled=move || current() == cluster
                on:click=move |_| vnodes.set(None)>{format!("Cluster's ({cluster})")}</button>
        }
        .into_any(),
    }
    }
}

/// Each node: its swatch (colour and pattern), id, share of the ring and
/// keys of the drawn set, as `shared/` computes them.
#[component]
fn Legend(scene: Memo<Option<Scene>>, counts: Memo<Option<Distribution>>) -> impl IntoView {
    move || {
        let scene = scene.get()?;
        let counts = counts.get();
        let items = scene
            .members()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let share = scene.shares.as_ref().map(|s| s[i]);
                let keys = counts.as_ref().and_then(|c| c.counts.get(i).copied());
                let total = counts.as_ref().map(|c| c.total).unwrap_or(0);
                view! {
                    <li data-node=m.id.clone() data-share=share.map(|s| s.to_string()).unwrap_or_default()
                        data-keys=keys.map(|k| k.to_string()).unwrap_or_default()>
                        <svg class="legend-swatch" viewBox="0 0 12 12" aria-hidden="true">
                            <rect width="12" height="12" rx="2" fill=node_pattern(i) />
                        </svg>
                        <span class="legend-id">{m.id.clone()}</span>
                        {share.map(|s| view! { <span class="legend-share">{format!("{:.1}% of the ring", 100.0 * s)}</span> })}
                        {keys.map(|k| view! {
                            <span class="legend-keys">
                                {format!("{k} keys ({:.1}%)", if total > 0 { 100.0 * k as f64 / total as f64 } else { 0.0 })}
                            </span>
                        })}
                    </li>
                }
            })
            .collect_view();
        Some(view! { <ul class="ring-legend" data-testid="ring-legend" aria-label="Nodes on the ring">{items}</ul> })
    }
}

/// A key as a dot in its owner's colour, labelled when `labelled`; clicking
/// it looks the key up.
fn key_dot(
    placement: &dyn Placement,
    key: &str,
    class: &'static str,
    lookup_key: RwSignal<String>,
    z: f64,
    labelled: bool,
) -> impl IntoView {
    let hash = key_hash(key.as_bytes());
    let owner = placement.owner_index(hash);
    let f = ring_fraction(hash);
    let (x, y) = geometry::at(f, R - NAMED_IN / z);
    let colour = owner.map(node_colour).unwrap_or(NO_OWNER);
    let owner_id = owner.map(|o| placement.members()[o].id.clone()).unwrap_or_default();
    let label = labelled.then(|| {
        let (lx, ly) = geometry::at(f, R - (NAMED_IN + 8.0) / z);
        let anchor = if lx > 0.0 { "end" } else { "start" };
        view! { <text class="key-label" x=lx y=ly dy="0.35em" text-anchor=anchor>{key.to_string()}</text> }
    });
    view! {
        <g class="named">
            <circle class=class cx=x cy=y r=format!("{:.5}", 4.0 / z) fill=colour data-key=key.to_string()
                data-owner=owner_id.clone()
                on:click={
                    let key = key.to_string();
                    move |_| lookup_key.set(key.clone())
                }>
                <title>{format!("{key}\nhash {hash:016x}\nowner {owner_id}")}</title>
            </circle>
            {label}
        </g>
    }
}
