//! Key sets and operation files, parsed the same way by the CLI's `load`
//! and by the page's upload: plain lines (`key`, or `key<TAB>value`), CSV
//! (first column the key, second the value; a `key,...` header is skipped),
//! and JSON lines (`{"key":..,"value":..}`, or the seeds' operations,
//! `{"op":"PUT","key":..,"value":..}`, `GET_ONE`, `DELETE`, `GET_ALL`).

use std::borrow::Cow;

use crate::protocol::{parse_request, Datum, NodeRequest};

/// How a file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Lines,
    Csv,
    JsonLines,
}

/// Guesses the format from the file name, then from the first non-blank line.
pub fn detect(name: &str, text: &str) -> Format {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        return Format::Csv;
    }
    if [".jsonl", ".ndjson", ".json"].iter().any(|ext| lower.ends_with(ext)) {
        return Format::JsonLines;
    }
    match text.lines().find(|l| !l.trim().is_empty()) {
        Some(l) if l.trim_start().starts_with('{') => Format::JsonLines,
        _ => Format::Lines,
    }
}

/// A line that could not be read: 1-based line number and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses a whole file into operations (a key set becomes PUTs). Blank lines
/// are skipped; the first bad line stops parsing with its number.
pub fn parse(text: &str, format: Format) -> Result<Vec<NodeRequest>, ParseError> {
    let mut ops = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| ParseError { line: n, message };
        let op = match format {
            Format::Lines => match line.split_once('\t') {
                Some((k, v)) => put(k, v),
                None => put(line, ""),
            },
            Format::Csv => {
                let (key, value) = csv_key_value(line).map_err(err)?;
                if n == 1 && key.eq_ignore_ascii_case("key") {
                    continue;
                }
                put(&key, &value)
            }
            Format::JsonLines => json_line(line).map_err(err)?,
        };
        ops.push(op);
    }
    Ok(ops)
}

fn put(key: &str, value: &str) -> NodeRequest {
    NodeRequest::Put { key: key.into(), value: value.into(), version: None }
}

fn json_line(line: &str) -> Result<NodeRequest, String> {
    // The seeds' operations, as leniently as a node reads them.
    let op_error = match parse_request(line.as_bytes()) {
        Ok(op) => return Ok(op),
        Err(e) => e,
    };
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("op").is_some() {
        return Err(op_error);
    }
    let key: Datum = serde_json::from_value(value.get("key").cloned().ok_or("no \"key\" field")?)
        .map_err(|e| format!("bad \"key\": {e}"))?;
    let value: Datum = match value.get("value") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("bad \"value\": {e}"))?,
        None => Datum::default(),
    };
    Ok(NodeRequest::Put { key, value, version: None })
}

/// The first two fields of one CSV record (RFC 4180 quoting, no embedded
/// newlines): key and value (empty when absent). A record without quotes
/// is read in place.
fn csv_key_value(line: &str) -> Result<(Cow<'_, str>, Cow<'_, str>), String> {
    if !line.contains('"') {
        let mut fields = line.splitn(3, ',');
        let mut next = || Cow::Borrowed(fields.next().unwrap_or(""));
        return Ok((next(), next()));
    }
    let mut fields = csv_fields(line)?.into_iter();
    let mut next = || Cow::Owned(fields.next().unwrap_or_default());
    Ok((next(), next()))
}

/// Splits one CSV record (RFC 4180 quoting, no embedded newlines).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            (_, c) => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    fields.push(field);
    Ok(fields)
}

/// The keys a file names (for charts: every operation's key, in order).
pub fn keys(ops: &[NodeRequest]) -> Vec<&[u8]> {
    ops.iter()
        .filter_map(|op| match op {
            NodeRequest::Put { key, .. } | NodeRequest::GetOne { key, .. } | NodeRequest::Delete { key, .. } => {
                Some(key.as_bytes())
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_by_name_then_content() {
        assert_eq!(detect("keys.csv", "a,b"), Format::Csv);
        assert_eq!(detect("ops.jsonl", "x"), Format::JsonLines);
        assert_eq!(detect("operations.txt", "\n{\"op\":\"PUT\"}"), Format::JsonLines);
        assert_eq!(detect("keys.txt", "user:1\nuser:2"), Format::Lines);
    }

    #[test]
    fn plain_lines_and_csv_become_puts() {
        let ops = parse("a\n\nb\tvalue b\r\n", Format::Lines).unwrap();
        assert_eq!(ops, vec![put("a", ""), put("b", "value b")]);
        let ops = parse("key,value\nk1,v1\n\"k,2\",\"say \"\"hi\"\"\"\nk3\n", Format::Csv).unwrap();
        assert_eq!(ops, vec![put("k1", "v1"), put("k,2", "say \"hi\""), put("k3", "")]);
        assert_eq!(parse("\"open,x\n", Format::Csv).unwrap_err().line, 1);
    }

    #[test]
    fn json_lines_take_pairs_and_the_seeds_operations() {
        let text = "{\"key\":\"a\",\"value\":\"1\"}\n{\"op\":\"DELETE\",\"key\":\"a\"}\n{\"op\":\"GET_ALL\",}\n";
        let ops = parse(text, Format::JsonLines).unwrap();
        assert_eq!(
            ops,
            vec![put("a", "1"), NodeRequest::Delete { key: "a".into(), version: None }, NodeRequest::GetAll]
        );
        assert_eq!(keys(&ops), vec![b"a".as_slice(), b"a".as_slice()]);
        let bad = parse("{\"key\":\"a\"}\n{\"value\":1}\n", Format::JsonLines).unwrap_err();
        assert_eq!(bad.line, 2);
        assert!(bad.message.contains("key"), "{bad}");
    }
}
