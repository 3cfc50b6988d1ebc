//! The cluster panel: the nodes with their health and supervision (restarts,
//! a node given up on), buttons to add and remove
//! nodes, and the running rebalance: a progress bar per source -> target and
//! the moved fraction next to the ideal.

use leptos::prelude::*;
use shardscope_shared::protocol::ClientMsg;

use super::node_colour;
use crate::ws::backend;

#[component]
pub fn NodeList() -> impl IntoView {
    let backend = backend();
    let last_admin = RwSignal::new(None::<u64>);
    let admin_message = move || {
        let id = last_admin.get()?;
        backend.admin.with(|a| a.get(&id).cloned()).map(|(ok, m)| if ok { m } else { format!("failed: {m}") })
    };
    let add = move |_| last_admin.set(Some(backend.send(|id| ClientMsg::AddNode { id, rate: None })));
    // Counters on connect, after every membership change and every rebalance.
    Effect::new(move || {
        backend.nodes.track();
        backend
            .rebalance
            .with(|r| r.as_ref().map(|r| r.done))
            .unwrap_or(true)
            .then(|| backend.send(|id| ClientMsg::Stats { id }));
    });
    let refresh = move |_| {
        backend.send(|id| ClientMsg::Stats { id });
    };
    view! {
        <h2>"Nodes"</h2>
        <ul class="nodes" data-testid="node-list">
            {move || {
                backend
                    .nodes
                    .get()
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let id = n.id.clone();
                        let remove = move |_| {
                            let node = id.clone();
                            last_admin.set(Some(backend.send(|id| ClientMsg::RemoveNode { id, node, rate: None })));
                        };
                        view! {
                            <li data-node=n.id.clone() data-healthy=n.healthy.to_string()>
                                <span class="swatch" style=format!("background:{}", node_colour(i))></span>
                                <strong>{n.id.clone()}</strong>
                                <code>{n.addr.clone()}</code>
                                <span class="health">{if n.healthy { "healthy" } else { "failing check" }}</span>
                                {n.supervision.clone().map(|s| {
                                    let state = format!("{:?}", s.state).to_lowercase();
                                    let text = match (&s.last_exit, s.restarts) {
                                        (_, 0) => state.clone(),
                                        (Some(exit), r) => format!("{state}, restarted {r}x (last: {exit})"),
                                        (None, r) => format!("{state}, restarted {r}x"),
                                    };
                                    view! {
                                        <span class="supervision" data-testid="node-supervision" data-state=state
                                            data-restarts=s.restarts.to_string()>{text}</span>
                                    }
                                })}
                                <span class="keys" data-testid="node-keys">
                                    {backend.stats.with(|s| s.get(&n.id).map(|s| format!("{} keys, {} B", s.keys, s.bytes)))}
                                </span>
                                <button class="small" data-testid="remove-node" on:click=remove
                                    aria-label=format!("remove {}", n.id)>"remove"</button>
                            </li>
                        }
                    })
                    .collect_view()
            }}
        </ul>
        <div class="kv-form">
            <button data-testid="add-node" on:click=add>"Add node"</button>
            <button data-testid="refresh-stats" on:click=refresh>"Refresh counts"</button>
        </div>
        <p class="outcome" data-testid="admin-outcome">{admin_message}</p>
        <RebalancePanel />
    }
}

#[component]
fn RebalancePanel() -> impl IntoView {
    let backend = backend();
    move || {
        let r = backend.rebalance.get()?;
        let p = r.progress;
        let total = p.keys_total.max(1) as f64;
        let flows = p
            .flows
            .iter()
            .map(|f| {
                let width = format!("width:{:.1}%", 100.0 * f.keys as f64 / total);
                view! {
                    <div class="flow" data-from=f.from.clone() data-to=f.to.clone() data-keys=f.keys.to_string()>
                        <span>{format!("{} → {}: {} keys", f.from, f.to, f.keys)}</span>
                        <div class="bar"><div class="fill" style=width></div></div>
                    </div>
                }
            })
            .collect_view();
        let summary = format!(
            "{}: {} of {} keys moved ({:.1}%, ideal {:.1}%){}",
            p.change,
            p.keys_moved,
            p.keys_total,
            100.0 * p.fraction,
            100.0 * p.ideal,
            if r.done { format!(" in {:.2} s", p.seconds) } else { String::from("…") }
        );
        Some(view! {
            <section class="rebalance" data-testid="rebalance" data-done=r.done.to_string()
                data-fraction=p.fraction.to_string() data-ideal=p.ideal.to_string()
                data-moved=p.keys_moved.to_string()>
                <h3>"Rebalance"</h3>
                <p data-testid="rebalance-summary">{summary}</p>
                {flows}
                {r.error.map(|e| view! { <p class="error">{e}</p> })}
            </section>
        })
    }
}
