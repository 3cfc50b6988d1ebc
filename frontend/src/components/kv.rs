//! PUT, GET and DELETE a key through the backend, showing which node answered.

use leptos::prelude::*;
use shardscope_shared::protocol::{ClientMsg, NodeReply};

use super::page;
use crate::ws::backend;

#[component]
pub fn KvForm() -> impl IntoView {
    let backend = backend();
    let stored_keys = page().stored_keys;
    let key = RwSignal::new(String::new());
    let value = RwSignal::new(String::new());
    let pending = RwSignal::new(None::<(u64, &'static str, String)>);
    // Sends `op` for the typed key (nothing when the key is empty).
    let request = move |op: &'static str| {
        let k = key.get();
        if k.is_empty() {
            return;
        }
        let id = backend.send(|id| match op {
            "PUT" => ClientMsg::Put { id, key: k.as_str().into(), value: value.get().into() },
            "GET" => ClientMsg::Get { id, key: k.as_str().into() },
            _ => ClientMsg::Delete { id, key: k.as_str().into() },
        });
        pending.set(Some((id, op, k)));
    };
    let put = move |_| request("PUT");
    let get = move |_| request("GET");
    let delete = move |_| request("DELETE");
    let outcome = move || {
        let (id, op, k) = pending.get()?;
        let answer = backend.answers.with(|a| a.get(&id).cloned());
        let Some(answer) = answer else {
            return Some(format!("{op} {k}: waiting…"));
        };
        let node = answer.node.unwrap_or_else(|| "no node".into());
        Some(match answer.reply {
            NodeReply::Ok { .. } if op == "DELETE" => format!("DELETE {k}: removed from {node}"),
            NodeReply::Ok { .. } => format!("PUT {k}: stored on {node}"),
            NodeReply::Value { value, .. } => {
                format!("GET {k} = {:?} (from {node})", value.to_text_lossy())
            }
            NodeReply::Error { message, .. } => format!("{op} {k} failed: {message}"),
            other => format!("{op} {k}: unexpected reply {other:?}"),
        })
    };
    // Keys stored from this page are drawn on the ring.
    Effect::new(move || {
        let Some((id, "PUT", k)) = pending.get() else {
            return;
        };
        let stored =
            backend.answers.with(|a| matches!(a.get(&id), Some(ans) if matches!(ans.reply, NodeReply::Ok { .. })));
        if stored {
            stored_keys.update(|keys| {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            });
        }
    });
    let served_by = move || {
        let (id, _, _) = pending.get()?;
        backend.answers.with(|a| a.get(&id).and_then(|ans| ans.node.clone()))
    };
    view! {
        <h2>"Put and get"</h2>
        <div class="kv-form">
            <input type="text" placeholder="key" data-testid="kv-key"
                prop:value=move || key.get() on:input=move |ev| key.set(event_target_value(&ev)) />
            <input type="text" placeholder="value" data-testid="kv-value"
                prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev)) />
            <button data-testid="kv-put" on:click=put>"PUT"</button>
            <button data-testid="kv-get" on:click=get>"GET"</button>
            <button data-testid="kv-delete" on:click=delete>"DELETE"</button>
        </div>
        <p class="outcome" data-testid="kv-outcome" data-node=move || served_by().unwrap_or_default()>
            {outcome}
        </p>
    }
}
