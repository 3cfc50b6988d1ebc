//! The lesson against a live 3-node cluster, in headless Chromium: every
//! step's numbers against `shared/` (computed here) and, for the live
//! steps, against the backend (its rebalance, `GET /nodes`, the keys'
//! owners); the vnode slider's std dev at 1, 10, 100 and 500; and the whole
//! lesson, a live step included, walked with the keyboard only.
//!
//! Needs the built page (`scripts/build-page.sh`). Screenshots of each step
//! go to `target/screenshots/lesson-N.png`.

mod common;

use std::time::{Duration, Instant};

use common::browser::*;
use common::Stack;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::analysis::{distribution, moved_keys, Movement};
use shardscope_shared::placement::ring::Ring;
use shardscope_shared::placement::{build, build_for_keys, Algorithm, Member, Placement, PlacementSpec, Settings};

const NAMED: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
const SAMPLE: usize = 3000;

/// The lesson's keys as the page has them: the named ones, then the sample.
fn lesson_keys() -> Vec<String> {
    NAMED.iter().map(|k| k.to_string()).chain((0..SAMPLE).map(|i| format!("key-{i}"))).collect()
}

fn hashes() -> Vec<u64> {
    lesson_keys().iter().map(|k| key_hash(k.as_bytes())).collect()
}

/// Polls `probe` for at most `secs`.
async fn within<T, F, Fut>(what: &str, secs: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn attr(client: &Client, css: &str, name: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.attr(name).await.ok()?
}

/// Waits until the lesson shows step `n`, the indicator saying so.
async fn at_step(client: &Client, n: usize) {
    let indicator = format!("Step {n} of 6");
    eventually(&format!("step {n}"), || async {
        let step = attr(client, "[data-testid=lesson]", "data-step").await?;
        let text = text_of(client, "[data-testid=lesson-indicator]").await?;
        (step == n.to_string() && text.starts_with(&indicator)).then_some(())
    })
    .await;
}

async fn click(client: &Client, css: &str) {
    client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

/// One key pressed and released, as a keyboard (WebDriver actions) sends it.
async fn press(client: &Client, key: Key) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key.into() })
        .then(KeyAction::Up { value: key.into() });
    client.perform_actions(keys).await.unwrap();
}

async fn active_testid(client: &Client) -> Option<String> {
    client.active_element().await.ok()?.attr("data-testid").await.ok()?
}

/// The page's numbers for a join equal shared's `mv`.
async fn assert_movement(client: &Client, mv: &Movement) {
    let moved = eventually("the join's numbers", || async {
        let moved = attr(client, "[data-testid=lesson-moved]", "data-moved").await?;
        (moved == mv.moves.len().to_string()).then_some(moved)
    })
    .await;
    assert_eq!(moved, mv.moves.len().to_string());
    assert_eq!(attr(client, "[data-testid=lesson-moved]", "data-total").await.unwrap(), mv.total.to_string());
    assert_eq!(attr(client, "[data-testid=lesson-moved]", "data-fraction").await.unwrap(), mv.fraction.to_string());
    assert_eq!(attr(client, "[data-testid=lesson-moved]", "data-ideal").await.unwrap(), mv.ideal.to_string());
    let mut flows = Vec::new();
    for li in client.find_all(Locator::Css("[data-testid=lesson-flows] li")).await.unwrap() {
        let get = |n: &'static str| {
            let li = li.clone();
            async move { li.attr(n).await.unwrap().unwrap() }
        };
        flows.push((get("data-from").await, get("data-to").await, get("data-keys").await.parse::<u64>().unwrap()));
    }
    assert_eq!(flows, mv.flows);
}

