//! A change's own rate (`rate` on the WebSocket's `add_node`, `remove_node`
//! and `change_placement`, `?rate=` over REST), against a real stack: a
//! slowed join and leave report progress several times on the way and move
//! exactly the keys `shared/` predicts, no faster than the rate; a rate
//! out of its bounds is refused and changes nothing.

mod common;

use std::time::{Duration, Instant};

use common::Stack;
use futures::{SinkExt, StreamExt};
use shardscope_backend::guard::WRITE_HEADER;
use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::analysis::moved_keys;
use shardscope_shared::placement::{build, Member, PlacementSpec};
use shardscope_shared::protocol::{ClientMsg, NodeInfo, Progress, ServerMsg, RATE};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(stack: &Stack) -> Ws {
    let url = format!("{}/ws", stack.url.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(&url).await.unwrap().0
}

async fn send(ws: &mut Ws, msg: &ClientMsg) {
    ws.send(Message::Text(serde_json::to_string(msg).unwrap().into())).await.unwrap();
}

async fn next(ws: &mut Ws) -> ServerMsg {
    let msg = tokio::time::timeout(Duration::from_secs(60), ws.next()).await.expect("a message within 60 s");
    serde_json::from_str(&msg.unwrap().unwrap().into_text().unwrap()).unwrap()
}

/// Sends an administrative request; returns its reply (ok, message) and,
/// when it is accepted, the progress reports of its rebalance up to its
/// end (the last). The reply and the rebalance's events come in either order.
async fn change(ws: &mut Ws, msg: &ClientMsg) -> (bool, String, Vec<Progress>) {
    send(ws, msg).await;
    let (mut reply, mut reports, mut done) = (None, Vec::new(), false);
    while reply.as_ref().is_none_or(|(ok, _)| *ok && !done) {
        match next(ws).await {
            ServerMsg::AdminReply { ok, message, .. } => reply = Some((ok, message)),
            ServerMsg::RebalanceProgress { progress } => reports.push(progress),
            ServerMsg::RebalanceDone { progress } => {
                reports.push(progress);
                done = true;
            }
            ServerMsg::RebalanceError { message, .. } => panic!("rebalance error: {message}"),
            _ => {}
        }
    }
    let (ok, message) = reply.unwrap();
    (ok, message, reports)
}

async fn nodes(stack: &Stack) -> Vec<NodeInfo> {
    reqwest::get(format!("{}/nodes", stack.url)).await.unwrap().json().await.unwrap()
}

fn members(nodes: &[NodeInfo]) -> Vec<Member> {
    nodes.iter().map(|n| Member::new(&n.id)).collect()
}

/// Checks a slowed change's reports: the keys moved rise at least `times`
/// times before the end, and the end is what shared predicts (`moved`
/// keys, in these flows); returns how long it took.
fn check(reports: &[Progress], predicted: &shardscope_shared::placement::analysis::Movement, times: usize) -> f64 {
    let done = reports.last().unwrap();
    let rises = reports.windows(2).filter(|w| w[1].keys_moved > w[0].keys_moved).count();
    assert!(
        rises >= times,
        "progress rose {rises} times: {:?}",
        reports.iter().map(|p| p.keys_moved).collect::<Vec<_>>()
    );
    assert_eq!(done.keys_moved as usize, predicted.moves.len());
    let flows: Vec<(String, String, u64)> = done.flows.iter().map(|f| (f.from.clone(), f.to.clone(), f.keys)).collect();
    assert_eq!(flows, predicted.flows);
    done.seconds
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_at_its_own_rate_reports_progress_and_moves_what_shared_predicts() {
    let stack = Stack::start(3, &["--placement", "modulo"]);
    let http = reqwest::Client::new();
    let keys: Vec<String> = (0..2000).map(|i| format!("key-{i}")).collect();
    for k in &keys {
        let put = http.put(format!("{}/kv/{k}", stack.url)).body(format!("v-{k}")).send().await.unwrap();
        assert_eq!(put.status(), 200);
    }
    let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k.as_bytes())).collect();
    let three = nodes(&stack).await;
    let mut ws = open_ws(&stack).await;

    // Out of bounds: refused, naming the bound; nothing changes.
    for rate in [0, RATE.end() + 1] {
        for msg in [
            ClientMsg::AddNode { id: 1, rate: Some(rate) },
            ClientMsg::ChangePlacement { id: 2, placement: PlacementSpec::Jump, rate: Some(rate) },
            ClientMsg::RemoveNode { id: 3, node: three[0].id.clone(), rate: Some(rate) },
        ] {
            let (ok, message, _) = change(&mut ws, &msg).await;
            assert!(!ok && message.contains("1..=10000000"), "{message}");
        }
    }
    let refused = http.post(format!("{}/nodes?rate=0", stack.url)).header(WRITE_HEADER, "1").send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(nodes(&stack).await, three, "a refused rate changes nothing");
    let placement: PlacementSpec =
        http.get(format!("{}/placement", stack.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(placement, PlacementSpec::Modulo);

    // A join at 400 keys/s: modulo moves about 3/4 of 2000 keys, ~4 s.
    let rate = 400;
    let started = Instant::now();
    let (ok, message, reports) = change(&mut ws, &ClientMsg::AddNode { id: 4, rate: Some(rate) }).await;
    assert!(ok, "{message}");
    let four = nodes(&stack).await;
    assert_eq!(four.len(), 4);
    let spec = PlacementSpec::Modulo;
    let predicted =
        moved_keys(build(&spec, &members(&three)).as_ref(), build(&spec, &members(&four)).as_ref(), &hashes);
    let seconds = check(&reports, &predicted, 5);
    // Paced, not timed: the rebalancer waits until moved / rate seconds have passed.
    assert!(seconds >= predicted.moves.len() as f64 / rate as f64, "{seconds} s for {} keys", predicted.moves.len());
    eprintln!(
        "RATE_JOIN keys={} rate={rate}/s reports={} took={seconds:.2}s wall={:.2}s",
        predicted.moves.len(),
        reports.len(),
        started.elapsed().as_secs_f64()
    );

    // A leave at 300 keys/s, the same way.
    let leaving = four.last().unwrap().id.clone();
    let (ok, message, reports) =
        change(&mut ws, &ClientMsg::RemoveNode { id: 5, node: leaving, rate: Some(300) }).await;
    assert!(ok, "{message}");
    let back = nodes(&stack).await;
    assert_eq!(members(&back), members(&three));
    let predicted = moved_keys(build(&spec, &members(&four)).as_ref(), build(&spec, &members(&back)).as_ref(), &hashes);
    let seconds = check(&reports, &predicted, 5);
    assert!(seconds >= predicted.moves.len() as f64 / 300.0);
    eprintln!("RATE_LEAVE keys={} rate=300/s reports={} took={seconds:.2}s", predicted.moves.len(), reports.len());

    // A change of placement at its rate; the next change without one goes
    // at the serve-wide pace again (here: as fast as it goes).
    let (ok, message, reports) =
        change(&mut ws, &ClientMsg::ChangePlacement { id: 6, placement: PlacementSpec::Jump, rate: Some(500) }).await;
    assert!(ok, "{message}");
    let predicted = moved_keys(
        build(&spec, &members(&back)).as_ref(),
        build(&PlacementSpec::Jump, &members(&back)).as_ref(),
        &hashes,
    );
    check(&reports, &predicted, 3);
    let (ok, message, reports) =
        change(&mut ws, &ClientMsg::ChangePlacement { id: 7, placement: PlacementSpec::Modulo, rate: None }).await;
    assert!(ok, "{message}");
    assert_eq!(reports.last().unwrap().keys_moved as usize, predicted.moves.len(), "jump back to modulo");
    eprintln!("RATE_NONE keys={} took={:.3}s", predicted.moves.len(), reports.last().unwrap().seconds);
}
