//! Charts as small hand-written SVG components: a bar chart ([`BarChart`])
//! and a line chart ([`LineChart`], linear or log axes), each with a title,
//! ticks, tick labels and axis titles, a legend where there are several
//! series, and reference values (mean, ideal) as labelled dashed lines.
//! [`Figure`] frames a chart with its numbers: downloads as SVG (node
//! patterns inlined), PNG (the SVG drawn on a canvas) and CSV (a `data:`
//! link), and a "show numbers" table for screen readers.
//!
//! Styles are presentation attributes, not CSS, so an exported SVG looks as
//! the page does. The charts draw numbers they are given; every number is
//! computed by `shared` before it gets here.

use leptos::html::Div;
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

use super::{node_pattern, pattern_defs_markup, PALETTE};

const INK: &str = "#d8dee4";
const MUTED: &str = "#8a98a6";
const GRID: &str = "#26313b";
const BACKGROUND: &str = "#0c1014";
/// Above this many bars, a bar chart draws the values sorted, as one shape.
pub const SORTED_ABOVE: usize = 40;

/// A chart's numbers: what its CSV holds and its table shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    /// RFC 4180: a field with a comma, quote or newline is quoted.
    pub fn csv(&self) -> String {
        let field = |f: &String| {
            if f.contains([',', '"', '\n']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        };
        let line = |r: &Vec<String>| r.iter().map(field).collect::<Vec<_>>().join(",") + "\n";
        std::iter::once(&self.headers).chain(&self.rows).map(line).collect()
    }
}

/// A reference value drawn across the plot as a dashed line, labelled.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub label: String,
    pub value: f64,
}

/// How an axis maps values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    Linear,
    /// Base 10; values at or below zero are not drawn.
    Log,
}

/// One line of a line chart. Each series has its own colour, marker shape
/// and (for references such as the ideal) dashes, so colour is not the
/// only thing telling them apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// A reference curve (the ideal): dashed, no markers.
    pub reference: bool,
}

/// The plot area inside the SVG.
#[derive(Clone, Copy)]
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    fn new(compact: bool) -> Frame {
        if compact {
            Frame { w: 260.0, h: 120.0, left: 40.0, right: 8.0, top: 8.0, bottom: 18.0 }
        } else {
            Frame { w: 640.0, h: 300.0, left: 64.0, right: 150.0, top: 30.0, bottom: 56.0 }
        }
    }
    fn x0(&self) -> f64 {
        self.left
    }
    fn x1(&self) -> f64 {
        self.w - self.right
    }
    fn y0(&self) -> f64 {
        self.h - self.bottom
    }
    fn y1(&self) -> f64 {
        self.top
    }
}

/// An axis' domain and how it maps onto `[from, to]` pixels.
#[derive(Clone, Copy)]
struct Axis {
    scale: Scale,
    min: f64,
    max: f64,
    from: f64,
    to: f64,
}

impl Axis {
    /// An axis over `values` (with a nice rounded domain); a linear axis
    /// starts at zero when `from_zero`.
    fn fit(scale: Scale, values: impl Iterator<Item = f64>, from_zero: bool, from: f64, to: f64) -> Axis {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for v in values.filter(|v| v.is_finite() && (scale == Scale::Linear || *v > 0.0)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let (min, max) = match scale {
            // Nothing to draw: a unit domain.
            Scale::Log if !lo.is_finite() => (1.0, 10.0),
            Scale::Linear if !lo.is_finite() => (0.0, 1.0),
            Scale::Linear => {
                let lo = if from_zero { lo.min(0.0) } else { lo };
                let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
                let step = nice_step(span);
                let max = (hi / step).ceil() * step;
                let min = (lo / step).floor() * step;
                (min, if max > min { max } else { min + step })
            }
            Scale::Log => {
                let (min, max) = (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()));
                (min, if max > min { max } else { min * 10.0 })
            }
        };
        Axis { scale, min, max, from, to }
    }

