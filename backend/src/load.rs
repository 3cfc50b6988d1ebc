//! Running many operations at once: `shardscope load FILE` (a key set or an
//! operations file, with an indicatif progress bar and a summary) and the
//! page's "load into cluster" (`batch` over the WebSocket) share [`run`].
//! Files are parsed by `shared::keyset` (the same parser the page uses).
//! Operations on one key run in file order; different keys run concurrently,
//! and a `GET_ALL` waits for everything before it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use shardscope_shared::hash::key_hash;
use shardscope_shared::keyset;
use shardscope_shared::protocol::{BatchSummary, NodeReply, NodeRequest};

use crate::client::Remote;

/// Largest file `load` reads.
const MAX_FILE: u64 = 1 << 30;

pub async fn load(remote: &Remote, file: &Path, lanes: usize) -> anyhow::Result<ExitCode> {
    let size = std::fs::metadata(file)?.len();
    anyhow::ensure!(size <= MAX_FILE, "{} is {size} bytes, over the {MAX_FILE}-byte limit", file.display());
    let text = std::fs::read_to_string(file)?;
    let format = keyset::detect(&file.to_string_lossy(), &text);
    let ops = keyset::parse(&text, format).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let bar = ProgressBar::new(ops.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} ops  {per_sec}  eta {eta}").expect("the template is valid"),
    );
    let started = Instant::now();
    let tally =
        run(&ops, lanes, |op| async move { remote.request(op).await.map_err(|e| format!("{e:#}")) }, || bar.inc(1))
            .await;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} operations from {} ({format:?}) in {secs:.2} s ({:.0}/s): {} ok, {} not found, {} failed",
        ops.len(),
        file.display(),
        ops.len() as f64 / secs.max(1e-9),
        tally.ok,
        tally.not_found,
        tally.failed
    );
    if let Some(e) = tally.first_error {
        eprintln!("first failure: {e}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `ops` with `exec`, `lanes` at a time: operations on one key in order,
/// different keys concurrently, and each `GET_ALL` (or any operation without
/// a key) after everything before it. `done` is called after each operation.
pub async fn run<'a, F, Fut>(ops: &'a [NodeRequest], lanes: usize, exec: F, done: impl Fn()) -> BatchSummary
where
    F: Fn(&'a NodeRequest) -> Fut,
    Fut: std::future::Future<Output = Result<NodeReply, String>>,
{
    let lanes = lanes.max(1);
    let mut summary = BatchSummary::default();
    for segment in ops.split_inclusive(|op| key_of(op).is_none()) {
        let (keyed, rest) = match segment.split_last() {
            Some((last, before)) if key_of(last).is_none() => (before, Some(last)),
            _ => (segment, None),
        };
        // The lanes' futures are made up front: a stream holding a closure
        // would hide from rustc that a caller's task stays `Send`.
        let lane_futures: Vec<_> = partition(keyed, lanes)
            .into_iter()
            .map(|lane| {
                let (exec, done) = (&exec, &done);
                async move {
                    let mut replies = Vec::with_capacity(lane.len());
                    for op in lane {
                        replies.push(exec(op).await);
                        done();
                    }
                    replies
                }
            })
            .collect();
        let replies = futures::stream::iter(lane_futures).buffer_unordered(lanes).collect::<Vec<_>>().await;
        for reply in replies.into_iter().flatten() {
            summary.count(reply.as_ref().map_err(Clone::clone));
        }
        if let Some(op) = rest {
            summary.count(exec(op).await.as_ref().map_err(Clone::clone));
            done();
        }
    }
    summary
}

/// The key a single-key operation is about.
fn key_of(op: &NodeRequest) -> Option<&[u8]> {
    match op {
        NodeRequest::Put { key, .. } | NodeRequest::GetOne { key, .. } | NodeRequest::Delete { key, .. } => {
            Some(key.as_bytes())
        }
        _ => None,
    }
}

/// Splits single-key operations into at most `lanes` lanes by key hash,
/// keeping each key's order.
fn partition(keyed: &[NodeRequest], lanes: usize) -> Vec<Vec<&NodeRequest>> {
    let mut out: Vec<Vec<&NodeRequest>> = vec![Vec::new(); lanes];
    for op in keyed {
        let key = key_of(op).expect("segments hold single-key operations before their last");
        out[(key_hash(key) % lanes as u64) as usize].push(op);
    }
    out.retain(|lane| !lane.is_empty());
    out
}
