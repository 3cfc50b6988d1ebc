//! Each algorithm shown by its own logic, for the looked-up key: the ring's
//! clockwise walk, every node's HRW score, jump's bucket jumps, a window of
//! Maglev's table, bounded loads' capacities and overflow, modulo's
//! remainder, drawn from shared's `explain`. An algorithm picker with its settings chooses what to show
//! (the cluster's own algorithm by default); nothing here changes the cluster.

use leptos::prelude::*;
use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::explain::Explanation;
use shardscope_shared::placement::{
    build_for_keys, restore, Algorithm, Member, Settings, CAPACITY, TABLE_SIZE, VNODES,
};

use super::node_colour;
use super::page;
use super::upload::KeySet;
use crate::ws::backend;

/// The view's own algorithm and settings (`None` follows the cluster's);
/// the URL carries them.
#[derive(Clone, Copy)]
pub struct ViewSettings {
    pub picked: RwSignal<Option<Algorithm>>,
    pub vnodes: RwSignal<u32>,
    pub table_size: RwSignal<u64>,
    pub capacity: RwSignal<f64>,
}

impl ViewSettings {
    pub fn new(picked: Option<Algorithm>, settings: Settings) -> Self {
        ViewSettings {
            picked: RwSignal::new(picked),
            vnodes: RwSignal::new(settings.vnodes),
            table_size: RwSignal::new(settings.table_size),
            capacity: RwSignal::new(settings.capacity),
        }
    }

    /// The settings as they stand.
    pub fn get(&self) -> Settings {
        Settings { vnodes: self.vnodes.get(), table_size: self.table_size.get(), capacity: self.capacity.get() }
    }
}

