//! Key lookup: the key's hash, its place on the ring, its owner and replicas,
//! and why, all computed in the browser with `shardscope-shared`.

use leptos::prelude::*;
use shardscope_shared::hash::{key_hash, ring_fraction};
use shardscope_shared::placement::jump::Jump;
use shardscope_shared::placement::maglev::Maglev;
use shardscope_shared::placement::ring::Ring;
use shardscope_shared::placement::{restore, Member, Placement, PlacementSpec};

use super::page;
use crate::ws::{backend, Backend};

/// Replicas shown for a key.
const REPLICAS: usize = 3;

fn placement(backend: &Backend) -> Option<(PlacementSpec, Vec<Member>, Box<dyn Placement>)> {
    let spec = backend.placement.get()?;
    let members: Vec<Member> = backend.nodes.get().iter().map(|n| Member::new(&n.id)).collect();
    let slots = backend.slots.get();
    let p = restore(&spec, &members, slots.as_deref());
    Some((spec, members, p))
}

/// The owner of `key` under the backend's current placement, computed here.
pub fn owner_in_browser(backend: &Backend, key: &str) -> Option<String> {
    let (_, _, p) = placement(backend)?;
    p.owner_of(key.as_bytes()).map(str::to_string)
}

/// One line on how the algorithm picked the owner of `hash`.
fn why(spec: &PlacementSpec, members: &[Member], slots: Option<&[Option<String>]>, hash: u64) -> String {
    match spec {
        PlacementSpec::Modulo => format!("hash mod {} = {}", members.len(), hash % members.len().max(1) as u64),
        PlacementSpec::Ring { vnodes } => {
            let ring = Ring::new(members, *vnodes);
            let (point, _) = ring.points().nth(ring.successor(hash)).unwrap_or_default();
            format!("first of {} virtual nodes clockwise from the hash is at {point:016x}", ring.point_count())
        }
        PlacementSpec::Rendezvous => {
            format!("highest of {} scores mix64(hash ^ XXH3(node id))", members.len())
        }
        PlacementSpec::Jump => {
            let jump = match slots {
                Some(s) => Jump::from_slots(s),
                None => Jump::new(members),
            };
            let path: Vec<String> = jump.bucket_path(hash).iter().map(u32::to_string).collect();
            format!("jump hash over {} buckets lands in bucket {}", jump.slot_table().len(), path.join(" → "))
        }
        PlacementSpec::Maglev { table_size } => {
            let m = Maglev::new(members, *table_size);
            format!("lookup table slot hash mod {} = {}", m.table_size(), hash % m.table_size())
        }
        PlacementSpec::Bounded { capacity, .. } => {
            format!("ring walk from the hash to the first node under {capacity} x the mean load")
        }
    }
}

#[component]
pub fn Lookup() -> impl IntoView {
    let backend = backend();
    let lookup_key = page().lookup_key;
    let details = move || {
        let key = lookup_key.get();
        if key.is_empty() {
            return None;
        }
        let hash = key_hash(key.as_bytes());
        let (spec, members, p) = placement(&backend)?;
        let owner = p.owner_of(key.as_bytes()).unwrap_or("—").to_string();
        let replicas = p.owners_of(key.as_bytes(), REPLICAS).join(", ");
        let slots = backend.slots.get();
        let reason = format!("{}: {}", spec.name(), why(&spec, &members, slots.as_deref(), hash));
        Some((hash, owner, replicas, reason))
    };
    view! {
        <h2>"Where does a key live?"</h2>
        <input
            type="text"
            placeholder="type a key"
            data-testid="lookup-input"
            prop:value=move || lookup_key.get()
            on:input=move |ev| lookup_key.set(event_target_value(&ev))
        />
        {move || {
            details()
                .map(|(hash, owner, replicas, reason)| {
                    view! {
                        <dl class="lookup">
                            <dt>"hash (XXH3-64)"</dt>
                            <dd><code data-testid="lookup-hash">{format!("{hash:016x}")}</code></dd>
                            <dt>"ring position"</dt>
                            <dd>{format!("{:.4} of a turn", ring_fraction(hash))}</dd>
                            <dt>"owner"</dt>
                            <dd><strong data-testid="lookup-owner">{owner}</strong></dd>
                            <dt>{format!("replicas (top {REPLICAS})")}</dt>
                            <dd data-testid="lookup-replicas">{replicas}</dd>
                            <dt>"why"</dt>
                            <dd data-testid="lookup-why">{reason}</dd>
                        </dl>
                    }
                })
        }}
    }
}
