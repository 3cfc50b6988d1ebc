//! The cluster panel: the nodes the backend reports, in placement order.

use leptos::prelude::*;

use super::node_colour;
use crate::ws::Backend;

#[component]
pub fn NodeList(backend: Backend) -> impl IntoView {
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
                        view! {
                            <li data-node=n.id.clone()>
                                <span class="swatch" style=format!("background:{}", node_colour(i))></span>
                                <strong>{n.id.clone()}</strong>
                                <code>{n.addr.clone()}</code>
                            </li>
                        }
                    })
                    .collect_view()
            }}
        </ul>
    }
}
