//! Demo mode for a classroom: large type and high contrast, and a join
//! narrated step by step ("node-4 joins; these keys move to it: 24.7% of
//! keys, ideal 25%"), with next and back. The numbers are computed here with
//! `shared/` on the chosen key set, under the cluster's algorithm.

use leptos::prelude::*;
use shardscope_shared::placement::analysis::moved_keys;
use shardscope_shared::placement::{build_for_keys, restore, Member, PlacementSpec};

use super::page;
use super::upload::KeySet;
use crate::ws::{backend, Backend};

/// The narration of one join, one sentence per step.
fn narrate(backend: &Backend, set: &KeySet) -> Option<Vec<String>> {
    let spec = backend.placement.get()?;
    let members: Vec<Member> = backend.nodes.get().iter().map(|n| Member::new(&n.id)).collect();
    if members.is_empty() {
        return None;
    }
    let joiner = format!("node-{}", members.len() + 1);
    let slots = backend.slots.get();
    let (before, after) = if matches!(spec, PlacementSpec::Bounded { .. }) {
        let mut joined = members.clone();
        joined.push(Member::new(&joiner));
        (build_for_keys(&spec, &members, &set.hashes), build_for_keys(&spec, &joined, &set.hashes))
    } else {
        let mut after = restore(&spec, &members, slots.as_deref());
        after.add_member(Member::new(&joiner));
        (restore(&spec, &members, slots.as_deref()), after)
    };
    let mv = moved_keys(before.as_ref(), after.as_ref(), &set.hashes);
    let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    Some(vec![
        format!(
            "The cluster has {} nodes: {}. Each of {} keys goes to its owner by {}.",
            ids.len(),
            ids.join(", "),
            set.hashes.len(),
            spec.name()
        ),
        format!("{joiner} joins."),
        format!(
            "These keys move to it: {:.1}% of keys ({} of {}), ideal {:.1}%.",
            100.0 * mv.fraction,
            mv.moves.len(),
            set.hashes.len(),
            100.0 * mv.ideal
        ),
        format!("Every other key stays where it was: {:.1}%.", 100.0 * (1.0 - mv.fraction)),
    ])
}

#[component]
pub fn Narration() -> impl IntoView {
    let backend = backend();
    let keyset = page().keyset;
    let step = RwSignal::new(0usize);
    let steps = Memo::new(move |_| {
        let set = keyset.get().unwrap_or_else(|| KeySet::generated(10_000));
        narrate(&backend, &set).unwrap_or_default()
    });
    let last = move || steps.with(|s| s.len().saturating_sub(1));
    view! {
        <section class="narration" data-testid="narration" data-step=move || step.get().to_string()>
            <ol>
                {move || steps.get().into_iter().enumerate().filter(|(i, _)| *i <= step.get()).map(|(i, s)| view! {
                    <li class=move || if i == step.get() { "current" } else { "" }>{s}</li>
                }).collect_view()}
            </ol>
            <div class="kv-form">
                <button data-testid="demo-back" disabled={move || step.get() == 0} on:click=move |_| step.update(|s| *s = s.saturating_sub(1))>"Back"</button>
                <button data-testid="demo-next" disabled={move || step.get() >= last()} on:click=move |_| step.update(|s| *s = (*s + 1).min(last()))>"Next"</button>
            </div>
        </section>
    }
}
