//! The charts panel in a real browser (headless Chromium against a real
//! `shardscope serve`): every chart's CSV is exactly shared's numbers,
//! computed here; the keys-per-node chart at N = 3, 100 and 1,000; the
//! vnode curve on an uploaded file; the shipped samples; the SVG and PNG
//! downloads; and the charts of a big upload, timed and printed
//! (`SHARDSCOPE_CHART_KEYS=1000000`, 100,000 by default).

mod common;

use base64::Engine;
use common::browser::*;
use fantoccini::{Client, Locator};
use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::analysis::{
    distribution, join_curve, simulated_members, stride_sample, vnode_curve, CURVE_SAMPLE, JOIN_SAMPLE, JOIN_STEPS,
    VNODE_STEPS,
};
use shardscope_shared::placement::{build_for_keys, Algorithm, PlacementSpec, Settings};
use shardscope_shared::samples::Sample;

/// The text behind a chart's CSV link (its `data:` URL, fetched by the page).
async fn csv_of(client: &Client, chart: &str) -> Vec<Vec<String>> {
    let css = format!("[data-testid=chart-{chart}] a[data-testid=download-csv]");
    let link = client.find(Locator::Css(&css)).await.unwrap();
    let href = link.attr("href").await.unwrap().unwrap();
    assert!(href.starts_with("data:text/csv"), "{href:.40}");
    let text = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(r => r.text()).then(done);",
            vec![href.into()],
        )
        .await
        .unwrap();
    text.as_str().unwrap().lines().map(|l| l.split(',').map(str::to_string).collect()).collect()
}

/// The keys-per-node CSV as (node, count), after the header `node,keys`.
async fn counts_of(client: &Client, chart: &str, what: &str) -> Vec<(String, u64)> {
    let rows = csv_of(client, chart).await;
    assert_eq!(rows[0], ["node", what]);
    rows[1..].iter().map(|r| (r[0].clone(), r[1].parse().unwrap())).collect()
}

/// Shared's keys per node for `n` simulated nodes under `algorithm`.
fn shared_counts(algorithm: Algorithm, n: usize, hashes: &[u64], of: &[u64]) -> Vec<(String, u64)> {
    let members = simulated_members(n);
    let p = build_for_keys(&algorithm.spec(Settings::default()), &members, hashes);
    let d = distribution(p.as_ref(), of);
    p.members().iter().map(|m| m.id.clone()).zip(d.counts).collect()
}

async fn wait_for_charts(client: &Client, keys: usize, nodes: usize) {
    eventually(&format!("charts of {keys} keys over {nodes} nodes"), || async {
        let p = client.find(Locator::Css("[data-testid=charts-summary]")).await.ok()?;
        let ok = p.attr("data-keys").await.ok()?? == keys.to_string()
            && p.attr("data-nodes").await.ok()?? == nodes.to_string();
        ok.then_some(())
    })
    .await;
}

async fn set_nodes(client: &Client, n: usize) {
    client
        .execute(
            "const i = document.querySelector('[data-testid=charts-n]');
             i.value = arguments[0]; i.dispatchEvent(new Event('change', { bubbles: true }));",
            vec![n.to_string().into()],
        )
        .await
        .unwrap();
}

async fn pick_algorithm(client: &Client, a: Algorithm) {
    let css = format!("[data-testid=charts-algorithm] option[value={}]", a.name());
    client.find(Locator::Css(&css)).await.unwrap().click().await.unwrap();
}

fn vnode_rows(n: usize, hashes: &[u64]) -> Vec<Vec<String>> {
    let sample = stride_sample(hashes, CURVE_SAMPLE);
    vnode_curve(&simulated_members(n), &sample, &VNODE_STEPS)
        .iter()
        .map(|p| {
            vec![
                p.vnodes.to_string(),
                p.std_dev.to_string(),
                p.relative_std_dev.to_string(),
                p.max_over_mean.to_string(),
            ]
        })
        .collect()
}