/// The page's shares of the ring, keys per node and std dev equal shared's
/// for a ring of `vnodes` per member.
async fn assert_balance(client: &Client, members: &[Member], vnodes: u32) {
    let ring = build(&PlacementSpec::Ring { vnodes }, members);
    let placement = ring.as_ref();
    let d = distribution(placement, &hashes());
    let std_dev = d.std_dev.to_string();
    eventually("the balance numbers", || async {
        (attr(client, "[data-testid=lesson-balance]", "data-std-dev").await? == std_dev).then_some(())
    })
    .await;
    assert_eq!(
        attr(client, "[data-testid=lesson-balance]", "data-max-over-mean").await.unwrap(),
        d.max_over_mean.to_string()
    );
    let shares = Ring::new(placement.members(), vnodes).shares();
    for ((m, c), share) in placement.members().iter().zip(&d.counts).zip(shares) {
        let css = format!("[data-testid=lesson-distribution] tr[data-node='{}']", m.id);
        assert_eq!(attr(client, &css, "data-keys").await.unwrap(), c.to_string(), "{}", m.id);
        assert_eq!(attr(client, &css, "data-share").await.unwrap(), share.to_string(), "{}", m.id);
    }
}

fn joined(spec: &PlacementSpec, members: &[Member], joiner: &str) -> (Box<dyn Placement>, Box<dyn Placement>) {
    if matches!(spec, PlacementSpec::Bounded { .. }) {
        let mut with = members.to_vec();
        with.push(Member::new(joiner));
        return (build_for_keys(spec, members, &hashes()), build_for_keys(spec, &with, &hashes()));
    }
    let mut after = build(spec, members);
    after.add_member(Member::new(joiner));
    (build(spec, members), after)
}

async fn placement_of(stack: &Stack) -> PlacementSpec {
    reqwest::get(format!("{}/placement", stack.url)).await.unwrap().json().await.unwrap()
}

