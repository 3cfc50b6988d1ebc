//! The charts panel: on the chosen key set (uploaded, a sample, generated;
//! 10,000 generated keys until one is chosen), keys (and a workload's
//! requests) per node over N simulated nodes under a picked algorithm, the
//! ring's balance against virtual nodes, the fraction of keys one join
//! moves against N for every algorithm, and each algorithm's lookup time
//! measured in this browser. Every number comes from `shared`; curves that
//! need many placements run on `shared`'s stride sample, and say so.

use std::ops::RangeInclusive;
use std::sync::Arc;

use leptos::prelude::*;
use shardscope_shared::placement::analysis::{
    distribution, join_curve, simulated_members, stride_sample, vnode_curve, Distribution, JoinPoint, VnodePoint,
    CURVE_SAMPLE, JOIN_SAMPLE, JOIN_STEPS, VNODE_STEPS,
};
use shardscope_shared::placement::{build_for_keys, Algorithm, Placement, PlacementSpec, Settings};

use super::chart::{short_number, BarChart, Figure, LineChart, Mark, Scale, Series, Table};
use super::page;
use super::upload::{now_ms, KeySet};

/// The key set charted until one is chosen.
const DEFAULT_KEYS: usize = 10_000;
/// Simulated cluster sizes.
const NODES: RangeInclusive<usize> = 3..=1000;
/// Lookups are repeated over the sample until this long has passed (ms).
const LOOKUP_MIN_MS: f64 = 10.0;

/// Keys (and requests) per node over N simulated nodes.
#[derive(Clone, PartialEq)]
struct Placed {
    algorithm: Algorithm,
    ids: Vec<String>,
    keys: Distribution,
    requests: Option<Distribution>,
    ms: f64,
}

/// "on a 100,000-key sample of 1,000,000", or nothing when every key was used.
fn sample_note(used: usize, of: usize) -> Option<String> {
    (used < of).then(|| format!("on a {}-key sample of {}", thousands(used), thousands(of)))
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Nanoseconds per `owner_index` over `hashes`, repeated for at least
/// [`LOOKUP_MIN_MS`] (the browser's clock is coarse).
fn ns_per_lookup(p: &dyn Placement, hashes: &[u64]) -> f64 {
    if hashes.is_empty() {
        return 0.0;
    }
    let t0 = now_ms();
    let mut rounds = 0u32;
    loop {
        for &h in hashes {
            std::hint::black_box(p.owner_index(std::hint::black_box(h)));
        }
        rounds += 1;
        let elapsed = now_ms() - t0;
        if elapsed >= LOOKUP_MIN_MS || rounds >= 10_000 {
            return elapsed * 1e6 / (rounds as f64 * hashes.len() as f64);
        }
    }
}

/// A memo's value with the time it took (ms).
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t0 = now_ms();
    let v = f();
    (v, now_ms() - t0)
}

fn distribution_table(ids: &[String], d: &Distribution, what: &str) -> Table {
    let mut t = Table::new(&["node", what]);
    t.rows = ids.iter().zip(&d.counts).map(|(id, c)| vec![id.clone(), c.to_string()]).collect();
    t
}

fn distribution_marks(d: &Distribution) -> Vec<Mark> {
    vec![Mark { label: format!("mean = ideal share {}", short_number(d.mean)), value: d.mean }]
}

fn stats_line(d: &Distribution) -> String {
    format!(
        "mean {:.1}, std dev {:.1} ({:.1}% of the mean), max/mean {:.3}",
        d.mean,
        d.std_dev,
        100.0 * d.relative_std_dev(),
        d.max_over_mean
    )
}

