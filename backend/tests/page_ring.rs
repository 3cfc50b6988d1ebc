//! The ring on the page, in a real browser against a real `shardscope
//! serve`: its legend, labels and arcs against `shared/`'s numbers for the
//! live cluster, the view's vnode control (with its redraw time measured
//! and printed), zoom and pan by keyboard only, hover and click.

mod common;

use std::f64::consts::TAU;

use common::browser::*;
use fantoccini::actions::{InputSource, KeyAction, KeyActions, MouseActions, PointerAction};
use fantoccini::{Client, Locator};
use shardscope_shared::hash::{key_hash, ring_fraction};
use shardscope_shared::placement::analysis::distribution;
use shardscope_shared::placement::ring::Ring;
use shardscope_shared::placement::Placement;

const R: f64 = 100.0;

/// (x, y) of a ring fraction in the ring's view box (the page's layout).
fn at(fraction: f64, radius: f64) -> (f64, f64) {
    let a = fraction * TAU - TAU / 4.0;
    (radius * a.cos(), radius * a.sin())
}

/// The generated sample the ring draws when no key set is chosen.
fn sample(n: usize) -> Vec<u64> {
    (0..n).map(|i| key_hash(format!("key-{i}").as_bytes())).collect()
}

async fn attr(client: &Client, css: &str, name: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.attr(name).await.ok()?
}

/// Each legend entry: (node, share, keys); the share is NaN without a ring.
async fn legend(client: &Client) -> Vec<(String, f64, u64)> {
    let mut out = Vec::new();
    for li in client.find_all(Locator::Css("[data-testid=ring-legend] li")).await.unwrap() {
        let node = li.attr("data-node").await.unwrap().unwrap();
        let share = li.attr("data-share").await.unwrap().unwrap().parse().unwrap_or(f64::NAN);
        let keys = li.attr("data-keys").await.unwrap().unwrap().parse().unwrap();
        out.push((node, share, keys));
    }
    out
}

/// Presses one key (a character or a WebDriver key code) on whatever has focus.
async fn press(client: &Client, key: char) {
    let keys =
        KeyActions::new("keyboard".into()).then(KeyAction::Down { value: key }).then(KeyAction::Up { value: key });
    client.perform_actions(keys).await.unwrap();
}

const TAB: char = '\u{E004}';
const ENTER: char = '\u{E007}';
const LEFT: char = '\u{E012}';
const UP: char = '\u{E013}';
const RIGHT: char = '\u{E014}';

/// Tabs until the element with `testid` has focus; how many presses it took.
async fn tab_to(client: &Client, testid: &str) -> usize {
    for presses in 1..=40 {
        press(client, TAB).await;
        let focused = client
            .execute("return document.activeElement && document.activeElement.dataset.testid || ''", vec![])
            .await
            .unwrap();
        if focused.as_str() == Some(testid) {
            return presses;
        }
    }
    panic!("{testid} is not reachable with Tab");
}

/// The ring's view box: (x, y, width, height).
async fn view_box(client: &Client) -> (f64, f64, f64, f64) {
    let vb = attr(client, "[data-testid=ring]", "viewBox").await.unwrap();
    let v: Vec<f64> = vb.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1], v[2], v[3])
}