fn generated(n: usize) -> Vec<u64> {
    (0..n).map(|i| key_hash(format!("key-{i}").as_bytes())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn charts_show_shareds_numbers_for_3_100_and_1000_simulated_nodes() {
    let (_stack, _driver, client) = open_page(3).await;
    let hashes = generated(10_000);
    wait_for_charts(&client, 10_000, 10).await;

    // Keys per node at N = 3, 100, 1,000, ring then jump: exactly shared's counts.
    for (n, algorithm) in
        [(3, Algorithm::Ring), (100, Algorithm::Ring), (1000, Algorithm::Ring), (100, Algorithm::Jump)]
    {
        pick_algorithm(&client, algorithm).await;
        set_nodes(&client, n).await;
        wait_for_charts(&client, 10_000, n).await;
        let want = shared_counts(algorithm, n, &hashes, &hashes);
        let got = eventually("the keys chart follows", || async {
            let got = counts_of(&client, "keys-per-node", "keys").await;
            (got == want).then_some(got)
        })
        .await;
        assert_eq!(got.iter().map(|c| c.1).sum::<u64>(), 10_000);
        let svg = client.find(Locator::Css("[data-testid=chart-keys-per-node] svg")).await.unwrap();
        assert_eq!(svg.attr("data-bars").await.unwrap().unwrap(), n.to_string());
        // Past 40 nodes the bars become a sorted distribution.
        assert_eq!(svg.attr("data-sorted").await.unwrap().unwrap(), (n > 40).to_string());
        let bars = client.find_all(Locator::Css("[data-testid=chart-keys-per-node] rect.bar")).await.unwrap();
        assert_eq!(bars.len(), if n > 40 { 0 } else { n });
        // The vnode curve is over the same N; the lookup chart names every algorithm.
        assert_eq!(csv_of(&client, "vnodes").await[1..], vnode_rows(n, &hashes)[..], "vnode curve at N={n}");
        let lookups = csv_of(&client, "lookup-time").await;
        let names: Vec<&str> = lookups[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(names, Algorithm::ALL.map(Algorithm::name));
        for r in &lookups[1..] {
            let ns: f64 = r[1].parse().unwrap();
            assert!(ns.is_finite() && ns > 0.0, "{r:?}");
        }
        println!("LOOKUP_NS n={n} {:?}", &lookups[1..]);
    }
    client
        .execute("document.querySelector('[data-testid=chart-keys-per-node]').scrollIntoView()", vec![])
        .await
        .unwrap();
    save_screenshot(&client, "charts-1000.png").await;

    // The join curve: every algorithm against 1/(N+1), shared's fractions exactly.
    let specs = PlacementSpec::all_defaults();
    let want: Vec<Vec<String>> = join_curve(&specs, &JOIN_STEPS, &stride_sample(&hashes, JOIN_SAMPLE))
        .iter()
        .map(|p| {
            let mut row = vec![p.n.to_string()];
            row.extend(p.fractions.iter().map(f64::to_string));
            row.push(p.ideal.to_string());
            row
        })
        .collect();
    let got = csv_of(&client, "join-moves").await;
    assert_eq!(got[0][1..7], Algorithm::ALL.map(|a| a.name().to_string()));
    assert_eq!(got[1..], want[..]);

    // The slider moves N from the keyboard.
    set_nodes(&client, 3).await;
    wait_for_charts(&client, 10_000, 3).await;
    let slider = client.find(Locator::Css("[data-testid=charts-n-slider]")).await.unwrap();
    slider.send_keys("\u{E014}").await.unwrap(); // ArrowRight
    wait_for_charts(&client, 10_000, 4).await;

    // The SVG download is a standalone SVG document with axes, labels and the node patterns.
    let button =
        client.find(Locator::Css("[data-testid=chart-keys-per-node] [data-testid=download-svg]")).await.unwrap();
    button.click().await.unwrap();
    let href = eventually("the SVG export", || async { button.attr("data-href").await.ok()? }).await;
    assert!(href.starts_with("data:image/svg+xml"), "{href:.40}");
    let parsed = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(r => r.text()).then(text => {
               const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
               const q = s => doc.querySelectorAll(s).length;
               done({ error: q('parsererror'), root: doc.documentElement.localName,
                      axes: q('line.axis'), ticks: q('g.tick'), titles: q('text.axis-title'),
                      title: doc.querySelector('text.chart-title')?.textContent,
                      bars: q('rect.bar'), patterns: q('pattern'), marks: q('g.mark text') });
             });",
            vec![href.into()],
        )
        .await
        .unwrap();
    println!("SVG export: {parsed}");
    assert_eq!(parsed["error"], 0, "the export parses as XML");
    assert_eq!(parsed["root"], "svg");
    assert_eq!(parsed["axes"], 2);
    assert!(parsed["ticks"].as_u64().unwrap() >= 3);
    assert_eq!(parsed["titles"], 2, "both axes have a title");
    assert_eq!(parsed["title"], "keys per node (jump, 4 nodes)", "the last algorithm picked");
    assert_eq!(parsed["bars"], 4);
    assert_eq!(parsed["patterns"], 8, "node patterns inlined");
    assert_eq!(parsed["marks"], 1, "the mean is labelled");

    // The PNG download: the SVG drawn on a canvas at twice its size.
    let button = client.find(Locator::Css("[data-testid=chart-join-moves] [data-testid=download-png]")).await.unwrap();
    button.click().await.unwrap();
    let href = eventually("the PNG export", || async { button.attr("data-href").await.ok()? }).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(href.strip_prefix("data:image/png;base64,").expect("a PNG data URL"))
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1280, 600));
    println!("PNG export: {} bytes, {w}x{h}", png.len());

    // Every chart is an image with a name, and its numbers are a table.
    for svg in client.find_all(Locator::Css(".charts svg.chart")).await.unwrap() {
        assert_eq!(svg.attr("role").await.unwrap().as_deref(), Some("img"));
        assert!(!svg.attr("aria-label").await.unwrap().unwrap().is_empty());
    }
    assert_eq!(client.find_all(Locator::Css(".charts details.numbers table")).await.unwrap().len(), 4);
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_file_gets_its_vnode_curve_and_each_sample_shareds_counts() {
    let (_stack, _driver, client) = open_page(3).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessions.txt");
    let keys: Vec<String> = (0..7_000).map(|i| format!("session:{:x}", i * 7919)).collect();
    std::fs::write(&file, keys.join("\n")).unwrap();
    client
        .find(Locator::Css("[data-testid=upload-input]"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    wait_for_charts(&client, 7_000, 10).await;
    let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k.as_bytes())).collect();
    assert_eq!(csv_of(&client, "vnodes").await[1..], vnode_rows(10, &hashes)[..]);
    assert_eq!(counts_of(&client, "keys-per-node", "keys").await, shared_counts(Algorithm::Ring, 10, &hashes, &hashes));
    assert!(client.find(Locator::Css("[data-testid=chart-requests-per-node]")).await.is_err());

    // An empty file charts nothing, and the page goes on.
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    client
        .find(Locator::Css("[data-testid=upload-input]"))
        .await
        .unwrap()
        .send_keys(empty.to_str().unwrap())
        .await
        .unwrap();
    wait_for_charts(&client, 0, 10).await;
    let zeros = counts_of(&client, "keys-per-node", "keys").await;
    assert!(zeros.len() == 10 && zeros.iter().all(|c| c.1 == 0), "{zeros:?}");
    let svg = client.find(Locator::Css("[data-testid=chart-join-moves] svg")).await.unwrap().html(false).await.unwrap();
    assert!(!svg.contains("NaN"), "nothing drawn at NaN");

    for sample in Sample::ALL {
        client
            .find(Locator::Css(&format!("[data-testid=sample-{}]", sample.slug())))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let hashes: Vec<u64> = sample.keys().iter().map(|k| key_hash(k.as_bytes())).collect();
        wait_for_charts(&client, hashes.len(), 10).await;
        let want = shared_counts(Algorithm::Ring, 10, &hashes, &hashes);
        let got = eventually("the sample's keys chart", || async {
            let got = counts_of(&client, "keys-per-node", "keys").await;
            (got == want).then_some(got)
        })
        .await;
        println!("{}: keys per node {:?}", sample.title(), got.iter().map(|c| c.1).collect::<Vec<_>>());
        let requests = sample.requests();
        if requests.is_empty() {
            assert!(client.find(Locator::Css("[data-testid=chart-requests-per-node]")).await.is_err());
            continue;
        }
        let asked: Vec<u64> = requests.iter().map(|&i| hashes[i]).collect();
        let want = shared_counts(Algorithm::Ring, 10, &hashes, &asked);
        let got = counts_of(&client, "requests-per-node", "requests").await;
        assert_eq!(got, want, "requests per node");
        let stats = client.find(Locator::Css("[data-testid=requests-per-node-stats]")).await.unwrap();
        let skew: f64 = stats.attr("data-max-over-mean").await.unwrap().unwrap().parse().unwrap();
        println!(
            "{}: requests per node {:?}, max/mean {skew:.3}",
            sample.title(),
            got.iter().map(|c| c.1).collect::<Vec<_>>()
        );
        client
            .execute("document.querySelector('[data-testid=chart-requests-per-node]').scrollIntoView()", vec![])
            .await
            .unwrap();
        save_screenshot(&client, "charts-zipf.png").await;
    }
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn charts_of_a_big_upload_are_timed_and_say_they_are_sampled() {
    let n: usize = std::env::var("SHARDSCOPE_CHART_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let (_stack, _driver, client) = open_page(3).await;
    wait_for_charts(&client, 10_000, 10).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.txt");
    let keys: Vec<String> = (0..n).map(|i| format!("user:{i:08}")).collect();
    std::fs::write(&file, keys.join("\n")).unwrap();
    client
        .find(Locator::Css("[data-testid=upload-input]"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    wait_for_charts(&client, n, 10).await;
    let summary = client.find(Locator::Css("[data-testid=charts-summary]")).await.unwrap();
    let total = summary.attr("data-ms").await.unwrap().unwrap();
    let mut each = Vec::new();
    for chart in ["keys-per-node", "vnodes", "join-moves", "lookup-time"] {
        let css = format!(".chart-cell:has([data-testid=chart-{chart}])");
        let ms = client.find(Locator::Css(&css)).await.unwrap().attr("data-ms").await.unwrap().unwrap();
        each.push(format!("{chart}={:.0}", ms.parse::<f64>().unwrap()));
    }
    println!("CHARTS_MS keys={n} total={:.0} {}", total.parse::<f64>().unwrap(), each.join(" "));
    // Changing N redraws what depends on it (keys, vnodes, lookups), timed in the page.
    let ms = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const i = document.querySelector('[data-testid=charts-n]');
             const t0 = performance.now();
             i.value = '20'; i.dispatchEvent(new Event('change', { bubbles: true }));
             setTimeout(() => done(performance.now() - t0), 0);",
            vec![],
        )
        .await
        .unwrap();
    println!("CHARTS_N_CHANGE_MS keys={n} {:.0}", ms.as_f64().unwrap());
    wait_for_charts(&client, n, 20).await;

    let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k.as_bytes())).collect();
    let counts = counts_of(&client, "keys-per-node", "keys").await;
    assert_eq!(counts, shared_counts(Algorithm::Ring, 20, &hashes, &hashes), "keys per node are on every key");
    // The curves say what they were computed on.
    let note = |chart: &'static str| {
        let client = client.clone();
        async move {
            let css = format!("[data-testid=chart-{chart}] [data-testid=chart-note]");
            text_of(&client, &css).await.unwrap_or_default()
        }
    };
    let of = |k: usize| {
        format!("{k}")
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(note("join-moves").await, format!("on a {}-key sample of {}", of(JOIN_SAMPLE), of(n)));
    if n > CURVE_SAMPLE {
        assert_eq!(note("vnodes").await, format!("on a {}-key sample of {}", of(CURVE_SAMPLE), of(n)));
    }
    assert_eq!(csv_of(&client, "vnodes").await[1..], vnode_rows(20, &hashes)[..]);
    client.close().await.unwrap();
}
