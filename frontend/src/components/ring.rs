//! The ring: the hash circle with every virtual node as a tick, arcs coloured
//! by owner, and keys as dots. Positions come from `shardscope-shared`.
//! [`RingView`] draws any placement it is given (the lesson draws its own);
//! [`ClusterRing`] is the live cluster's.

use std::f64::consts::TAU;

use leptos::prelude::*;
use shardscope_shared::hash::{key_hash, ring_fraction};
use shardscope_shared::placement::ring::Ring;
use shardscope_shared::placement::{restore, Member, Placement, PlacementSpec};

use std::sync::Arc;

use super::{node_colour, page};
use crate::ws::backend;

const R: f64 = 100.0;

/// Most key-set dots drawn; larger sets are sampled.
const MAX_DOTS: usize = 5_000;

/// (x, y) of a ring fraction, clockwise from the top.
fn at(fraction: f64, radius: f64) -> (f64, f64) {
    let a = fraction * TAU - TAU / 4.0;
    (radius * a.cos(), radius * a.sin())
}

/// SVG path of the arc from `from` to `to` (fractions, clockwise).
fn arc(from: f64, to: f64) -> String {
    let span = (to - from).rem_euclid(1.0);
    let (x0, y0) = at(from, R);
    let (x1, y1) = at(to, R);
    let large = if span > 0.5 { 1 } else { 0 };
    format!("M{x0:.3},{y0:.3} A{R},{R} 0 {large} 1 {x1:.3},{y1:.3}")
}

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

    /// The virtual nodes, for the algorithms that place by them.
    fn ring(&self) -> Option<Ring> {
        match self.spec {
            PlacementSpec::Ring { vnodes } | PlacementSpec::Bounded { vnodes, .. } => {
                Some(Ring::new(self.placement.members(), vnodes))
            }
            _ => None,
        }
    }
}

/// The ring of the live cluster: its placement, the placement before its
/// latest change, the chosen key set and the keys stored from this page.
#[component]
pub fn ClusterRing() -> impl IntoView {
    let backend = backend();
    let page = page();
    let shown = Signal::derive(move || {
        let members: Vec<Member> = backend.nodes.get().iter().map(|n| Member::new(&n.id)).collect();
        let spec = backend.placement.get()?;
        let slots = backend.slots.get();
        Some(Drawn::new(spec.clone(), restore(&spec, &members, slots.as_deref())))
    });
    let before = Signal::derive(move || {
        backend.previous.get().map(|(nodes, spec, slots)| {
            let members: Vec<Member> = nodes.iter().map(|n| Member::new(&n.id)).collect();
            Arc::from(restore(&spec, &members, slots.as_deref()))
        })
    });
    let set = Signal::derive(move || page.keyset.with(|k| k.as_ref().map(|k| k.hashes.clone())));
    view! { <RingView shown before set named=page.stored_keys lookup=page.lookup_key /> }
}

