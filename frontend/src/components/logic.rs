//! Each algorithm shown by its own logic, for the looked-up key: the ring's
//! clockwise walk, every node's HRW score, jump's bucket jumps, a window of
//! Maglev's table, bounded loads' capacities and overflow, modulo's
//! remainder. An algorithm picker with its settings chooses what to show
//! (the cluster's own algorithm by default); nothing here changes the cluster.

use leptos::prelude::*;
use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::bounded::Bounded;
use shardscope_shared::placement::jump::Jump;
use shardscope_shared::placement::maglev::Maglev;
use shardscope_shared::placement::rendezvous::Rendezvous;
use shardscope_shared::placement::ring::Ring;
use shardscope_shared::placement::{
    Algorithm, Member, Placement, PlacementSpec, Settings, CAPACITY, TABLE_SIZE, VNODES,
};

use super::node_colour;
use super::page;
use super::upload::KeySet;
use crate::ws::backend;

/// Cells of the Maglev table shown around the key's slot.
const WINDOW: u64 = 48;

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
        let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        let colour_of = move |id: &str| node_colour(ids.iter().position(|i| i == id).unwrap_or(0));
        let explained = match &spec {
            PlacementSpec::Modulo => {
                let i = (hash % members.len() as u64) as usize;
                view! {
                    <p data-testid="logic-modulo" data-owner=members[i].id.clone()>
                        {format!("{hash:016x} mod {} = {i} → {}", members.len(), members[i].id)}
                    </p>
                }
                .into_any()
            }
            PlacementSpec::Ring { vnodes } => {
                let ring = Ring::new(&members, *vnodes);
                let start = ring.successor(hash);
                let points: Vec<(u64, usize)> = ring.points().collect();
                let rows = (0..5.min(points.len()))
                    .map(|s| {
                        let (p, o) = points[(start + s) % points.len()];
                        let id = ring.members()[o].id.clone();
                        view! {
                            <li class=if s == 0 { "winner" } else { "" } data-owner=id.clone()>
                                <span class="swatch" style=format!("background:{}", colour_of(&id))></span>
                                {format!("{p:016x} — {id}{}", if s == 0 { " (owner: first point clockwise)" } else { "" })}
                            </li>
                        }
                    })
                    .collect_view();
                view! { <p>{format!("key at {hash:016x}; the next virtual nodes clockwise:")}</p><ol data-testid="logic-ring">{rows}</ol> }.into_any()
            }
            PlacementSpec::Rendezvous => {
                let r = Rendezvous::new(&members);
                let scores = r.scores(hash);
                let winner = r.owner_index(hash).unwrap_or(0);
                let max = scores.iter().cloned().fold(f64::MIN, f64::max).max(f64::MIN_POSITIVE);
                let bars = scores
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let id = r.members()[i].id.clone();
                        view! {
                            <div class="score" data-node=id.clone() data-score=s.to_string() data-winner=(i == winner).to_string()>
                                <span>{id.clone()}</span>
                                <div class="bar"><div class="fill" style=format!("width:{:.1}%;background:{}", 100.0 * s / max, colour_of(&id))></div></div>
                            </div>
                        }
                    })
                    .collect_view();
                view! { <p>"Each node scores the key; the highest wins:"</p><div data-testid="logic-hrw">{bars}</div> }
                    .into_any()
            }
            PlacementSpec::Jump => {
                let jump = match backend.slots.get().filter(|_| picked.get().is_none()) {
                    Some(slots) => Jump::from_slots(&slots),
                    None => Jump::new(&members),
                };
                let slots = jump.slot_table();
                let steps = jump
                    .bucket_path(hash)
                    .into_iter()
                    .map(|b| {
                        let holder = slots[b as usize].clone();
                        let text = match &holder {
                            Some(id) => format!("bucket {b} → {id}"),
                            None => format!("bucket {b} → tombstone, jump again"),
                        };
                        view! { <li data-bucket=b.to_string() data-owner=holder.unwrap_or_default()>{text}</li> }
                    })
                    .collect_view();
                view! { <p>{format!("jump hash over {} buckets:", slots.len())}</p><ol data-testid="logic-jump">{steps}</ol> }.into_any()
            }
            PlacementSpec::Maglev { table_size } => {
                let m = Maglev::new(&members, *table_size);
                let size = m.table_size();
                let slot = hash % size;
                let cells = (0..WINDOW)
                    .map(|i| {
                        let s = (slot + size - WINDOW / 2 + i) % size;
                        let id = m.members()[m.table()[s as usize] as usize].id.clone();
                        view! {
                            <span class=if s == slot { "cell key" } else { "cell" } data-slot=s.to_string() data-owner=id.clone()
                                style=format!("background:{}", colour_of(&id)) title=format!("slot {s}: {id}")></span>
                        }
                    })
                    .collect_view();
                view! {
                    <p>{format!("table[{hash:016x} mod {size} = {slot}]; the table around that slot:")}</p>
                    <div class="grid" data-testid="logic-maglev" data-slot=slot.to_string()>{cells}</div>
                }
                .into_any()
            }
            PlacementSpec::Bounded { vnodes, capacity } => {
                let set = keyset.get().unwrap_or_else(|| KeySet::generated(10_000));
                let b = Bounded::new(&members, *vnodes, *capacity, &set.hashes);
                let walk: Vec<String> = b.walk(hash).into_iter().map(|i| b.members()[i].id.clone()).collect();
                let rows = b
                    .members()
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let (load, cap) = (b.loads()[i], b.capacities()[i]);
                        view! {
                            <div class="score" data-node=m.id.clone() data-load=load.to_string() data-capacity=cap.to_string()>
                                <span>{format!("{}: {load} / {cap}", m.id)}</span>
                                <div class="bar"><div class="fill" style=format!("width:{:.1}%;background:{}", 100.0 * load as f64 / cap.max(1) as f64, colour_of(&m.id))></div></div>
                            </div>
                        }
                    })
                    .collect_view();
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