    fn at(&self, v: f64) -> f64 {
        let t = match self.scale {
            Scale::Linear => (v - self.min) / (self.max - self.min),
            Scale::Log => (v.max(self.min).log10() - self.min.log10()) / (self.max.log10() - self.min.log10()),
        };
        self.from + t * (self.to - self.from)
    }

    fn ticks(&self) -> Vec<f64> {
        match self.scale {
            Scale::Linear => {
                let step = nice_step(self.max - self.min);
                let first = (self.min / step).ceil() as i64;
                let last = (self.max / step).floor() as i64;
                (first..=last).map(|i| i as f64 * step).collect()
            }
            Scale::Log => {
                let decades = (self.max / self.min).log10().round() as i32;
                let mults: &[f64] = if decades <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
                let mut out = Vec::new();
                let mut p = self.min;
                // At most 40 decades (f64 has about 600; a chart never needs them).
                for _ in 0..40 {
                    if p > self.max * 1.000001 {
                        break;
                    }
                    out.extend(mults.iter().map(|m| m * p).filter(|v| *v <= self.max * 1.000001));
                    p *= 10.0;
                }
                out
            }
        }
    }
}

/// A step of 1, 2 or 5 x 10^k giving about five ticks over `range`.
fn nice_step(range: f64) -> f64 {
    let raw = range / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let m = raw / power;
    power
        * if m <= 1.0 {
            1.0
        } else if m <= 2.0 {
            2.0
        } else if m <= 5.0 {
            5.0
        } else {
            10.0
        }
}

/// A tick label: 1.5k, 2M, 0.25, 0.001.
pub fn short_number(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        trim(format!("{:.2}", v / 1e6)) + "M"
    } else if a >= 1e4 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 1.0 {
        trim(format!("{v:.2}"))
    } else {
        let decimals = (-a.log10()).ceil() as usize + 1;
        trim(format!("{v:.decimals$}"))
    }
}

fn px(v: f64) -> String {
    format!("{v:.1}")
}

/// The axes: lines, ticks with labels and grid, and the axis titles.
fn axes(f: Frame, x: Option<&Axis>, y: &Axis, x_title: &str, y_title: &str, compact: bool) -> impl IntoView {
    let font = if compact { "9" } else { "11" };
    let y_ticks = y
        .ticks()
        .into_iter()
        .map(|t| {
            let yy = px(y.at(t));
            view! {
                <g class="tick y-tick" data-value=t.to_string()>
                    <line x1=px(f.x0()) x2=px(f.x1()) y1=yy.clone() y2=yy.clone() stroke=GRID stroke-width="1" />
                    <text x=px(f.x0() - 4.0) y=yy text-anchor="end" dominant-baseline="middle" fill=MUTED font-size=font>
                        {short_number(t)}</text>
                </g>
            }
        })
        .collect_view();
    let x_ticks = x.map(|x| {
        x.ticks()
            .into_iter()
            .map(|t| {
                let xx = px(x.at(t));
                view! {
                    <g class="tick x-tick" data-value=t.to_string()>
                        <line x1=xx.clone() x2=xx.clone() y1=px(f.y0()) y2=px(f.y0() + 4.0) stroke=MUTED stroke-width="1" />
                        <text x=xx y=px(f.y0() + 15.0) text-anchor="middle" fill=MUTED font-size=font>{short_number(t)}</text>
                    </g>
                }
            })
            .collect_view()
    });
    let titles = (!compact).then(|| {
        let mid_y = (f.y0() + f.y1()) / 2.0;
        view! {
            <text class="axis-title x-title" x=px((f.x0() + f.x1()) / 2.0) y=px(f.h - 8.0) text-anchor="middle"
                fill=INK font-size="12">{x_title.to_string()}</text>
            <text class="axis-title y-title" x="14" y=px(mid_y) text-anchor="middle" fill=INK font-size="12"
                transform=format!("rotate(-90 14 {mid_y:.1})")>{y_title.to_string()}</text>
        }
    });
    view! {
        <g class="axes">
            {y_ticks}
            {x_ticks}
            <line class="axis x-axis" x1=px(f.x0()) x2=px(f.x1()) y1=px(f.y0()) y2=px(f.y0()) stroke=INK stroke-width="1" />
            <line class="axis y-axis" x1=px(f.x0()) x2=px(f.x0()) y1=px(f.y0()) y2=px(f.y1()) stroke=INK stroke-width="1" />
            {titles}
        </g>
    }
}