/// A ring: `shown`'s arcs (when it has points on the ring) and keys as dots
/// in their owner's colour: a key set (sampled past [`MAX_DOTS`]), named
/// keys (clickable: a click looks the key up) and the looked-up key. Keys
/// whose owner differs under `before` are animated from the old owner's
/// colour to the new one's.
#[component]
pub fn RingView(
    #[prop(into)] shown: Signal<Option<Drawn>>,
    #[prop(into)] before: Signal<Option<Arc<dyn Placement>>>,
    #[prop(into)] set: Signal<Option<Arc<[u64]>>>,
    #[prop(into)] named: Signal<Vec<String>>,
    lookup: RwSignal<String>,
) -> impl IntoView {
    // Four layers, each redrawn only when what it shows changes: typing a
    // lookup key moves one dot, not the ring or the key set.
    let nodes_layer = move || {
        let ring = shown.get()?.ring()?;
        let points: Vec<(u64, usize)> = ring.points().collect();
        let mut arcs = Vec::with_capacity(points.len());
        for (i, &(p, owner)) in points.iter().enumerate() {
            let prev = points[(i + points.len() - 1) % points.len()].0;
            arcs.push(view! {
                <path class="arc" d=arc(ring_fraction(prev), ring_fraction(p)) stroke=node_colour(owner) />
            });
        }
        let ticks = points
            .iter()
            .map(|&(p, owner)| {
                let (x0, y0) = at(ring_fraction(p), R - 4.0);
                let (x1, y1) = at(ring_fraction(p), R + 4.0);
                view! {
                    <line class="vnode" x1=x0 y1=y0 x2=x1 y2=y1 stroke=node_colour(owner)
                        data-owner=ring.members()[owner].id.clone() data-hash=format!("{p:016x}")>
                        <title>{format!("virtual node of {} at {p:016x} ({:.4} of a turn)", ring.members()[owner].id, ring_fraction(p))}</title>
                    </line>
                }
            })
            .collect_view();
        Some(view! { <g>{arcs}</g> <g>{ticks}</g> })
    };
    let stored_layer = move || {
        let shown = shown.get()?;
        Some(named.get().into_iter().map(|k| key_dot(shown.placement.as_ref(), &k, "key", lookup)).collect_view())
    };
    let lookup_layer = move || {
        let shown = shown.get()?;
        let k = lookup.get();
        (!k.is_empty()).then(|| key_dot(shown.placement.as_ref(), &k, "key lookup", lookup))
    };
    let set_layer = move || {
        let shown = shown.get()?;
        let now = shown.placement.as_ref();
        let before = before.get();
        let colour_of = |p: &dyn Placement, h: u64| {
            let id = p.owner_index(h).map(|i| p.members()[i].id.clone());
            let index = id.as_ref().and_then(|id| now.members().iter().position(|m| &m.id == id));
            (id, index.map(node_colour).unwrap_or("#999"))
        };
        // A key set: every k-th key (hashes are uniform, so a stride is a
        // faithful sample), with the full count in the middle.
        let set = set.get().map(|hashes| {
            let stride = hashes.len().div_ceil(MAX_DOTS).max(1);
            let dots = hashes
                .iter()
                .step_by(stride)
                .map(|&h| {
                    let (x, y) = at(ring_fraction(h), R - 24.0);
                    let owner = now.owner_index(h);
                    let colour = owner.map(node_colour).unwrap_or("#999");
                    let owner_id = owner.map(|o| now.members()[o].id.clone()).unwrap_or_default();
                    let moved_from = before.as_deref().and_then(|b| {
                        let (old, old_colour) = colour_of(b, h);
                        (old.as_deref() != Some(owner_id.as_str())).then_some(old_colour)
                    });
                    let moved = moved_from.is_some();
                    view! {
                        <circle class="set-key" cx=format!("{x:.2}") cy=format!("{y:.2}") r="1.2" fill=colour
                            data-owner=owner_id.clone() data-moved=moved.to_string()>
                            <title>{format!("hash {h:016x} ({:.4} of a turn)\nowner {owner_id}", ring_fraction(h))}</title>
                            {moved_from.map(|from| view! {
                                <animate attributeName="fill" from=from to=colour dur="2s" repeatCount="3" />
                                <animate attributeName="r" values="1.2;3;1.2" dur="2s" repeatCount="3" />
                            })}
                        </circle>
                    }
                })
                .collect_view();
            let shown = hashes.len().div_ceil(stride);
            let label = if shown < hashes.len() {
                format!("{} keys ({shown} shown)", hashes.len())
            } else {
                format!("{} keys", hashes.len())
            };
            view! {
                <g data-testid="ring-keyset" data-shown=shown.to_string() data-total=hashes.len().to_string()>{dots}</g>
                <text class="count" x="0" y="4" text-anchor="middle">{label}</text>
            }
        });
        set
    };
    view! {
        <svg class="ring" viewBox="-130 -130 260 260" data-testid="ring" role="img"
            aria-label="Consistent-hashing ring: arcs coloured by owning node">
            <circle class="track" r=R />
            {nodes_layer}
            {set_layer}
            <g>{stored_layer}</g>
            {lookup_layer}
        </svg>
    }
}

/// A key as a dot in its owner's colour; clicking it looks the key up.
fn key_dot(placement: &dyn Placement, key: &str, class: &'static str, lookup_key: RwSignal<String>) -> impl IntoView {
    let hash = key_hash(key.as_bytes());
    let owner = placement.owner_index(hash);
    let (x, y) = at(ring_fraction(hash), R - 14.0);
    let colour = owner.map(node_colour).unwrap_or("#999");
    let owner_id = owner.map(|o| placement.members()[o].id.clone()).unwrap_or_default();
    view! {
        <circle class=class cx=x cy=y r="4" fill=colour data-key=key.to_string() data-owner=owner_id.clone()
            on:click={
                let key = key.to_string();
                move |_| lookup_key.set(key.clone())
            }>
            <title>{format!("{key}\nhash {hash:016x}\nowner {owner_id}")}</title>
        </circle>
    }
}
