//! ShardScope's page: a Leptos CSR app compiled to WebAssembly.
//!
//! - [`ws`]: the one WebSocket to the backend and the state it feeds.
//! - [`components`]: the views (ring, lookup, cluster panel, key-value form,
//!   data browser, key-set comparison, what-if, the lesson).
//! - [`url`]: the view state carried in the URL's fragment.
//!
//! Placement is never re-implemented here: every owner shown is computed with
//! `shardscope-shared`, the crate the backend routes with.

mod components;
mod url;
mod ws;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(components::App);
}