/// How many of `ring`'s points lie in the view box, grown by `slack` on every side.
fn points_in(ring: &Ring, (x, y, w, h): (f64, f64, f64, f64), slack: f64) -> usize {
    ring.points()
        .filter(|&(p, _)| {
            let (px, py) = at(ring_fraction(p), R);
            px >= x - slack && px <= x + w + slack && py >= y - slack && py <= y + h + slack
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn legend_labels_and_arcs_are_shareds_for_the_live_cluster() {
    let (stack, _driver, client) = open_page(3).await;
    let members = members_of(&cluster_nodes(&stack).await);
    let ring = Ring::new(&members, 160);
    let shares = ring.shares();

    // No key set chosen: a generated sample, said so, counted as shared counts it.
    let caption = text_of(&client, "[data-testid=ring-caption]").await.unwrap();
    assert!(caption.contains("sample of 1000 generated keys"), "{caption}");
    let want = distribution(&ring, &sample(1000));
    let got = eventually("the legend", || async {
        let l = legend(&client).await;
        (l.len() == 3).then_some(l)
    })
    .await;
    for (i, (node, share, keys)) in got.iter().enumerate() {
        assert_eq!(node, &members[i].id);
        assert!((share - shares[i]).abs() < 1e-12, "{node}: page {share}, shared {}", shares[i]);
        assert_eq!(*keys, want.counts[i], "{node}'s keys");
    }
    assert!((got.iter().map(|l| l.1).sum::<f64>() - 1.0).abs() < 1e-9);

    // One arc path per node holding all its arcs; one label per node.
    let arcs = ring.arcs();
    for (i, m) in members.iter().enumerate() {
        let css = format!("svg.ring path.arc[data-owner='{}']", m.id);
        let n: usize = attr(&client, &css, "data-arcs").await.unwrap().parse().unwrap();
        assert_eq!(n, arcs.iter().filter(|a| a.owner == i).count(), "{}'s arcs", m.id);
        let d = attr(&client, &css, "d").await.unwrap();
        assert_eq!(d.matches('M').count(), n, "one subpath per arc");
        let label = text_of(&client, &format!("svg.ring text.node-label[data-node='{}']", m.id)).await.unwrap();
        assert_eq!(label, m.id);
    }
    assert_eq!(client.find_all(Locator::Css("svg.ring path.arc")).await.unwrap().len(), 3);
    // 480 virtual nodes are few enough to tick, each where shared puts it.
    let ticks = client.find_all(Locator::Css("svg.ring line.vnode")).await.unwrap();
    assert_eq!(ticks.len(), ring.point_count());
    // The key dots: one path per owner, each dot a subpath.
    let mut dots = 0;
    for (i, m) in members.iter().enumerate() {
        let d = attr(&client, &format!("svg.ring path.dots[data-owner='{}']", m.id), "d").await.unwrap();
        assert_eq!(d.matches('M').count() as u64, want.counts[i]);
        dots += 1;
    }
    assert_eq!(client.find_all(Locator::Css("svg.ring path.dots")).await.unwrap().len(), dots);

    // The summary for screen readers names every node with its share and keys.
    let label = attr(&client, "[data-testid=ring]", "aria-label").await.unwrap();
    assert!(label.starts_with("Hash ring of 3 nodes, 160 virtual nodes each, 1000 keys"), "{label}");
    for (i, m) in members.iter().enumerate() {
        assert!(label.contains(&format!("{} {:.1}% of the ring, {} keys", m.id, 100.0 * shares[i], want.counts[i])));
    }

    // A chosen key set replaces the sample, in the legend too.
    client.find(Locator::Css("[data-testid=preset-10000]")).await.unwrap().click().await.unwrap();
    let want = distribution(&ring, &sample(10_000));
    eventually("the legend counts 10,000 keys", || async {
        let got: Vec<u64> = legend(&client).await.into_iter().map(|l| l.2).collect();
        (got == want.counts).then_some(())
    })
    .await;
    assert_eq!(text_of(&client, "[data-testid=ring-caption]").await.unwrap(), "Keys: 10000 generated keys.");
    client.execute("document.querySelector('[data-testid=ring]').scrollIntoView()", vec![]).await.unwrap();
    save_screenshot(&client, "ring.png").await;

    // On a projector (lesson mode) the same ring, in large type.
    client.goto(&format!("{}/?#demo=1", stack.url)).await.unwrap();
    eventually("lesson styling", || async { client.find(Locator::Css("main.layout.demo svg.ring")).await.ok() }).await;
    let size = client
        .execute(
            "return parseFloat(getComputedStyle(document.querySelector('svg.ring text.node-label')).fontSize)",
            vec![],
        )
        .await
        .unwrap();
    assert!(size.as_f64().unwrap() > 8.0, "labels grow in lesson mode: {size}");
    client.execute("document.querySelector('[data-testid=ring]').scrollIntoView()", vec![]).await.unwrap();
    save_screenshot(&client, "ring-lesson.png").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vnode_control_redraws_the_view_with_arcs_merged_per_owner() {
    let (stack, _driver, client) = open_page(5).await;
    let members = members_of(&cluster_nodes(&stack).await);
    client.find(Locator::Css("[data-testid=preset-10000]")).await.unwrap().click().await.unwrap();
    eventually("10,000 keys", || async {
        client.find(Locator::Css("[data-testid=ring-keyset][data-shown='10000']")).await.ok()
    })
    .await;
    assert_eq!(text_of(&client, "[data-testid=ring-vnodes-note]").await.unwrap(), "view: 160, the cluster's");

    // Twenty changes of the slider, each timed from the input event to after
    // the page's work (script and DOM, before paint); the last one is 500.
    let times = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const s = document.querySelector('[data-testid=ring-vnodes]');
             const times = [];
             const step = () => {
               if (times.length === 20) { done(times); return; }
               s.value = String(481 + times.length);
               const t0 = performance.now();
               s.dispatchEvent(new Event('input', { bubbles: true }));
               setTimeout(() => { times.push(performance.now() - t0); setTimeout(step, 30); }, 0);
             };
             step();",
            vec![],
        )
        .await
        .unwrap();
    let mut ms: Vec<f64> = times.as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    let first = ms[0];
    ms.sort_by(f64::total_cmp);
    eprintln!(
        "VNODE_SLIDER_REDRAW_MS keys=10000 nodes=5 vnodes=481..500 changes=20 p50={:.1} p90={:.1} max={:.1} first={first:.1}",
        ms[ms.len() / 2],
        ms[ms.len() * 9 / 10],
        ms[ms.len() - 1]
    );

    let ring = Ring::new(&members, 500);
    eventually("the view at 500 vnodes", || async {
        text_of(&client, "[data-testid=ring-vnodes-note]").await.filter(|t| t == "view: 500 (the cluster has 160)")
    })
    .await;
    // Shares and keys are shared's for 500 vnodes per node.
    let want = distribution(&ring, &sample(10_000));
    let shares = ring.shares();
    for (i, (node, share, keys)) in legend(&client).await.into_iter().enumerate() {
        assert_eq!(node, members[i].id);
        assert!((share - shares[i]).abs() < 1e-12, "{node}");
        assert_eq!(keys, want.counts[i], "{node}");
    }
    // 2,500 virtual nodes, still one arc path per owner, no ticks zoomed
    // out, and a DOM that does not grow with vnodes x nodes.
    assert_eq!(client.find_all(Locator::Css("svg.ring path.arc")).await.unwrap().len(), 5);
    let arcs = ring.arcs();
    let mut drawn = 0;
    for (i, m) in members.iter().enumerate() {
        let css = format!("svg.ring path.arc[data-owner='{}']", m.id);
        let n: usize = attr(&client, &css, "data-arcs").await.unwrap().parse().unwrap();
        assert_eq!(n, arcs.iter().filter(|a| a.owner == i).count());
        drawn += n;
    }
    assert_eq!(drawn, arcs.len());
    assert!(arcs.len() > 1000, "{} arcs", arcs.len());
    assert_eq!(client.find_all(Locator::Css("svg.ring line.vnode")).await.unwrap().len(), 0);
    let elements = client.find_all(Locator::Css("svg.ring *")).await.unwrap().len();
    eprintln!("RING_SVG_ELEMENTS nodes=5 vnodes=500 keys=10000 zoom=1: {elements}");
    assert!(elements < 60, "{elements} elements in the ring");

    // Zoomed in (keyboard), the ticks are exactly shared's points in view.
    tab_to(&client, "ring").await;
    let mut ticked = false;
    for _ in 0..8 {
        press(&client, '+').await;
        let vb = view_box(&client).await;
        let slack = vb.2 * 1e-4;
        let (inner, outer) = (points_in(&ring, vb, -slack), points_in(&ring, vb, slack));
        let ticks = client.find_all(Locator::Css("svg.ring line.vnode")).await.unwrap();
        if outer <= 512 {
            assert!(
                (inner..=outer).contains(&ticks.len()),
                "{} ticks, shared {inner}..={outer} in {vb:?}",
                ticks.len()
            );
            if !ticks.is_empty() {
                ticked = true;
                let points: std::collections::HashSet<String> =
                    ring.points().map(|(p, _)| format!("{p:016x}")).collect();
                for t in ticks {
                    let hash = t.attr("data-hash").await.unwrap().unwrap();
                    assert!(points.contains(&hash), "tick {hash} is a virtual node");
                }
                break;
            }
        } else if inner > 512 {
            assert!(ticks.is_empty(), "no ticks with {inner} points in view");
        }
    }
    assert!(ticked, "zooming in shows ticks");
    save_screenshot(&client, "ring-zoomed.png").await;

    // Back to the cluster's count.
    client.find(Locator::Css("[data-testid=ring-vnodes-reset]")).await.unwrap().click().await.unwrap();
    let ring160 = Ring::new(&members, 160);
    eventually("the cluster's 160 again", || async {
        let shares: Vec<f64> = legend(&client).await.into_iter().map(|l| l.1).collect();
        (shares == ring160.shares()).then_some(())
    })
    .await;
    assert_eq!(text_of(&client, "[data-testid=ring-vnodes-note]").await.unwrap(), "view: 160, the cluster's");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn zoom_pan_and_vnodes_work_by_keyboard_only() {
    let (_stack, _driver, client) = open_page(3).await;
    let zoom = |client: Client| async move { attr(&client, "[data-testid=ring]", "data-zoom").await.unwrap() };
    assert_eq!(zoom(client.clone()).await, "1");

    // The zoom buttons, reached with Tab and pressed with Enter.
    tab_to(&client, "ring-zoom-in").await;
    press(&client, ENTER).await;
    eventually("zoom 2 from the + button", || async { (zoom(client.clone()).await == "2").then_some(()) }).await;
    tab_to(&client, "ring-zoom-out").await;
    press(&client, ENTER).await;
    eventually("zoom 1 from the − button", || async { (zoom(client.clone()).await == "1").then_some(()) }).await;

    // The vnode slider: an arrow key moves it by one.
    tab_to(&client, "ring-vnodes").await;
    press(&client, RIGHT).await;
    eventually("161 vnodes in the view", || async {
        text_of(&client, "[data-testid=ring-vnodes-note]").await.filter(|t| t == "view: 161 (the cluster has 160)")
    })
    .await;
    tab_to(&client, "ring-vnodes-reset").await;
    press(&client, ENTER).await;
    eventually("the cluster's count again", || async {
        text_of(&client, "[data-testid=ring-vnodes-note]").await.filter(|t| t == "view: 160, the cluster's")
    })
    .await;

    // The ring itself: + and − zoom, the arrows pan, 0 shows it whole.
    tab_to(&client, "ring").await;
    press(&client, '+').await;
    press(&client, '+').await;
    eventually("zoom 4 by keyboard", || async { (zoom(client.clone()).await == "4").then_some(()) }).await;
    let before = view_box(&client).await;
    assert!((before.2 - 77.5).abs() < 1e-6, "{before:?}");
    // Zooming in goes along the ring: its top is in view.
    assert!(before.1 < -R && before.1 + before.3 > -R, "{before:?}");
    press(&client, LEFT).await;
    let left = view_box(&client).await;
    assert!(left.0 < before.0 && (left.1 - before.1).abs() < 1e-9, "{before:?} -> {left:?}");
    press(&client, UP).await;
    let up = view_box(&client).await;
    assert!(up.1 < left.1, "{left:?} -> {up:?}");
    press(&client, '-').await;
    eventually("zoom 2", || async { (zoom(client.clone()).await == "2").then_some(()) }).await;
    press(&client, '0').await;
    eventually("the whole ring", || async { (zoom(client.clone()).await == "1").then_some(()) }).await;
    assert_eq!(view_box(&client).await, (-155.0, -155.0, 310.0, 310.0));
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hover_names_the_nearest_key_and_a_click_on_a_named_key_looks_it_up() {
    let (stack, _driver, client) = open_page(3).await;
    let members = members_of(&cluster_nodes(&stack).await);
    let ring = Ring::new(&members, 160);

    // Named keys: stored from the page, each its own labelled dot.
    for key in ["alpha", "bravo"] {
        let input = client.find(Locator::Css("[data-testid=kv-key]")).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(key).await.unwrap();
        client.find(Locator::Css("[data-testid=kv-value]")).await.unwrap().send_keys("v").await.unwrap();
        client.find(Locator::Css("[data-testid=kv-put]")).await.unwrap().click().await.unwrap();
        eventually("stored", || async {
            client.find(Locator::Css(&format!("svg.ring circle.key[data-key='{key}']"))).await.ok()
        })
        .await;
    }
    let labels: Vec<String> = {
        let mut out = Vec::new();
        for t in client.find_all(Locator::Css("svg.ring text.key-label")).await.unwrap() {
            out.push(t.text().await.unwrap());
        }
        out
    };
    assert_eq!(labels, ["alpha", "bravo"]);

    // Point at a sample key's dot: the page names the key nearest the
    // pointer's angle, and its owner, as shared places it.
    let mut keys = sample(1000);
    keys.sort_unstable();
    let rect = client
        .execute(
            "const r = document.querySelector('[data-testid=ring]').getBoundingClientRect();
             return [r.left, r.top, r.width, r.height];",
            vec![],
        )
        .await
        .unwrap();
    let r: Vec<f64> = rect.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let (left, top, w, h) = (r[0], r[1], r[2], r[3]);
    let scale = w.min(h) / 310.0;
    for target in [keys[17], keys[500], keys[999]] {
        let (x, y) = at(ring_fraction(target), R - 10.0);
        let (px, py) = ((left + w / 2.0 + x * scale).round(), (top + h / 2.0 + y * scale).round());
        let mouse = MouseActions::new("mouse".into()).then(PointerAction::MoveTo { duration: None, x: px, y: py });
        client.perform_actions(mouse).await.unwrap();
        // The pointer's angle, as the page computes it from the same pixel.
        let (ux, uy) = ((px - left - w / 2.0) / scale, (py - top - h / 2.0) / scale);
        let fraction = ((uy.atan2(ux) + TAU / 4.0) / TAU).rem_euclid(1.0);
        let pointed = (fraction * 18_446_744_073_709_551_616.0) as u64;
        let nearest = *keys
            .iter()
            .min_by_key(|&&k| {
                let d = k.wrapping_sub(pointed);
                d.min(d.wrapping_neg())
            })
            .unwrap();
        let got = eventually("the hover readout", || async {
            attr(&client, "[data-testid=ring-hover]", "data-hash").await.filter(|h| !h.is_empty())
        })
        .await;
        assert_eq!(got, format!("{nearest:016x}"), "pointing at {target:016x}");
        let owner = attr(&client, "[data-testid=ring-hover]", "data-owner").await.unwrap();
        assert_eq!(owner, members[ring.owner_index(nearest).unwrap()].id);
        let text = text_of(&client, "[data-testid=ring-hover]").await.unwrap();
        assert!(text.contains(&format!("hash {nearest:016x}")) && text.ends_with(&format!("owner {owner}")), "{text}");
    }

    // A click on a named key looks it up, with shared's owner.
    client.find(Locator::Css("svg.ring circle.key[data-key='bravo']")).await.unwrap().click().await.unwrap();
    let owner = eventually("bravo looked up", || async {
        text_of(&client, "[data-testid=lookup-owner]").await.filter(|t| t.starts_with("node-"))
    })
    .await;
    assert_eq!(owner, ring.owner_of(b"bravo").unwrap());
    let value = client.find(Locator::Css("[data-testid=lookup-input]")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(value.as_deref(), Some("bravo"));
    assert!(client.find(Locator::Css("svg.ring circle.lookup[data-key='bravo']")).await.is_ok());
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_ring_the_view_says_so_and_draws_keys_only() {
    use shardscope_shared::placement::{build, PlacementSpec};

    let (stack, _driver, client) = open_page_with(3, &["--placement", "modulo"], "/").await;
    let members = members_of(&cluster_nodes(&stack).await);
    let note = eventually("the note", || async { text_of(&client, "[data-testid=ring-vnodes-none]").await }).await;
    assert_eq!(note, "modulo has no ring of virtual nodes: keys only, each in its owner's colour.");
    assert!(client.find(Locator::Css("[data-testid=ring-vnodes]")).await.is_err());
    assert!(client.find_all(Locator::Css("svg.ring path.arc, svg.ring line.vnode")).await.unwrap().is_empty());
    // The keys, per owner, as shared's modulo places them.
    let want = distribution(build(&PlacementSpec::Modulo, &members).as_ref(), &sample(1000));
    let got = eventually("the legend", || async {
        let l = legend(&client).await;
        (l.len() == 3).then_some(l)
    })
    .await;
    for (i, (node, _, keys)) in got.iter().enumerate() {
        assert_eq!(node, &members[i].id);
        assert_eq!(*keys, want.counts[i]);
        let d = attr(&client, &format!("svg.ring path.dots[data-owner='{node}']"), "d").await.unwrap();
        assert_eq!(d.matches('M').count() as u64, want.counts[i]);
    }
    let shares = client.find_all(Locator::Css("[data-testid=ring-legend] .legend-share")).await.unwrap();
    assert!(shares.is_empty(), "no share of a ring without one");
    let label = attr(&client, "[data-testid=ring]", "aria-label").await.unwrap();
    assert!(label.starts_with("Keys on the hash ring placed by modulo over 3 nodes, 1000 keys"), "{label}");
    client.close().await.unwrap();
}