/// Reference values as labelled dashed lines across the plot.
fn marks_view(f: Frame, y: &Axis, marks: &[Mark], compact: bool) -> impl IntoView {
    marks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let yy = y.at(m.value);
            let label = (!compact).then(|| {
                view! {
                    <text x=px(f.x1() + 4.0) y=px(yy + 4.0 + 12.0 * i as f64) fill=INK font-size="11">{m.label.clone()}</text>
                }
            });
            view! {
                <g class="mark" data-label=m.label.clone() data-value=m.value.to_string()>
                    <line x1=px(f.x0()) x2=px(f.x1()) y1=px(yy) y2=px(yy) stroke="#ffffff"
                        stroke-width="1.2" stroke-dasharray="5 3" />
                    <title>{m.label.clone()}</title>
                    {label}
                </g>
            }
        })
        .collect_view()
}

fn svg_title(title: &str, f: Frame, compact: bool) -> impl IntoView {
    (!compact).then(|| {
        view! { <text class="chart-title" x=px(f.x0()) y="18" fill=INK font-size="14" font-weight="600">{title.to_string()}</text> }
    })
}

/// Bars, one per label (in the order given), each in its node pattern and
/// labelled; past [`SORTED_ABOVE`] bars, the values sorted from largest to
/// smallest as one shape (a distribution that stays readable at 1,000).
#[component]
pub fn BarChart(
    #[prop(into)] title: String,
    #[prop(into)] x_title: String,
    #[prop(into)] y_title: String,
    labels: Vec<String>,
    values: Vec<f64>,
    #[prop(optional)] marks: Vec<Mark>,
    /// Small, for a table cell: ticks only, no titles.
    #[prop(optional)]
    compact: bool,
) -> impl IntoView {
    let f = Frame::new(compact);
    let y =
        Axis::fit(Scale::Linear, values.iter().chain(marks.iter().map(|m| &m.value)).copied(), true, f.y0(), f.y1());
    let n = values.len();
    let sorted = n > SORTED_ABOVE;
    let slot = (f.x1() - f.x0()) / n.max(1) as f64;
    let body = if sorted {
        let mut desc = values.clone();
        desc.sort_by(|a, b| b.total_cmp(a));
        let mut d = format!("M{},{}", px(f.x0()), px(f.y0()));
        for (i, v) in desc.iter().enumerate() {
            let yy = px(y.at(*v));
            d.push_str(&format!(
                " L{},{yy} L{},{yy}",
                px(f.x0() + i as f64 * slot),
                px(f.x0() + (i + 1) as f64 * slot)
            ));
        }
        d.push_str(&format!(" L{},{} Z", px(f.x1()), px(f.y0())));
        let rank = Axis { scale: Scale::Linear, min: 0.0, max: n as f64, from: f.x0(), to: f.x1() };
        view! {
            {axes(f, Some(&rank), &y, &format!("{x_title}, ranked from most to least (1 = most)"), &y_title, compact)}
            <path class="sorted" d=d fill=node_pattern(1) stroke=INK stroke-width="0.8">
                <title>{format!("{n} values, sorted from largest to smallest")}</title>
            </path>
        }
        .into_any()
    } else {
        let every = n.div_ceil(12).max(1);
        let bars = labels
            .iter()
            .zip(&values)
            .enumerate()
            .map(|(i, (label, v))| {
                let top = y.at(*v);
                let x = f.x0() + i as f64 * slot;
                let cx = x + slot / 2.0;
                let text = if compact {
                    // A small chart names up to 8 bars, level under each.
                    (n <= 8).then(|| {
                        view! {
                            <text x=px(cx) y=px(f.y0() + 11.0) text-anchor="middle" fill=MUTED font-size="8">{label.clone()}</text>
                        }
                        .into_any()
                    })
                } else {
                    i.is_multiple_of(every).then(|| {
                        let ty = f.y0() + 12.0;
                        view! {
                            <text x=px(cx) y=px(ty) text-anchor="end" fill=MUTED font-size="10"
                                transform=format!("rotate(-35 {cx:.1} {ty:.1})")>{label.clone()}</text>
                        }
                        .into_any()
                    })
                };
                view! {
                    <rect class="bar" x=px(x + slot * 0.1) y=px(top) width=px((slot * 0.8).max(1.0))
                        height=px((f.y0() - top).max(0.0)) fill=node_pattern(i) stroke=INK stroke-width="0.6"
                        data-label=label.clone() data-value=v.to_string()>
                        <title>{format!("{label}: {}", short_number(*v))}</title>
                    </rect>
                    {text}
                }
            })
            .collect_view();
        view! { {axes(f, None, &y, &x_title, &y_title, compact)} {bars} }.into_any()
    };
    view! {
        <svg class=if compact { "chart compact" } else { "chart" } xmlns="http://www.w3.org/2000/svg"
            viewBox=format!("0 0 {} {}", f.w, f.h) width=f.w.to_string() height=f.h.to_string()
            role="img" aria-label=title.clone() data-sorted=sorted.to_string() data-bars=n.to_string()>
            <title>{title.clone()}</title>
            <desc>{format!("{y_title} per {x_title}{}", if sorted { ", sorted" } else { "" })}</desc>
            <rect class="background" width=f.w.to_string() height=f.h.to_string() fill=BACKGROUND />
            {svg_title(&title, f, compact)}
            {body}
            {marks_view(f, &y, &marks, compact)}
        </svg>
    }
}

