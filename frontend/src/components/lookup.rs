//! Key lookup: the key's hash, its place on the ring, and its owner, all
//! computed in the browser with `shardscope-shared`.

use leptos::prelude::*;
use shardscope_shared::hash::{key_hash, ring_fraction};
use shardscope_shared::placement::{restore, Member};

use crate::ws::Backend;

/// The owner of `key` under the backend's current placement, computed here.
pub fn owner_in_browser(backend: &Backend, key: &str) -> Option<String> {
    let spec = backend.placement.get()?;
    let members: Vec<Member> = backend.nodes.get().iter().map(|n| Member::new(&n.id)).collect();
    let slots = backend.slots.get();
    restore(&spec, &members, slots.as_deref()).owner_of(key.as_bytes()).map(str::to_string)
}

#[component]
pub fn Lookup(backend: Backend, lookup_key: RwSignal<String>) -> impl IntoView {
    let details = move || {
        let key = lookup_key.get();
        if key.is_empty() {
            return None;
        }
        let hash = key_hash(key.as_bytes());
        let owner = owner_in_browser(&backend, &key).unwrap_or_else(|| "—".into());
        Some((hash, owner))
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
                .map(|(hash, owner)| {
                    view! {
                        <dl class="lookup">
                            <dt>"hash (XXH3-64)"</dt>
                            <dd><code data-testid="lookup-hash">{format!("{hash:016x}")}</code></dd>
                            <dt>"ring position"</dt>
                            <dd>{format!("{:.4} of a turn", ring_fraction(hash))}</dd>
                            <dt>"owner"</dt>
                            <dd><strong data-testid="lookup-owner">{owner}</strong></dd>
                        </dl>
                    }
                })
        }}
    }
}