#[component]
pub fn ChartsPanel() -> impl IntoView {
    let keyset = page().keyset;
    let n = RwSignal::new(10usize);
    let algorithm = RwSignal::new(Algorithm::Ring);
    let set = Memo::new(move |_| keyset.get().unwrap_or_else(|| KeySet::generated(DEFAULT_KEYS)));
    let sample = Memo::new(move |_| set.with(|s| Arc::<[u64]>::from(stride_sample(&s.hashes, CURVE_SAMPLE))));
    let join_sample = Memo::new(move |_| set.with(|s| Arc::<[u64]>::from(stride_sample(&s.hashes, JOIN_SAMPLE))));

    let placed = Memo::new(move |_| {
        let (n, algorithm) = (n.get(), algorithm.get());
        set.with(|s| {
            let (mut placed, ms) = timed(|| {
                let members = simulated_members(n);
                let p = build_for_keys(&algorithm.spec(Settings::default()), &members, &s.hashes);
                Placed {
                    algorithm,
                    ids: p.members().iter().map(|m| m.id.clone()).collect(),
                    keys: distribution(p.as_ref(), &s.hashes),
                    requests: s.requests.as_ref().map(|r| distribution(p.as_ref(), r)),
                    ms: 0.0,
                }
            });
            placed.ms = ms;
            placed
        })
    });
    let vnodes = Memo::new(move |_| {
        let members = simulated_members(n.get());
        sample.with(|h| timed(|| vnode_curve(&members, h, &VNODE_STEPS)))
    });
    let joins =
        Memo::new(move |_| join_sample.with(|h| timed(|| join_curve(&PlacementSpec::all_defaults(), &JOIN_STEPS, h))));
    let lookups = Memo::new(move |_| {
        let members = simulated_members(n.get());
        sample.with(|h| {
            timed(|| {
                PlacementSpec::all_defaults()
                    .into_iter()
                    .map(|spec| (spec.algorithm(), ns_per_lookup(build_for_keys(&spec, &members, h).as_ref(), h)))
                    .collect::<Vec<_>>()
            })
        })
    });

    let set_n = move |ev: leptos::ev::Event| {
        if let Some(v) = event_target_value(&ev).trim().parse::<usize>().ok().filter(|v| NODES.contains(v)) {
            n.set(v);
        }
    };
    view! {
        <h2>"Charts"</h2>
        <div class="kv-form chart-controls">
            <label>"Simulated nodes "
                <input type="number" data-testid="charts-n" aria-label="simulated nodes (3 to 1000)"
                    min=NODES.start().to_string() max=NODES.end().to_string() prop:value=move || n.get().to_string()
                    on:change=set_n />
            </label>
            <input type="range" data-testid="charts-n-slider" aria-label="simulated nodes, slider"
                min=NODES.start().to_string() max=NODES.end().to_string() prop:value=move || n.get().to_string()
                on:input=set_n />
            <label>"Algorithm "
                <select data-testid="charts-algorithm" aria-label="algorithm for keys per node"
                    on:change=move |ev| if let Ok(a) = event_target_value(&ev).parse() { algorithm.set(a) }>
                    {Algorithm::ALL.map(|a| view! {
                        <option value=a.name() selected=move || algorithm.get() == a>{a.name()}</option>
                    }).collect_view()}
                </select>
            </label>
        </div>
        {move || {
            let s = set.get();
            let total = placed.with(|p| p.ms) + vnodes.with(|v| v.1) + joins.with(|j| j.1) + lookups.with(|l| l.1);
            view! {
                <p data-testid="charts-summary" data-keys=s.hashes.len().to_string() data-nodes=n.get().to_string()
                    data-ms=total.to_string()>
                    {format!("{}: {} keys, {} simulated nodes; charts computed in {total:.0} ms", s.name,
                        thousands(s.hashes.len()), n.get())}
                </p>
            }
        }}
        <div class="charts">
            {move || {
                let p = placed.get();
                let title = format!("keys per node ({}, {} nodes)", p.algorithm, p.ids.len());
                distribution_figure("keys-per-node", title, "keys", &p.ids, &p.keys, p.ms)
            }}
            {move || {
                let p = placed.get();
                let title = format!("requests per node ({}, {} nodes)", p.algorithm, p.ids.len());
                p.requests.as_ref().map(|r| distribution_figure("requests-per-node", title, "requests", &p.ids, r, p.ms))
            }}
            {move || {
                let (curve, ms) = vnodes.get();
                let note = sample_note(sample.with(|h| h.len()), set.with(|s| s.hashes.len()));
                vnode_figure(curve, n.get(), ms, note)
            }}
            {move || {
                let (curve, ms) = joins.get();
                let note = sample_note(join_sample.with(|h| h.len()), set.with(|s| s.hashes.len()));
                join_figure(curve, ms, note)
            }}
            {move || {
                let (times, ms) = lookups.get();
                let note = sample_note(sample.with(|h| h.len()), set.with(|s| s.hashes.len()));
                lookup_figure(times, n.get(), ms, note)
            }}
        </div>
    }
}

