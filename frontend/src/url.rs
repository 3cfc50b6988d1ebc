//! The view state in the URL's fragment, so a link reproduces a view:
//! `#demo=1&step=3&keys=10000&whatif=join:node-sim-1,weight:node-2:3&algo=maglev&table=101`.
//! Read once on load; written (with `history.replaceState`, no reload) on
//! every change.

use shardscope_shared::placement::{Algorithm, Settings, CAPACITY, TABLE_SIZE, VNODES};

use crate::components::whatif::Sim;

/// What the fragment carries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewState {
    /// Lesson mode (`demo=1`, the name demo mode had), and its step when
    /// past the first (`step=N`, 1 to the lesson's last).
    pub demo: bool,
    pub step: Option<usize>,
    /// A generated key-set size (uploaded files cannot travel in a URL).
    pub keys: Option<usize>,
    pub sims: Vec<Sim>,
    /// The algorithm view's own algorithm (`None` follows the cluster's) and settings.
    pub algo: Option<Algorithm>,
    pub settings: Settings,
}

impl ViewState {
    pub fn parse(fragment: &str) -> ViewState {
        let mut state = ViewState::default();
        for pair in fragment.trim_start_matches('#').split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "demo" => state.demo = v == "1",
                "step" => state.step = v.parse().ok().filter(|n| (1..=crate::components::LESSON_STEPS).contains(n)),
                "keys" => state.keys = v.parse().ok().filter(|n| (1..=1_000_000).contains(n)),
                // A link is anyone's input: a bounded number of what-ifs.
                "whatif" => state.sims = v.split(',').filter_map(Sim::decode).take(64).collect(),
                "algo" => state.algo = v.parse().ok(),
                "vnodes" => {
                    let s = &mut state.settings;
                    s.vnodes = v.parse().ok().filter(|n| VNODES.contains(n)).unwrap_or(s.vnodes)
                }
                "table" => {
                    let s = &mut state.settings;
                    s.table_size = v.parse().ok().filter(|n| TABLE_SIZE.contains(n)).unwrap_or(s.table_size)
                }
                "capacity" => {
                    let s = &mut state.settings;
                    s.capacity = v.parse().ok().filter(|c| CAPACITY.contains(c)).unwrap_or(s.capacity)
                }
                _ => {}
            }
        }
        state
    }

    pub fn fragment(&self) -> String {
        let mut parts = Vec::new();
        if self.demo {
            parts.push("demo=1".to_string());
        }
        if let Some(step) = self.step {
            parts.push(format!("step={step}"));
        }
        if let Some(n) = self.keys {
            parts.push(format!("keys={n}"));
        }
        if !self.sims.is_empty() {
            let sims: Vec<String> = self.sims.iter().map(Sim::encode).collect();
            parts.push(format!("whatif={}", sims.join(",")));
        }
        if let Some(algo) = self.algo {
            let Settings { vnodes, table_size, capacity } = self.settings;
            parts.push(format!("algo={algo}&vnodes={vnodes}&table={table_size}&capacity={capacity}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("#{}", parts.join("&"))
        }
    }
}

/// The state the page was opened with.
pub fn read() -> ViewState {
    let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
    ViewState::parse(&hash)
}

/// Puts `state` in the address bar without reloading.
pub fn write(state: &ViewState) {
    let Some(window) = web_sys::window() else { return };
    let Ok(history) = window.history() else { return };
    let url = match state.fragment() {
        f if f.is_empty() => window.location().pathname().unwrap_or_else(|_| "/".into()),
        f => f,
    };
    let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
}