/// Runs the live join of the step shown (2 or 4) by `start`, checks the
/// backend's progress rising, its result against shared and the cluster,
/// then puts the cluster back by `put_back` and checks it is as before.
async fn run_live<S, SF, P, PF>(client: &Client, stack: &Stack, spec: PlacementSpec, start: S, put_back: P)
where
    S: FnOnce() -> SF,
    SF: std::future::Future<Output = ()>,
    P: FnOnce() -> PF,
    PF: std::future::Future<Output = ()>,
{
    let before_nodes = cluster_nodes(stack).await;
    let members = members_of(&before_nodes);
    let before_spec = placement_of(stack).await;
    let started = Instant::now();
    start().await;
    // The join's progress, as the page shows it, rises on the way.
    let (mut seen, mut travelled) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(moved) = attr(client, "[data-testid=lesson-live]", "data-moved").await {
            let change = attr(client, "[data-testid=lesson-live]", "data-change").await.unwrap_or_default();
            if change.starts_with("join ") && seen.last() != Some(&moved) {
                seen.push(moved);
            }
        }
        let t = attr(client, "[data-testid=lesson-travelled]", "data-travelled").await.unwrap_or_default();
        if !t.is_empty() && travelled.last() != Some(&t) {
            travelled.push(t);
        }
        if attr(client, "[data-testid=lesson-status]", "data-phase").await.as_deref() == Some("joined") {
            break;
        }
        assert!(Instant::now() < deadline, "the live join within 60 s: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "LESSON_LIVE_JOIN {}: placement change and join took {:.1}s; the page showed {} progress values and {} travelled values",
        spec.name(),
        started.elapsed().as_secs_f64(),
        seen.len(),
        travelled.len()
    );
    assert!(seen.len() >= 3, "the join's progress rose on the page: {seen:?}");
    assert!(travelled.len() >= 3 && travelled.last().map(String::as_str) == Some("1"), "{travelled:?}");
    assert_eq!(placement_of(stack).await, spec);
    let after_nodes = cluster_nodes(stack).await;
    assert_eq!(after_nodes.len(), members.len() + 1);
    let added = after_nodes.iter().find(|n| !members.iter().any(|m| m.id == n.id)).unwrap().id.clone();
    let (before, after) = joined(&spec, &members, &added);
    let mv = moved_keys(before.as_ref(), after.as_ref(), &hashes());
    // The backend moved what shared predicts (the cluster holds the lesson's keys only)...
    let live_moved = attr(client, "[data-testid=lesson-live]", "data-moved").await.unwrap();
    assert_eq!(live_moved, mv.moves.len().to_string());
    assert_eq!(attr(client, "[data-testid=lesson-live]", "data-done").await.unwrap(), "true");
    // ...the page's own prediction names the node that really joined...
    assert_movement(client, &mv).await;
    // ...and every named key is where shared says, asked of the backend.
    let http = reqwest::Client::new();
    for k in NAMED {
        let resp = http.get(format!("{}/kv/{k}", stack.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{k}");
        assert_eq!(resp.headers()["x-shardscope-node"].to_str().unwrap(), after.owner_of(k.as_bytes()).unwrap(), "{k}");
    }
    put_back().await;
    within("the cluster put back", 60, || async {
        (attr(client, "[data-testid=lesson-status]", "data-phase").await? == "idle").then_some(())
    })
    .await;
    assert_eq!(members_of(&cluster_nodes(stack).await), members, "the added node removed");
    assert_eq!(placement_of(stack).await, before_spec, "the placement restored");
    eprintln!("LESSON_PUT_BACK {} after {:.1}s in all", spec.name(), started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lesson_walked_against_a_live_cluster_matches_shared_and_the_backend() {
    let (stack, _driver, client) = open_page(3).await;
    click(&client, "[data-testid=lesson-toggle]").await;
    at_step(&client, 1).await;
    assert_eq!(text_of(&client, "[data-testid=lesson-toggle]").await.unwrap(), "Leave lesson");
    let main = client.find(Locator::Css("main")).await.unwrap();
    assert!(main.attr("class").await.unwrap().unwrap().contains("demo"));
    let members = members_of(&cluster_nodes(&stack).await);
    let live = build(&PlacementSpec::Ring { vnodes: 160 }, &members);

    // 1. Each named key's hash and owner; written, each answered by that owner.
    for k in NAMED {
        let css = format!("[data-testid=lesson-keys] tr[data-key='{k}']");
        assert_eq!(attr(&client, &css, "data-hash").await.unwrap(), format!("{:016x}", key_hash(k.as_bytes())));
        assert_eq!(attr(&client, &css, "data-owner").await.unwrap(), live.owner_of(k.as_bytes()).unwrap());
    }
    click(&client, "[data-testid=lesson-write]").await;
    let written = within("the sample written", 60, || async {
        text_of(&client, "[data-testid=lesson-sample]").await.filter(|t| t.contains("written"))
    })
    .await;
    assert_eq!(written, format!("{SAMPLE} of {SAMPLE} sample keys (key-0 … key-{}) written, 0 failed.", SAMPLE - 1));
    let http = reqwest::Client::new();
    for k in NAMED {
        let css = format!("[data-testid=lesson-keys] tr[data-key='{k}']");
        let answered = attr(&client, &css, "data-answered").await.unwrap();
        assert_eq!(answered, live.owner_of(k.as_bytes()).unwrap(), "{k}");
        let resp = http.get(format!("{}/kv/{k}", stack.url)).send().await.unwrap();
        assert_eq!(resp.headers()["x-shardscope-node"].to_str().unwrap(), answered);
        assert_eq!(resp.text().await.unwrap(), format!("hello {k}"));
    }
    save_screenshot(&client, "lesson-1.png").await;

    // 2. Modulo, 3 -> 4: shared's numbers, then run on the cluster and put back.
    click(&client, "[data-testid=lesson-next]").await;
    at_step(&client, 2).await;
    let url = client.current_url().await.unwrap().to_string();
    assert!(url.ends_with("#demo=1&step=2"), "{url}");
    let (before, after) = joined(&PlacementSpec::Modulo, &members, "node-4");
    let mv = moved_keys(before.as_ref(), after.as_ref(), &hashes());
    assert_movement(&client, &mv).await;
    assert!((mv.ideal - 0.25).abs() < 1e-12 && mv.fraction > 0.5, "modulo moves most keys: {}", mv.fraction);
    run_live(
        &client,
        &stack,
        PlacementSpec::Modulo,
        || async {
            click(&client, "[data-testid=lesson-run]").await;
            // Screenshot mid-way: keys on their way.
            within("the join under way", 60, || async {
                let change = attr(&client, "[data-testid=lesson-live]", "data-change").await?;
                change.starts_with("join ").then_some(())
            })
            .await;
            save_screenshot(&client, "lesson-2.png").await;
        },
        || async { click(&client, "[data-testid=lesson-put-back]").await },
    )
    .await;

    // 3. A ring with one point per node: keys per node and std dev from shared.
    click(&client, "[data-testid=lesson-next]").await;
    at_step(&client, 3).await;
    assert_balance(&client, &members, 1).await;
    save_screenshot(&client, "lesson-3.png").await;

    // 4. A join on that ring: only one arc's keys move, all to the joiner.
    click(&client, "[data-testid=lesson-next]").await;
    at_step(&client, 4).await;
    let joiner = eventually("the joiner named", || async {
        let text = text_of(&client, "[data-testid=lesson-flows] li").await?;
        text.split(" → ").nth(1)?.split(':').next().map(str::to_string)
    })
    .await;
    let (before, after) = joined(&PlacementSpec::Ring { vnodes: 1 }, &members, &joiner);
    let mv = moved_keys(before.as_ref(), after.as_ref(), &hashes());
    assert_movement(&client, &mv).await;
    assert_eq!(mv.flows.len(), 1, "one arc, from one node: {:?}", mv.flows);
    save_screenshot(&client, "lesson-4.png").await;

    // 5. Virtual nodes: the slider starts at 1.
    click(&client, "[data-testid=lesson-next]").await;
    at_step(&client, 5).await;
    assert_balance(&client, &members, 1).await;
    save_screenshot(&client, "lesson-5.png").await;

    // 6. The other algorithms: balance, movement and alice's placement from shared.
    click(&client, "[data-testid=lesson-next]").await;
    at_step(&client, 6).await;
    assert_algorithms(&client, &members, &joiner).await;
    save_screenshot(&client, "lesson-6.png").await;
    assert!(client.find(Locator::Css("[data-testid=lesson-next][disabled]")).await.is_ok(), "6 is the last step");

    // Back goes back; leaving the lesson takes it off the page and the URL.
    click(&client, "[data-testid=lesson-back]").await;
    at_step(&client, 5).await;
    click(&client, "[data-testid=lesson-toggle]").await;
    eventually("the lesson gone", || async {
        client.find(Locator::Css("[data-testid=lesson]")).await.is_err().then_some(())
    })
    .await;
    let url = client.current_url().await.unwrap().to_string();
    assert!(!url.contains("demo") && !url.contains("step"), "{url}");
    client.close().await.unwrap();
}

/// Step 6's table against shared, for `members` and `joiner`.
async fn assert_algorithms(client: &Client, members: &[Member], joiner: &str) {
    for algo in [Algorithm::Rendezvous, Algorithm::Jump, Algorithm::Maglev, Algorithm::Bounded] {
        let spec = algo.spec(Settings::default());
        let (before, after) = joined(&spec, members, joiner);
        let d = distribution(before.as_ref(), &hashes());
        let mv = moved_keys(before.as_ref(), after.as_ref(), &hashes());
        let css = format!("[data-testid=lesson-algorithms] tr[data-algorithm={}]", algo.name());
        assert_eq!(attr(client, &css, "data-std-dev").await.unwrap(), d.std_dev.to_string(), "{algo}");
        assert_eq!(attr(client, &css, "data-max-over-mean").await.unwrap(), d.max_over_mean.to_string(), "{algo}");
        assert_eq!(attr(client, &css, "data-fraction").await.unwrap(), mv.fraction.to_string(), "{algo}");
        assert_eq!(attr(client, &css, "data-ideal").await.unwrap(), mv.ideal.to_string(), "{algo}");
        let why = text_of(client, &format!("{css} [data-testid=lesson-why]")).await.unwrap();
        assert_eq!(why, before.explain(key_hash(b"alice")).summary(before.members()), "{algo}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vnode_slider_shows_shareds_std_dev_at_1_10_100_500() {
    let (stack, _driver, client) = open_page(3).await;
    // A link opens the lesson at its step.
    client.goto(&format!("{}/#demo=1&step=5", stack.url)).await.unwrap();
    client.refresh().await.unwrap();
    at_step(&client, 5).await;
    let members = members_of(&cluster_nodes(&stack).await);
    let mut redraws = Vec::new();
    for v in [1u32, 10, 100, 500] {
        let want = distribution(build(&PlacementSpec::Ring { vnodes: v }, &members).as_ref(), &hashes()).std_dev;
        let started = Instant::now();
        client
            .execute(
                "const s = document.querySelector('[data-testid=lesson-vnodes]'); s.value = String(arguments[0]); \
                 s.dispatchEvent(new Event('input', { bubbles: true }));",
                vec![serde_json::json!(v)],
            )
            .await
            .unwrap();
        eventually(&format!("std dev at {v} vnodes"), || async {
            (attr(&client, "[data-testid=lesson-balance]", "data-std-dev").await? == want.to_string()).then_some(())
        })
        .await;
        redraws.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_balance(&client, &members, v).await;
        let shown = text_of(&client, "[data-testid=lesson-balance]").await.unwrap();
        assert!(shown.contains(&format!("std dev {want:.1}")), "{shown}");
        // The ring draws the same count (its own control shows it).
        let ring = client.find(Locator::Css("[data-testid=lesson] [data-testid=ring-vnodes]")).await.unwrap();
        assert_eq!(ring.prop("value").await.unwrap(), Some(v.to_string()), "the ring at {v} vnodes");
        if v == 500 {
            save_screenshot(&client, "lesson-5-vnodes-500.png").await;
        }
    }
    // Round trips through WebDriver included: an upper bound on the redraw.
    eprintln!(
        "LESSON_SLIDER_MS (set + redraw + WebDriver polling, 3 nodes, {} keys) at 1/10/100/500 vnodes: {:?}",
        NAMED.len() + SAMPLE,
        redraws.iter().map(|ms| format!("{ms:.0}")).collect::<Vec<_>>()
    );
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lesson_and_a_live_step_run_with_the_keyboard_only() {
    let (stack, _driver, client) = open_page(3).await;
    let members = members_of(&cluster_nodes(&stack).await);
    // Tab to the header's toggle (the first control), Enter opens the lesson.
    let toggle = within("the toggle focused", 20, || async {
        press(&client, Key::Tab).await;
        (active_testid(&client).await? == "lesson-toggle").then_some(())
    });
    toggle.await;
    press(&client, Key::Enter).await;
    at_step(&client, 1).await;
    // Forward with the arrows and a clicker's PageDown, back with PageUp
    // and ArrowLeft, End and Home to the ends.
    press(&client, Key::Right).await;
    at_step(&client, 2).await;
    press(&client, Key::PageDown).await;
    at_step(&client, 3).await;
    press(&client, Key::PageUp).await;
    at_step(&client, 2).await;
    press(&client, Key::End).await;
    at_step(&client, 6).await;
    press(&client, Key::Right).await;
    at_step(&client, 6).await;
    press(&client, Key::Home).await;
    at_step(&client, 1).await;
    // Step 1's keys written from the keyboard: Tab from the title to the button.
    press(&client, Key::Tab).await;
    assert_eq!(active_testid(&client).await.as_deref(), Some("lesson-write"));
    press(&client, Key::Enter).await;
    within("the sample written", 60, || async {
        text_of(&client, "[data-testid=lesson-sample]").await.filter(|t| t.ends_with("written, 0 failed."))
    })
    .await;
    press(&client, Key::Left).await;
    at_step(&client, 1).await;
    // Typing in a field does not turn the page.
    let input = client.find(Locator::Css("[data-testid=lookup-input]")).await.unwrap();
    input.send_keys(&format!("ab{}{}", Key::Right, Key::PageDown)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    at_step(&client, 1).await;
    // Escape leaves the field; the keys turn the page again.
    input.send_keys(&Key::Escape.to_string()).await.unwrap();
    for n in 2..=4 {
        press(&client, Key::Right).await;
        at_step(&client, n).await;
    }
    assert_eq!(active_testid(&client).await.as_deref(), Some("lesson-title"), "the new step's title has the focus");
    // Step 4 live: Tab reaches "Run it on the cluster", Enter runs it.
    press(&client, Key::Tab).await;
    assert_eq!(active_testid(&client).await.as_deref(), Some("lesson-run"));
    let spec = PlacementSpec::Ring { vnodes: 1 };
    let (before, after) = joined(&spec, &members, "node-4");
    assert_movement(&client, &moved_keys(before.as_ref(), after.as_ref(), &hashes())).await;
    run_live(
        &client,
        &stack,
        spec,
        || async {
            press(&client, Key::Enter).await;
            within("the join under way", 60, || async {
                let change = attr(&client, "[data-testid=lesson-live]", "data-change").await?;
                change.starts_with("join ").then_some(())
            })
            .await;
        },
        || async {
            // Tab moves on from "Run it on the cluster" to "Put the cluster back".
            press(&client, Key::Tab).await;
            assert_eq!(active_testid(&client).await.as_deref(), Some("lesson-put-back"));
            press(&client, Key::Enter).await;
        },
    )
    .await;
    save_screenshot(&client, "lesson-keyboard-4.png").await;
    // The ring focused, the arrows pan it and do not turn the page.
    within("the lesson's ring focused", 20, || async {
        press(&client, Key::Tab).await;
        let js = "const e = document.activeElement; return !!(e && e.closest('[data-testid=lesson]') && e.dataset.testid === 'ring')";
        (client.execute(js, vec![]).await.ok()? == serde_json::Value::Bool(true)).then_some(())
    })
    .await;
    let view_box = || async { attr(&client, "[data-testid=lesson] [data-testid=ring]", "viewBox").await.unwrap() };
    press(&client, Key::Add).await;
    let zoomed = view_box().await;
    press(&client, Key::Right).await;
    within("the ring to pan", 10, || async { (view_box().await != zoomed).then_some(()) }).await;
    at_step(&client, 4).await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_admin_token_a_live_step_says_so_and_stays_a_simulation() {
    let (stack, _driver, client) = open_page_with(3, &["--admin-token", "s3cret"], "/#demo=1&step=2").await;
    at_step(&client, 2).await;
    let members = members_of(&cluster_nodes(&stack).await);
    click(&client, "[data-testid=lesson-run]").await;
    let status = eventually("the refusal", || async {
        if attr(&client, "[data-testid=lesson-status]", "data-phase").await? != "refused" {
            return None;
        }
        text_of(&client, "[data-testid=lesson-status]").await
    })
    .await;
    assert!(status.contains("admin token") && status.ends_with("this step stays a simulation."), "{status}");
    assert_eq!(members_of(&cluster_nodes(&stack).await), members, "no node added");
    assert_eq!(placement_of(&stack).await, PlacementSpec::Ring { vnodes: 160 }, "the placement unchanged");
    // The simulation is still shown, with shared's numbers.
    let (before, after) = joined(&PlacementSpec::Modulo, &members, "node-4");
    assert_movement(&client, &moved_keys(before.as_ref(), after.as_ref(), &hashes())).await;
    client.close().await.unwrap();
}
