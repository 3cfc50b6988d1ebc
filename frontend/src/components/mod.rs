//! The page's views and the shell that lays them out.

mod browser;
mod chart;
mod charts;
mod cluster;
mod kv;
mod lesson;
pub mod logic;
mod lookup;
mod ring;
mod upload;
pub mod whatif;

pub use lesson::STEPS as LESSON_STEPS;

use leptos::prelude::*;

use crate::ws::Backend;

/// Okabe-Ito: eight colours told apart with every common colour-vision
/// deficiency. Node `i` (in id order) gets colour `i % 8`.
pub const PALETTE: [&str; 8] = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#6b6b6b"];

pub fn node_colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// A texture per palette colour (drawn over it), so colour is not the only
/// carrier of a node's identity: plain, stripes one way and the other, dots,
/// cross-hatch, horizontal, vertical, checks.
const TEXTURES: [&str; 8] = [
    "",
    r##"<path d="M0,6 L6,0" stroke="#000" stroke-opacity="0.55" stroke-width="1.4"/>"##,
    r##"<circle cx="3" cy="3" r="1.3" fill="#000" fill-opacity="0.55"/>"##,
    r##"<path d="M0,0 L6,6 M0,6 L6,0" stroke="#000" stroke-opacity="0.5" stroke-width="1"/>"##,
    r##"<path d="M0,3 H6" stroke="#000" stroke-opacity="0.55" stroke-width="1.4"/>"##,
    r##"<path d="M3,0 V6" stroke="#000" stroke-opacity="0.55" stroke-width="1.4"/>"##,
    r##"<rect width="3" height="3" fill="#000" fill-opacity="0.45"/><rect x="3" y="3" width="3" height="3" fill="#000" fill-opacity="0.45"/>"##,
    r##"<path d="M0,0 L6,6" stroke="#fff" stroke-opacity="0.6" stroke-width="1.4"/>"##,
];

/// `url(#…)` of node `index`'s pattern: its colour with its texture. The
/// patterns are defined once per document by [`PatternDefs`] (and inlined
/// into an exported SVG with [`pattern_defs_markup`]).
pub fn node_pattern(index: usize) -> String {
    format!("url(#node-pattern-{})", index % PALETTE.len())
}

/// The `<defs>` of every node pattern, as SVG markup.
pub fn pattern_defs_markup() -> String {
    let mut out = String::from("<defs>");
    for (i, (colour, texture)) in PALETTE.iter().zip(TEXTURES).enumerate() {
        out.push_str(&format!(
            r##"<pattern id="node-pattern-{i}" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="{colour}"/>{texture}</pattern>"##
        ));
    }
    out.push_str("</defs>");
    out
}

/// An invisible SVG holding the node patterns, which every other SVG on the
/// page refers to.
#[component]
pub fn PatternDefs() -> impl IntoView {
    view! { <svg class="pattern-defs" width="0" height="0" aria-hidden="true" inner_html=pattern_defs_markup()></svg> }
}

/// The view state the components share, provided by [`App`]
/// (`provide_context`) next to the [`Backend`]; reach it with [`page`].
#[derive(Clone, Copy)]
pub struct Page {
    /// The key typed into the lookup (or clicked on the ring).
    pub lookup_key: RwSignal<String>,
    /// Keys stored from this page, drawn on the ring.
    pub stored_keys: RwSignal<Vec<String>>,
    /// The chosen key set: uploaded or generated.
    pub keyset: RwSignal<Option<upload::KeySet>>,
    /// The algorithm view's own algorithm and settings.
    pub settings: logic::ViewSettings,
    /// Lesson mode (the URL's `demo=1`), and its step (`step=N`, from 1).
    pub demo: RwSignal<bool>,
    pub lesson_step: RwSignal<usize>,
    /// The what-if changes.
    pub sims: RwSignal<Vec<whatif::Sim>>,
}

/// The page's shared view state.
pub fn page() -> Page {
    expect_context::<Page>()
}

#[component]
pub fn App() -> impl IntoView {
    let backend = Backend::connect();
    provide_context(backend);
    let initial = crate::url::read();
    let page = Page {
        lookup_key: RwSignal::new(String::new()),
        stored_keys: RwSignal::new(Vec::new()),
        keyset: RwSignal::new(initial.keys.map(upload::KeySet::generated)),
        settings: logic::ViewSettings::new(initial.algo, initial.settings),
        demo: RwSignal::new(initial.demo),
        lesson_step: RwSignal::new(initial.step.unwrap_or(1)),
        sims: RwSignal::new(initial.sims),
    };
    provide_context(page);
    lesson::provide_live_state();
    let Page { keyset, settings, demo, lesson_step, sims, .. } = page;
    // The URL follows the view, so a link reproduces it.
    Effect::new(move || {
        let keys = keyset.with(|k| k.as_ref().and_then(|k| k.generated_size()));
        crate::url::write(&crate::url::ViewState {
            demo: demo.get(),
            step: demo.get().then(|| lesson_step.get()).filter(|&s| s > 1),
            keys,
            sims: sims.get(),
            algo: settings.picked.get(),
            settings: settings.get(),
        });
    });
    view! {
        <PatternDefs />
        <header class="top">
            <h1>"ShardScope"</h1>
            <span class="status" data-testid="ws-status">
                {move || if backend.connected.get() { "connected" } else { "connecting…" }}
            </span>
            <button class="small" data-testid="lesson-toggle" aria-pressed=move || demo.get().to_string()
                on:click=move |_| demo.update(|d| *d = !*d)>
                {move || if demo.get() { "Leave lesson" } else { "Lesson" }}
            </button>
        </header>
        <main class=move || if demo.get() { "layout demo" } else { "layout" }>
            {move || demo.get().then(|| view! {
                <section class="panel wide lesson-panel"><lesson::Lesson /></section>
            })}
            <section class="panel ring-panel">
                <ring::ClusterRing />
            </section>
            <section class="panel side">
                <lookup::Lookup />
                <kv::KvForm />
                <cluster::NodeList />
            </section>
            <section class="panel wide">
                <logic::AlgorithmView />
            </section>
            <section class="panel wide">
                <browser::DataBrowser />
            </section>
            <section class="panel wide">
                <upload::Upload />
            </section>
            <section class="panel wide"><charts::ChartsPanel /></section>
            <section class="panel wide">
                <whatif::WhatIf />
            </section>
        </main>
    }
}