/// A marker shape per series (circle, square, triangle, diamond, cross, plus).
fn marker(i: usize, x: f64, y: f64, colour: &'static str) -> impl IntoView {
    let d = match i % 6 {
        0 => format!("M{:.1},{y:.1} a3,3 0 1,0 6,0 a3,3 0 1,0 -6,0", x - 3.0),
        1 => format!("M{:.1},{:.1} h6 v6 h-6 Z", x - 3.0, y - 3.0),
        2 => format!("M{x:.1},{:.1} l3.5,6 h-7 Z", y - 3.5),
        3 => format!("M{x:.1},{:.1} l3.5,3.5 l-3.5,3.5 l-3.5,-3.5 Z", y - 3.5),
        4 => format!("M{:.1},{:.1} l7,7 M{:.1},{:.1} l-7,7", x - 3.5, y - 3.5, x + 3.5, y - 3.5),
        _ => format!("M{:.1},{y:.1} h8 M{x:.1},{:.1} v8", x - 4.0, y - 4.0),
    };
    let filled = !matches!(i % 6, 4 | 5);
    view! { <path d=d fill=if filled { colour } else { "none" } stroke=colour stroke-width="1.6" /> }
}

/// Lines over points, with a marker shape and colour per series and a legend.
#[component]
pub fn LineChart(
    #[prop(into)] title: String,
    #[prop(into)] x_title: String,
    #[prop(into)] y_title: String,
    x_scale: Scale,
    y_scale: Scale,
    series: Vec<Series>,
    #[prop(optional)] marks: Vec<Mark>,
) -> impl IntoView {
    let f = Frame::new(false);
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let x = Axis::fit(x_scale, xs, false, f.x0(), f.x1());
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).chain(marks.iter().map(|m| m.value));
    let y = Axis::fit(y_scale, ys, y_scale == Scale::Linear, f.y0(), f.y1());
    let drawable = move |p: &(f64, f64)| {
        p.0.is_finite()
            && p.1.is_finite()
            && (x_scale == Scale::Linear || p.0 > 0.0)
            && (y_scale == Scale::Linear || p.1 > 0.0)
    };
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let colour = if s.reference { "#ffffff" } else { PALETTE[i % PALETTE.len()] };
            let pts: Vec<(f64, f64)> =
                s.points.iter().filter(|p| drawable(p)).map(|p| (x.at(p.0), y.at(p.1))).collect();
            let d: String = pts
                .iter()
                .enumerate()
                .map(|(j, (px_, py))| format!("{}{px_:.1},{py:.1} ", if j == 0 { "M" } else { "L" }))
                .collect();
            let markers = (!s.reference).then(|| pts.iter().map(|&(mx, my)| marker(i, mx, my, colour)).collect_view());
            view! {
                <g class="series" data-label=s.label.clone() data-points=s.points.len().to_string()>
                    <title>{s.label.clone()}</title>
                    <path d=d fill="none" stroke=colour stroke-width=if s.reference { "1.4" } else { "2" }
                        stroke-dasharray=if s.reference { "6 4" } else { "none" } />
                    {markers}
                </g>
            }
        })
        .collect_view();
    let legend = (series.len() > 1).then(|| {
        series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let colour = if s.reference { "#ffffff" } else { PALETTE[i % PALETTE.len()] };
                let ly = f.y1() + 8.0 + 16.0 * i as f64;
                let lx = f.x1() + 10.0;
                view! {
                    <g class="legend-item">
                        <line x1=px(lx) x2=px(lx + 22.0) y1=px(ly) y2=px(ly) stroke=colour stroke-width="2"
                            stroke-dasharray=if s.reference { "6 4" } else { "none" } />
                        {(!s.reference).then(|| marker(i, lx + 11.0, ly, colour))}
                        <text x=px(lx + 28.0) y=px(ly + 4.0) fill=INK font-size="11">{s.label.clone()}</text>
                    </g>
                }
            })
            .collect_view()
    });
    view! {
        <svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox=format!("0 0 {} {}", f.w, f.h)
            width=f.w.to_string() height=f.h.to_string() role="img" aria-label=title.clone()>
            <title>{title.clone()}</title>
            <desc>{format!("{y_title} against {x_title}")}</desc>
            <rect class="background" width=f.w.to_string() height=f.h.to_string() fill=BACKGROUND />
            {svg_title(&title, f, false)}
            {axes(f, Some(&x), &y, &x_title, &y_title, false)}
            {marks_view(f, &y, &marks, false)}
            {lines}
            <g class="legend">{legend}</g>
        </svg>
    }
}

