//! Key-set and operations-file parsing (`shared/src/keyset.rs`), as
//! `shardscope load` and the page's upload use it: `detect` from a file
//! name the input's first byte picks, then `parse`; and `parse` in each of
//! the three formats.
//!
//! Checks: never a panic; an error names a line the text has; plain lines
//! give one PUT per non-blank line, key and value split at the first tab;
//! every operation parsed from JSON lines serializes and parses back to
//! itself (what `load` sends is what the file said); `keys` names one key
//! per single-key operation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardscope_shared::keyset::{self, Format};
use shardscope_shared::protocol::{parse_request, NodeRequest};

const NAMES: [&str; 6] = ["keys.txt", "keys.csv", "operations.jsonl", "ops.ndjson", "data.json", "operations.txt"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else { return };
    // `load` reads the file as UTF-8 text and the page reads it as text too.
    let Ok(text) = std::str::from_utf8(text) else { return };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    let lines = text.lines().count();
    let detected = keyset::detect(name, text);
    for format in [detected, Format::Lines, Format::Csv, Format::JsonLines] {
        let ops = match keyset::parse(text, format) {
            Ok(ops) => ops,
            Err(e) => {
                assert!(e.line >= 1 && e.line <= lines, "error at line {} of {lines}", e.line);
                assert_ne!(format, Format::Lines, "plain lines cannot fail");
                continue;
            }
        };
        let single = ops
            .iter()
            .filter(|op| {
                matches!(op, NodeRequest::Put { .. } | NodeRequest::GetOne { .. } | NodeRequest::Delete { .. })
            })
            .count();
        assert_eq!(keyset::keys(&ops).len(), single);
        match format {
            Format::Lines => check_lines(text, &ops),
            Format::Csv => assert!(ops.len() <= lines),
            Format::JsonLines => {
                for op in &ops {
                    let json = serde_json::to_vec(op).expect("requests serialize");
                    let back = parse_request(&json).expect("a serialized request parses");
                    assert_eq!(&back, op, "{} does not parse back to itself", String::from_utf8_lossy(&json));
                }
            }
        }
    }
});

/// One PUT per non-blank line, `key<TAB>value` split at the first tab.
fn check_lines(text: &str, ops: &[NodeRequest]) {
    let lines: Vec<&str> =
        text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(ops.len(), lines.len());
    for (line, op) in lines.iter().zip(ops) {
        let NodeRequest::Put { key, value, version: None } = op else { panic!("a plain line became {op:?}") };
        let (k, v) = line.split_once('\t').unwrap_or((line, ""));
        assert_eq!((key.as_bytes(), value.as_bytes()), (k.as_bytes(), v.as_bytes()));
    }
}
