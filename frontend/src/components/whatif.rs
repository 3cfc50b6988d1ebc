//! What-if: join, remove or re-weight nodes in the browser only and see
//! which keys would move, the fraction next to the ideal, and the flows
//! between nodes, under the cluster's own algorithm. No data moves.

use leptos::prelude::*;
use shardscope_shared::placement::analysis::moved_keys;
use shardscope_shared::placement::{build_for_keys, restore, Member, PlacementSpec, WEIGHT};

use super::page;
use super::upload::KeySet;
use crate::ws::backend;

/// Keys used when no set has been uploaded or generated.
const DEFAULT_KEYS: usize = 10_000;

/// One simulated membership change.
#[derive(Clone, Debug, PartialEq)]
pub enum Sim {
    Join(String),
    Leave(String),
    Weight(String, u32),
}

impl Sim {
    /// `join:ID`, `leave:ID` or `weight:ID:W`, as the URL carries it.
    pub fn encode(&self) -> String {
        match self {
            Sim::Join(id) => format!("join:{id}"),
            Sim::Leave(id) => format!("leave:{id}"),
            Sim::Weight(id, w) => format!("weight:{id}:{w}"),
        }
    }

    pub fn decode(text: &str) -> Option<Sim> {
        let mut parts = text.splitn(3, ':');
        match (parts.next()?, parts.next(), parts.next()) {
            ("join", Some(id), None) if !id.is_empty() => Some(Sim::Join(id.into())),
            ("leave", Some(id), None) if !id.is_empty() => Some(Sim::Leave(id.into())),
            ("weight", Some(id), Some(w)) => {
                Some(Sim::Weight(id.into(), w.parse().ok().filter(|w| WEIGHT.contains(w))?))
            }
            _ => None,
        }
    }
}

fn apply(members: &[Member], sims: &[Sim]) -> Vec<Member> {
    let mut out = members.to_vec();
    for s in sims {
        match s {
            Sim::Join(id) => out.push(Member::new(id.clone())),
            Sim::Leave(id) => out.retain(|m| &m.id != id),
            Sim::Weight(id, w) => out.iter_mut().filter(|m| &m.id == id).for_each(|m| m.weight = *w),
        }
    }
    out
}

#[component]
pub fn WhatIf() -> impl IntoView {
    let backend = backend();
    let super::Page { keyset, sims, .. } = page();
    let members = move || backend.nodes.get().iter().map(|n| Member::new(&n.id)).collect::<Vec<_>>();
    let after = move || apply(&members(), &sims.get());
    let result = Memo::new(move |_| {
        let spec = backend.placement.get()?;
        let before_members = members();
        let sims = sims.get();
        if sims.is_empty() || before_members.is_empty() {
            return None;
        }
        let set = keyset.get().unwrap_or_else(|| KeySet::generated(DEFAULT_KEYS));
        let slots = backend.slots.get();
        let mut before = restore(&spec, &before_members, slots.as_deref());
        if before.depends_on_keys() {
            before = build_for_keys(&spec, &before_members, &set.hashes);
        }
        let after_members = apply(&before_members, &sims);
        // Changes apply to the live placement, as the cluster would (jump
        // keeps its buckets); bounded places the key set afresh.
        let after = if matches!(spec, PlacementSpec::Bounded { .. }) {
            build_for_keys(&spec, &after_members, &set.hashes)
        } else {
            let mut p = restore(&spec, &before_members, slots.as_deref());
            p.set_members(&after_members);
            p
        };
        let mv = moved_keys(before.as_ref(), after.as_ref(), &set.hashes);
        Some((set.name, mv.moves.len(), mv.fraction, mv.ideal, mv.flows))
    });
    let join = move |_| {
        sims.update(|s| {
            let n = s.iter().filter(|x| matches!(x, Sim::Join(_))).count() + 1;
            s.push(Sim::Join(format!("node-sim-{n}")));
        })
    };
    view! {
        <h2>"What if…"</h2>
        <p class="outcome">"Simulated in the browser under the cluster's algorithm: no data moves."</p>
        <ul class="nodes" data-testid="whatif-members">
            {move || after().into_iter().map(|m| {
                let (id, w) = (m.id.clone(), m.weight);
                let (leave_id, up_id, down_id) = (id.clone(), id.clone(), id.clone());
                view! {
                    <li data-node=id.clone() data-weight=w.to_string()>
                        <strong>{id.clone()}</strong>
                        <span class="health">{format!("weight {w}")}</span>
                        <button class="small" data-testid="whatif-heavier" disabled={w >= *WEIGHT.end()} on:click=move |_| sims.update(|s| s.push(Sim::Weight(up_id.clone(), w + 1)))>"+"</button>
                        <button class="small" data-testid="whatif-lighter" disabled={w <= 1} on:click=move |_| sims.update(|s| s.push(Sim::Weight(down_id.clone(), w.saturating_sub(1).max(1))))>"−"</button>
                        <button class="small" data-testid="whatif-leave" on:click=move |_| sims.update(|s| s.push(Sim::Leave(leave_id.clone())))>"leave"</button>
                    </li>
                }
            }).collect_view()}
        </ul>
        <div class="kv-form">
            <button data-testid="whatif-join" on:click=join>"Simulate a join"</button>
            <button data-testid="whatif-reset" on:click=move |_| sims.set(Vec::new())>"Reset"</button>
        </div>
        {move || result.get().map(|(name, moved, fraction, ideal, flows)| view! {
            <p data-testid="whatif-result" data-moved=moved.to_string() data-fraction=fraction.to_string() data-ideal=ideal.to_string()>
                {format!("{name}: {moved} keys would move ({:.1}%, ideal {:.1}%)", 100.0 * fraction, 100.0 * ideal)}
            </p>
            <ul class="flows">
                {flows.into_iter().map(|(from, to, n)| view! { <li>{format!("{from} → {to}: {n}")}</li> }).collect_view()}
            </ul>
        })}
    }
}
