//! How long a node is away after `kill -9`: `shardscope serve` with three
//! nodes holding 10,000 keys; each round kills one node's process and times
//! until a key it owns reads back through the gateway (supervision restarts
//! it on its data at a new port, the registry sees it, the gateway
//! reconnects). Prints a markdown table. Runs only with
//! SHARDSCOPE_BENCH_RESTART=1 (`scripts/bench-restart.sh`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

const KEYS: usize = 10_000;
const ROUNDS: usize = 6;

fn main() {
    if std::env::var_os("SHARDSCOPE_BENCH_RESTART").is_none() {
        eprintln!("set SHARDSCOPE_BENCH_RESTART=1 (or run scripts/bench-restart.sh) to run this benchmark");
        return;
    }
    let stack = common::Stack::start(3, &[]);
    let url = stack.url.clone();
    let http = reqwest::blocking::Client::new();
    let mut owned: std::collections::BTreeMap<String, String> = Default::default();
    let value = "v".repeat(100);
    for i in 0..KEYS {
        let resp = http.put(format!("{url}/kv/key-{i}")).body(value.clone()).send().unwrap();
        assert!(resp.status().is_success());
        owned.entry(resp.headers()["x-shardscope-node"].to_str().unwrap().to_string()).or_insert(format!("key-{i}"));
    }
    println!("| round | node | kill -9 to serving again (ms) |\n|---|---|---|");
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let id = format!("node-{}", 1 + round % 3);
        let key = &owned[&id];
        let pid = common::node_pid(stack.pid(), &id).expect("serve runs the node");
        let killed = Instant::now();
        // SAFETY: kill(2) on a node process this benchmark's serve started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        // Until the old process is gone, reads may still be answered by it.
        while common::pid_alive(pid) {
            std::thread::sleep(Duration::from_millis(1));
        }
        loop {
            let ok = http.get(format!("{url}/kv/{key}")).send().is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(30), "{id} not back within 30 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        let ms = killed.elapsed().as_secs_f64() * 1000.0;
        times.push(ms);
        println!("| {} | {id} | {ms:.0} |", round + 1);
        std::thread::sleep(Duration::from_secs(1));
    }
    times.sort_by(f64::total_cmp);
    println!("\nmedian {:.0} ms, max {:.0} ms ({KEYS} keys of 100 B on 3 nodes)", times[ROUNDS / 2], times[ROUNDS - 1]);
}
