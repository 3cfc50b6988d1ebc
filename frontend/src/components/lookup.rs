//! Key lookup: the key's hash, its place on the ring, its owner and replicas,
//! and why, all computed in the browser with `shardscope-shared`.

use leptos::prelude::*;
use shardscope_shared::hash::{key_hash, ring_fraction};
use shardscope_shared::placement::{restore, Member, Placement, PlacementSpec};

use super::page;
use crate::ws::{backend, Backend};

/// Replicas shown for a key.
const REPLICAS: usize = 3;

/// The backend's current placement, rebuilt here.
fn placement(backend: &Backend) -> Option<(PlacementSpec, Box<dyn Placement>)> {
    let spec = backend.placement.get()?;
    let members: Vec<Member> = backend.nodes.get().iter().map(|n| Member::new(&n.id)).collect();
    let slots = backend.slots.get();
    let p = restore(&spec, &members, slots.as_deref());
    Some((spec, p))
}

/// The owner of `key` under the backend's current placement, computed here.
pub fn owner_in_browser(backend: &Backend, key: &str) -> Option<String> {
    let (_, p) = placement(backend)?;
    p.owner_of(key.as_bytes()).map(str::to_string)
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
        let (spec, p) = placement(&backend)?;
        let owner = p.owner_of(key.as_bytes()).unwrap_or("—").to_string();
        let replicas = p.owners_of(key.as_bytes(), REPLICAS).join(", ");
        let reason = format!("{}: {}", spec.name(), p.explain(hash).summary(p.members()));
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