#[component]
pub fn AlgorithmView() -> impl IntoView {
    let backend = backend();
    let super::Page { lookup_key, keyset, settings, .. } = page();
    let ViewSettings { picked, vnodes, table_size, capacity } = settings;
    let spec = move || match picked.get() {
        None => backend.placement.get(),
        Some(algorithm) => Some(algorithm.spec(settings.get())),
    };
    let body = move || {
        let spec = spec()?;
        let members: Vec<Member> = backend.nodes.get().iter().map(|n| Member::new(&n.id)).collect();
        if members.is_empty() {
            return None;
        }
        let key = match lookup_key.get() {
            k if k.is_empty() => "key-0".to_string(),
            k => k,
        };
        let hash = key_hash(key.as_bytes());
        // The cluster's own placement (jump with its slots) unless another
        // algorithm is picked; bounded places the chosen key set first.
        let set = keyset.get().unwrap_or_else(|| KeySet::generated(10_000));
        let placement = match backend.slots.get().filter(|_| picked.get().is_none()) {
            Some(slots) => restore(&spec, &members, Some(&slots)),
            None => build_for_keys(&spec, &members, &set.hashes),
        };
        let ms = placement.members().to_vec();
        let id = |i: usize| ms[i].id.clone();
        let explained = match placement.explain(hash) {
            Explanation::Empty => view! { <p>"no nodes"</p> }.into_any(),
            Explanation::Modulo { slots, slot, owner } => view! {
                <p data-testid="logic-modulo" data-owner=id(owner)>
                    {format!("{hash:016x} mod {slots} = {slot} → {}", id(owner))}
                </p>
            }
            .into_any(),
            Explanation::Ring { next, .. } => {
                let rows = next
                    .into_iter()
                    .enumerate()
                    .map(|(s, (p, o))| {
                        view! {
                            <li class=if s == 0 { "winner" } else { "" } data-owner=id(o)>
                                <span class="swatch" style=format!("background:{}", node_colour(o))></span>
                                {format!("{p:016x} — {}{}", id(o), if s == 0 { " (owner: first point clockwise)" } else { "" })}
                            </li>
                        }
                    })
                    .collect_view();
                view! { <p>{format!("key at {hash:016x}; the next virtual nodes clockwise:")}</p><ol data-testid="logic-ring">{rows}</ol> }.into_any()
            }
            Explanation::Rendezvous { scores, winner } => {
                let max = scores.iter().cloned().fold(f64::MIN, f64::max).max(f64::MIN_POSITIVE);
                let bars = scores
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        view! {
                            <div class="score" data-node=id(i) data-score=s.to_string() data-winner=(i == winner).to_string()>
                                <span>{id(i)}</span>
                                <div class="bar"><div class="fill" style=format!("width:{:.1}%;background:{}", 100.0 * s / max, node_colour(i))></div></div>
                            </div>
                        }
                    })
                    .collect_view();
                view! { <p>"Each node scores the key; the highest wins:"</p><div data-testid="logic-hrw">{bars}</div> }
                    .into_any()
            }
            Explanation::Jump { buckets, path } => {
                let steps = path
                    .into_iter()
                    .map(|(b, holder)| {
                        let text = match holder {
                            Some(m) => format!("bucket {b} → {}", id(m)),
                            None => format!("bucket {b} → tombstone, jump again"),
                        };
                        view! { <li data-bucket=b.to_string() data-owner=holder.map(&id).unwrap_or_default()>{text}</li> }
                    })
                    .collect_view();
                view! { <p>{format!("jump hash over {buckets} buckets:")}</p><ol data-testid="logic-jump">{steps}</ol> }
                    .into_any()
            }
            Explanation::Maglev { size, slot, window } => {
                let cells = window
                    .into_iter()
                    .map(|(s, m)| {
                        view! {
                            <span class=if s == slot { "cell key" } else { "cell" } data-slot=s.to_string() data-owner=id(m)
                                style=format!("background:{}", node_colour(m)) title=format!("slot {s}: {}", id(m))></span>
                        }
                    })
                    .collect_view();
                view! {
                    <p>{format!("table[{hash:016x} mod {size} = {slot}]; the table around that slot:")}</p>
                    <div class="grid" data-testid="logic-maglev" data-slot=slot.to_string()>{cells}</div>
                }
                .into_any()
            }
            Explanation::Bounded { walk, loads, capacities, capacity } => {
                let rows = loads
                    .iter()
                    .zip(&capacities)
                    .enumerate()
                    .map(|(i, (&load, &cap))| {
                        view! {
                            <div class="score" data-node=id(i) data-load=load.to_string() data-capacity=cap.to_string()>
                                <span>{format!("{}: {load} / {cap}", id(i))}</span>
                                <div class="bar"><div class="fill" style=format!("width:{:.1}%;background:{}", 100.0 * load as f64 / cap.max(1) as f64, node_colour(i))></div></div>
                            </div>
                        }
                    })
                    .collect_view();
                let walk: Vec<String> = walk.into_iter().map(&id).collect();
                let overflow = match walk.len() {
                    0 | 1 => "the first node clockwise had room".to_string(),
                    _ => format!(
                        "the walk passed over full {} and landed on {}",
                        walk[..walk.len() - 1].join(", "),
                        walk[walk.len() - 1]
                    ),
                };
                view! {
                    <p data-testid="logic-bounded" data-walk=walk.join(",")>{format!("{} keys, capacity {capacity} x the mean; for this key, {overflow}:", set.hashes.len())}</p>
                    {rows}
                }
                .into_any()
            }
        };
        Some(view! { <p class="outcome">{format!("{} for {key:?}", spec.name())}</p> {explained} })
    };
    view! {
        <h2>"How the algorithm decides"</h2>
        <div class="kv-form">
            <select data-testid="logic-picker" prop:value=move || picked.get().map_or("", Algorithm::name)
                on:change=move |ev| picked.set(event_target_value(&ev).parse().ok())>
                <option value="">"the cluster's algorithm"</option>
                {Algorithm::ALL.map(|a| view! { <option value=a.name()>{a.name()}</option> }).collect_view()}
            </select>
            <label>"vnodes "<input type="number" min=*VNODES.start() max=*VNODES.end() prop:value=move || vnodes.get().to_string()
                on:change=move |ev| vnodes.set(clamped(&event_target_value(&ev), VNODES, Settings::default().vnodes)) /></label>
            <label>"table size "<input type="number" min=*TABLE_SIZE.start() max=*TABLE_SIZE.end() prop:value=move || table_size.get().to_string()
                on:change=move |ev| table_size.set(clamped(&event_target_value(&ev), TABLE_SIZE, Settings::default().table_size)) /></label>
            <label>"capacity "<input type="number" step="0.05" min=*CAPACITY.start() max=*CAPACITY.end() prop:value=move || capacity.get().to_string()
                on:change=move |ev| capacity.set(clamped(&event_target_value(&ev), CAPACITY, Settings::default().capacity)) /></label>
        </div>
        {body}
    }
}

/// What was typed into a setting, held within its bounds (the default when
/// it is not a number).
fn clamped<T: std::str::FromStr + PartialOrd + Copy>(text: &str, bounds: std::ops::RangeInclusive<T>, default: T) -> T {
    let value = text.parse().unwrap_or(default);
    if bounds.contains(&value) {
        value
    } else if value > *bounds.end() {
        *bounds.end()
    } else {
        *bounds.start() // below, or not a number at all (NaN)
    }
}
