//! The data browser: the cluster's pairs a page at a time (GET_ALL paged,
//! with a key-prefix search), each with its owner, and a delete button.

use leptos::prelude::*;
use shardscope_shared::protocol::{ClientMsg, Datum, NodeReply};

use crate::ws::backend;

/// Pairs per page.
const PAGE: usize = 20;

#[component]
pub fn DataBrowser() -> impl IntoView {
    let backend = backend();
    let prefix = RwSignal::new(String::new());
    // The `after` cursor of each page shown so far (None for the first).
    let cursors = RwSignal::new(vec![None::<Datum>]);
    let request = RwSignal::new(None::<u64>);
    let deleted = RwSignal::new(None::<u64>);
    let load = move |after: Option<Datum>| {
        let p = prefix.get_untracked();
        let id = backend.send(|id| ClientMsg::GetAll { id, prefix: Some(p.into()), after, limit: Some(PAGE) });
        request.set(Some(id));
    };
    let search = move |_| {
        cursors.set(vec![None]);
        load(None);
    };
    let page = move || {
        let id = request.get()?;
        backend.answers.with(|a| match a.get(&id).map(|ans| &ans.reply) {
            Some(NodeReply::Page { page, next }) => Some(Ok((page.clone(), next.clone()))),
            Some(NodeReply::Error { message, .. }) => Some(Err(message.clone())),
            _ => None,
        })
    };
    let next = move |_| {
        if let Some(Ok((_, Some(after)))) = page() {
            cursors.update(|c| c.push(Some(after.clone())));
            load(Some(after));
        }
    };
    let prev = move |_| {
        let mut c = cursors.get_untracked();
        if c.len() > 1 {
            c.pop();
            let after = c.last().cloned().flatten();
            cursors.set(c);
            load(after);
        }
    };
    // After a delete is acknowledged, show the same page again.
    Effect::new(move || {
        let Some(id) = deleted.get() else { return };
        if backend.answers.with(|a| a.contains_key(&id)) {
            deleted.set(None);
            load(cursors.get_untracked().last().cloned().flatten());
        }
    });
    view! {
        <h2>"Data"</h2>
        <div class="kv-form">
            <input type="text" placeholder="key prefix (empty: all)" data-testid="browse-prefix"
                prop:value=move || prefix.get() on:input=move |ev| prefix.set(event_target_value(&ev)) />
            <button data-testid="browse-search" on:click=search>"List"</button>
            <button data-testid="browse-prev" on:click=prev disabled={move || cursors.get().len() < 2}>"Previous"</button>
            <button data-testid="browse-next" on:click=next
                disabled=move || !matches!(page(), Some(Ok((_, Some(_)))))>"Next"</button>
        </div>
        {move || match page() {
            None => None,
            Some(Err(message)) => Some(view! { <p class="error" data-testid="browse-error">{message}</p> }.into_any()),
            Some(Ok((entries, _))) => Some(view! {
                <p class="outcome">{format!("page {} · {} pairs", cursors.get().len(), entries.len())}</p>
                <table class="compare" data-testid="browse-table">
                    <thead><tr><th>"key"</th><th>"value"</th><th>"owner"</th><th></th></tr></thead>
                    <tbody>
                        {entries.into_iter().map(|e| {
                            let key = e.key.to_text_lossy();
                            let owner = crate::components::lookup::owner_in_browser(&backend, &key).unwrap_or_default();
                            let remove = {
                                let k = e.key.clone();
                                move |_| deleted.set(Some(backend.send(|id| ClientMsg::Delete { id, key: k.clone() })))
                            };
                            view! {
                                <tr data-key=key.clone()>
                                    <td><code>{key.clone()}</code></td>
                                    <td>{e.value.to_text_lossy()}</td>
                                    <td>{owner}</td>
                                    <td><button class="small" data-testid="browse-delete" on:click=remove>"delete"</button></td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()),
        }}
    }
}
