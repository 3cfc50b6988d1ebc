//! A bar chart of keys per node as plain SVG: one `<rect>` per node with
//! `data-node` and `data-count`, and the mean as a dashed line.

use leptos::prelude::*;

use super::node_pattern;

#[component]
pub fn BarChart(ids: Vec<String>, counts: Vec<u64>, #[prop(into)] label: String) -> impl IntoView {
    let (w, h) = (220.0, 90.0);
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let n = counts.len().max(1) as f64;
    let mean = counts.iter().sum::<u64>() as f64 / n;
    let bar = w / n;
    let bars = ids
        .into_iter()
        .zip(counts)
        .enumerate()
        .map(|(i, (id, c))| {
            let height = h * c as f64 / max;
            view! {
                <rect x=format!("{:.2}", i as f64 * bar + 1.0) y=format!("{:.2}", h - height)
                    width=format!("{:.2}", (bar - 2.0).max(1.0)) height=format!("{height:.2}")
                    fill=node_pattern(i) data-node=id.clone() data-count=c.to_string()>
                    <title>{format!("{id}: {c} keys")}</title>
                </rect>
            }
        })
        .collect_view();
    let mean_y = format!("{:.2}", h - h * mean / max);
    view! {
        <svg class="chart" viewBox=format!("0 0 {w} {h}") role="img" aria-label=label data-mean=mean.to_string()>
            {bars}
            <line class="mean" x1="0" x2=w.to_string() y1=mean_y.clone() y2=mean_y />
        </svg>
    }
}
