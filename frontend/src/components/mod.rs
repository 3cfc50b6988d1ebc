//! The page's views and the shell that lays them out.

mod browser;
mod chart;
mod cluster;
mod demo;
mod kv;
pub mod logic;
mod lookup;
mod ring;
mod upload;
pub mod whatif;

use leptos::prelude::*;

use crate::ws::Backend;

/// Okabe-Ito: eight colours told apart with every common colour-vision
/// deficiency. Node `i` (in id order) gets colour `i % 8`.
pub const PALETTE: [&str; 8] = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#6b6b6b"];

pub fn node_colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

#[component]
pub fn App() -> impl IntoView {
    let backend = Backend::connect();
    let lookup_key = RwSignal::new(String::new());
    let stored_keys = RwSignal::new(Vec::<String>::new());
    let initial = crate::url::read();
    let keyset = RwSignal::new(initial.keys.map(upload::KeySet::generated));
    let demo = RwSignal::new(initial.demo);
    let sims = RwSignal::new(initial.sims);
    let settings = logic::ViewSettings::new(initial.algo, initial.settings);
    // The URL follows the view, so a link reproduces it.
    Effect::new(move || {
        let keys = keyset.with(|k| k.as_ref().and_then(|k| k.generated_size()));
        crate::url::write(&crate::url::ViewState {
            demo: demo.get(),
            keys,
            sims: sims.get(),
            algo: settings.picked.get(),
            settings: settings.get(),
        });
    });
    view! {
        <header class="top">
            <h1>"ShardScope"</h1>
            <span class="status" data-testid="ws-status">
                {move || if backend.connected.get() { "connected" } else { "connecting…" }}
            </span>
            <button class="small" data-testid="demo-toggle" aria-pressed=move || demo.get().to_string()
                on:click=move |_| demo.update(|d| *d = !*d)>
                {move || if demo.get() { "Leave demo mode" } else { "Demo mode" }}
            </button>
        </header>
        <main class=move || if demo.get() { "layout demo" } else { "layout" }>
            {move || demo.get().then(|| view! {
                <section class="panel wide"><demo::Narration backend keyset /></section>
            })}
            <section class="panel ring-panel">
                <ring::RingView backend lookup_key stored_keys keyset />
            </section>
            <section class="panel side">
                <lookup::Lookup backend lookup_key />
                <kv::KvForm backend stored_keys />
                <cluster::NodeList backend />
            </section>
            <section class="panel wide">
                <logic::AlgorithmView backend lookup_key keyset settings />
            </section>
            <section class="panel wide">
                <browser::DataBrowser backend />
            </section>
            <section class="panel wide">
                <upload::Upload backend keyset />
            </section>
            <section class="panel wide">
                <whatif::WhatIf backend keyset sims />
            </section>
        </main>
    }
}