/// Keys (or requests) per node, its mean and the ideal share marked, and
/// its statistics under the chart.
fn distribution_figure(
    name: &'static str,
    title: String,
    what: &'static str,
    ids: &[String],
    d: &Distribution,
    ms: f64,
) -> impl IntoView {
    let table = distribution_table(ids, d, what);
    let values: Vec<f64> = d.counts.iter().map(|&c| c as f64).collect();
    let marks = distribution_marks(d);
    let labels = ids.to_vec();
    view! {
        <div class="chart-cell" data-ms=ms.to_string()>
            <Figure name=name note=None table=table>
                <BarChart title=title x_title="node" y_title=what labels=labels values=values marks=marks />
            </Figure>
            <p class="stats" data-testid=format!("{name}-stats") data-mean=d.mean.to_string()
                data-std-dev=d.std_dev.to_string() data-max-over-mean=d.max_over_mean.to_string()>
                {stats_line(d)}</p>
        </div>
    }
}

fn vnode_figure(curve: Vec<VnodePoint>, n: usize, ms: f64, note: Option<String>) -> impl IntoView {
    let mut table = Table::new(&["vnodes", "std_dev", "std_dev_over_mean", "max_over_mean"]);
    table.rows = curve
        .iter()
        .map(|p| {
            vec![
                p.vnodes.to_string(),
                p.std_dev.to_string(),
                p.relative_std_dev.to_string(),
                p.max_over_mean.to_string(),
            ]
        })
        .collect();
    let series = vec![
        Series {
            label: "std dev / mean".into(),
            points: curve.iter().map(|p| (p.vnodes as f64, p.relative_std_dev)).collect(),
            reference: false,
        },
        Series {
            label: "max / mean".into(),
            points: curve.iter().map(|p| (p.vnodes as f64, p.max_over_mean)).collect(),
            reference: false,
        },
    ];
    let marks = vec![Mark { label: "ideal max/mean = 1".into(), value: 1.0 }];
    view! {
        <div class="chart-cell" data-ms=ms.to_string()>
            <Figure name="vnodes" table=table note=note>
                <LineChart title=format!("ring balance against virtual nodes ({n} nodes)")
                    x_title="virtual nodes per node (log)" y_title="ratio to the mean keys per node"
                    x_scale=Scale::Log y_scale=Scale::Linear series=series marks=marks />
            </Figure>
        </div>
    }
}

fn join_figure(curve: Vec<JoinPoint>, ms: f64, note: Option<String>) -> impl IntoView {
    let specs = PlacementSpec::all_defaults();
    let mut headers: Vec<&str> = vec!["nodes"];
    headers.extend(specs.iter().map(|s| s.name()));
    headers.push("ideal");
    let mut table = Table::new(&headers);
    table.rows = curve
        .iter()
        .map(|p| {
            let mut row = vec![p.n.to_string()];
            row.extend(p.fractions.iter().map(f64::to_string));
            row.push(p.ideal.to_string());
            row
        })
        .collect();
    let mut series: Vec<Series> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| Series {
            label: s.name().into(),
            points: curve.iter().map(|p| (p.n as f64, p.fractions[i])).collect(),
            reference: false,
        })
        .collect();
    series.push(Series {
        label: "ideal 1/(N+1)".into(),
        points: curve.iter().map(|p| (p.n as f64, p.ideal)).collect(),
        reference: true,
    });
    view! {
        <div class="chart-cell" data-ms=ms.to_string()>
            <Figure name="join-moves" table=table note=note>
                <LineChart title="keys moved by one join, against cluster size"
                    x_title="nodes before the join, N (log)" y_title="fraction of keys moved (log)"
                    x_scale=Scale::Log y_scale=Scale::Log series=series />
            </Figure>
        </div>
    }
}

fn lookup_figure(times: Vec<(Algorithm, f64)>, n: usize, ms: f64, note: Option<String>) -> impl IntoView {
    let mut table = Table::new(&["algorithm", "ns_per_lookup"]);
    table.rows = times.iter().map(|(a, ns)| vec![a.name().to_string(), ns.to_string()]).collect();
    let note = format!(
        "measured in this browser with performance.now(){}",
        note.map(|n| format!(", {n}")).unwrap_or_default()
    );
    view! {
        <div class="chart-cell" data-ms=ms.to_string()>
            <Figure name="lookup-time" table=table note=Some(note)>
                <BarChart title=format!("lookup time per algorithm ({n} nodes)") x_title="algorithm"
                    y_title="ns per lookup" labels=times.iter().map(|(a, _)| a.name().to_string()).collect()
                    values=times.iter().map(|(_, ns)| *ns).collect() />
            </Figure>
        </div>
    }
}