/// A chart with its note (e.g. the sample it was computed on), its
/// downloads (SVG, PNG, CSV) and its numbers as a table.
#[component]
pub fn Figure(
    /// The file name's stem and the `data-testid` (`chart-NAME`).
    #[prop(into)]
    name: String,
    table: Table,
    note: Option<String>,
    children: Children,
) -> impl IntoView {
    let holder = NodeRef::<Div>::new();
    let csv = table.csv();
    let csv_href = format!("data:text/csv;charset=utf-8,{}", js_sys::encode_uri_component(&csv));
    let svg_name = format!("{name}.svg");
    let png_name = format!("{name}.png");
    let svg_markup =
        move || holder.get_untracked().and_then(|d| d.query_selector("svg").ok().flatten()).map(|svg| export_svg(&svg));
    let on_svg = move |ev: leptos::ev::MouseEvent| {
        let Some(markup) = svg_markup() else { return };
        let href = svg_data_url(&markup);
        mark_export(&ev, &href);
        download(&href, &svg_name);
    };
    let on_png = move |ev: leptos::ev::MouseEvent| {
        let Some(markup) = svg_markup() else { return };
        let button = ev.current_target().and_then(|t| t.dyn_into::<web_sys::Element>().ok());
        let name = png_name.clone();
        let _ = to_png(&markup, move |href| {
            if let Some(b) = &button {
                let _ = b.set_attribute("data-href", &href);
            }
            download(&href, &name);
        });
    };
    let rows = table.rows.clone();
    view! {
        <figure class="chart-figure" data-testid=format!("chart-{name}")>
            <div node_ref=holder>{children()}</div>
            <figcaption>
                {note.map(|n| view! { <span class="note" data-testid="chart-note">{n}</span> })}
                <span class="downloads">
                    "Download: "
                    <button class="small" data-testid="download-svg" on:click=on_svg>"SVG"</button>
                    <button class="small" data-testid="download-png" on:click=on_png>"PNG"</button>
                    <a class="csv" data-testid="download-csv" href=csv_href download=format!("{name}.csv")>"CSV"</a>
                </span>
            </figcaption>
            <details class="numbers">
                <summary>"Show numbers"</summary>
                <table>
                    <thead><tr>{table.headers.into_iter().map(|h| view! { <th scope="col">{h}</th> }).collect_view()}</tr></thead>
                    <tbody>
                        {rows.into_iter().map(|r| view! {
                            <tr>{r.into_iter().map(|c| view! { <td>{c}</td> }).collect_view()}</tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </details>
        </figure>
    }
}

/// The chart as a standalone SVG document, the node patterns inlined.
fn export_svg(svg: &web_sys::Element) -> String {
    let markup = web_sys::XmlSerializer::new().and_then(|s| s.serialize_to_string(svg)).unwrap_or_default();
    match markup.find('>') {
        Some(i) => format!("{}{}{}", &markup[..=i], pattern_defs_markup(), &markup[i + 1..]),
        None => markup,
    }
}

fn svg_data_url(markup: &str) -> String {
    format!("data:image/svg+xml;charset=utf-8,{}", js_sys::encode_uri_component(markup))
}

/// Keeps the last export's URL on the button (`data-href`), for tests.
fn mark_export(ev: &leptos::ev::MouseEvent, href: &str) {
    if let Some(b) = ev.current_target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) {
        let _ = b.set_attribute("data-href", href);
    }
}

/// Saves `href` as `name` through a temporary link.
fn download(href: &str, name: &str) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else { return };
    let Ok(a) = doc.create_element("a").map(|a| a.unchecked_into::<web_sys::HtmlAnchorElement>()) else { return };
    a.set_href(href);
    a.set_download(name);
    a.click();
}

/// Draws the SVG onto a canvas at twice its size and hands the PNG's
/// `data:` URL to `done`.
fn to_png(markup: &str, done: impl FnOnce(String) + 'static) -> Result<(), JsValue> {
    let img = web_sys::HtmlImageElement::new()?;
    let loaded = img.clone();
    let on_load = wasm_bindgen::closure::Closure::once_into_js(move || {
        let draw = || -> Result<String, JsValue> {
            let doc = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
            let canvas: web_sys::HtmlCanvasElement = doc.create_element("canvas")?.dyn_into()?;
            let (w, h) = (loaded.natural_width().max(1), loaded.natural_height().max(1));
            canvas.set_width(w * 2);
            canvas.set_height(h * 2);
            let ctx: web_sys::CanvasRenderingContext2d =
                canvas.get_context("2d")?.ok_or("no 2d context")?.dyn_into()?;
            ctx.scale(2.0, 2.0)?;
            ctx.draw_image_with_html_image_element_and_dw_and_dh(&loaded, 0.0, 0.0, w as f64, h as f64)?;
            canvas.to_data_url_with_type("image/png")
        };
        if let Ok(href) = draw() {
            done(href);
        }
    });
    img.set_onload(Some(on_load.unchecked_ref()));
    img.set_src(&svg_data_url(markup));
    Ok(())
}
