//! `shardscope load FILE`: runs a key set or an operations file against the
//! cluster with an indicatif progress bar, then prints a summary. Files are
//! parsed by `shared::keyset` (the same parser the page uses). Operations on
//! one key run in file order; different keys run concurrently, and a
//! `GET_ALL` waits for everything before it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use shardscope_shared::hash::key_hash;
use shardscope_shared::keyset;
use shardscope_shared::protocol::{ErrorCode, NodeReply, NodeRequest};

use crate::client::Remote;

/// Largest file `load` reads.
const MAX_FILE: u64 = 1 << 30;

#[derive(Default)]
struct Tally {
    ok: u64,
    not_found: u64,
    failed: u64,
    first_error: Option<String>,
}

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
    let mut tally = Tally::default();
    // Segments end at each GET_ALL; within one, lanes by key hash.
    for segment in ops.split_inclusive(|op| matches!(op, NodeRequest::GetAll)) {
        let lanes_ops = partition(segment, lanes.max(1));
        let results = futures::stream::iter(lanes_ops)
            .map(|lane| {
                let bar = bar.clone();
                async move {
                    let mut replies = Vec::new();
                    for op in lane {
                        replies.push(remote.request(op).await.map_err(|e| format!("{e:#}")));
                        bar.inc(1);
                    }
                    replies
                }
            })
            .buffer_unordered(lanes.max(1))
            .collect::<Vec<_>>()
            .await;
        for reply in results.into_iter().flatten() {
            match reply {
                Ok(NodeReply::Error { error: ErrorCode::NotFound, .. }) => tally.not_found += 1,
                Ok(NodeReply::Error { message, .. }) | Err(message) => {
                    tally.failed += 1;
                    tally.first_error.get_or_insert(message);
                }
                Ok(_) => tally.ok += 1,
            }
        }
    }
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

/// Splits operations into `lanes` by key hash, keeping each key's order;
/// a trailing `GET_ALL` gets a lane of its own after the others.
fn partition(segment: &[NodeRequest], lanes: usize) -> Vec<Vec<&NodeRequest>> {
    let mut out: Vec<Vec<&NodeRequest>> = vec![Vec::new(); lanes];
    let mut last = Vec::new();
    for op in segment {
        match op {
            NodeRequest::Put { key, .. } | NodeRequest::GetOne { key } | NodeRequest::Delete { key } => {
                out[(key_hash(key.as_bytes()) % lanes as u64) as usize].push(op)
            }
            other => last.push(other),
        }
    }
    out.retain(|lane| !lane.is_empty());
    if !last.is_empty() {
        out.push(last);
    }
    out
}
