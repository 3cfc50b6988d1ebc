//! The `?filter=` expressions of Consul's list endpoints (its `bexpr`
//! language), in the subset that covers the common uses: `Sel == V`,
//! `Sel != V`, `V in Sel`, `V not in Sel`, `Sel contains V`,
//! `Sel not contains V`, `Sel is empty`, `Sel is not empty`, joined with
//! `and`, `or`, `not` and parentheses. A selector is a dotted path into the
//! entry's JSON (`Service.Tags`); a value is `"quoted"`, `` `raw` `` or a
//! bare word (numbers, `true`). An expression that does not parse is a 400,
//! as in Consul; a selector an entry lacks matches nothing.

use serde_json::Value;

/// The longest filter expression accepted.
const MAX_LEN: usize = 4096;

#[derive(Debug)]
pub(super) enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Equal(Vec<String>, String),
    In(String, Vec<String>),
    Empty(Vec<String>),
}

#[derive(Debug, PartialEq, Clone)]
enum Tok {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Eq,
    Ne,
}

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' => {
                chars.next();
                toks.push(if c == '(' { Tok::Open } else { Tok::Close });
            }
            '=' | '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return Err(format!("expected '=' after {c:?}"));
                }
                toks.push(if c == '=' { Tok::Eq } else { Tok::Ne });
            }
            '"' | '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string".into()),
                        Some('\\') if c == '"' => s.extend(chars.next()),
                        Some(ch) if ch == c => break,
                        Some(ch) => s.push(ch),
                    }
                }
                toks.push(Tok::Quoted(s));
            }
            _ => {
                let mut s = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || "()=!\"`".contains(ch) {
                        break;
                    }
                    s.push(ch);
                    chars.next();
                }
                toks.push(Tok::Word(s));
            }
        }
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Word(x)) if x == w)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self, depth: usize) -> Result<Filter, String> {
        let mut left = self.and(depth)?;
        while self.peek_word("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, String> {
        let mut left = self.unary(depth)?;
        while self.peek_word("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary(depth)?));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, String> {
        if depth > 32 {
            return Err("expression nested too deeply".into());
        }
        if self.peek_word("not") {
            self.at += 1;
            return Ok(Filter::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.toks.get(self.at) == Some(&Tok::Open) {
            self.at += 1;
            let inner = self.or(depth + 1)?;
            if self.next() != Some(Tok::Close) {
                return Err("expected ')'".into());
            }
            return Ok(inner);
        }
        self.matcher()
    }

    fn value(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Quoted(s)) => Ok(s),
            Some(Tok::Word(w)) if !["and", "or", "not", "in", "is", "contains"].contains(&w.as_str()) => Ok(w),
            other => Err(format!("expected a value, found {other:?}")),
        }
    }

    fn selector(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Some(Tok::Word(w)) if !w.is_empty() && w.split('.').all(|p| !p.is_empty()) => {
                Ok(w.split('.').map(str::to_string).collect())
            }
            other => Err(format!("expected a selector, found {other:?}")),
        }
    }

    fn matcher(&mut self) -> Result<Filter, String> {
        // `V in Sel` / `V not in Sel` start with a value.
        let quoted = matches!(self.toks.get(self.at), Some(Tok::Quoted(_)));
        let in_next = |p: &Parser, k: usize| matches!(p.toks.get(p.at + k), Some(Tok::Word(w)) if w == "in");
        let not_in_next = self.toks.get(self.at + 1) == Some(&Tok::Word("not".into())) && in_next(self, 2);
        if quoted || in_next(self, 1) || not_in_next {
            let value = self.value()?;
            let negate = self.peek_word("not");
            if negate {
                self.at += 1;
            }
            if !self.peek_word("in") {
                return Err("expected 'in' after a value".into());
            }
            self.at += 1;
            let m = Filter::In(value, self.selector()?);
            return Ok(if negate { Filter::Not(Box::new(m)) } else { m });
        }
        let sel = self.selector()?;
        match self.next() {
            Some(Tok::Eq) => Ok(Filter::Equal(sel, self.value()?)),
            Some(Tok::Ne) => Ok(Filter::Not(Box::new(Filter::Equal(sel, self.value()?)))),
            Some(Tok::Word(w)) if w == "contains" => Ok(Filter::In(self.value()?, sel)),
            Some(Tok::Word(w)) if w == "not" && self.peek_word("contains") => {
                self.at += 1;
                Ok(Filter::Not(Box::new(Filter::In(self.value()?, sel))))
            }
            Some(Tok::Word(w)) if w == "is" => {
                let negate = self.peek_word("not");
                if negate {
                    self.at += 1;
                }
                if !self.peek_word("empty") {
                    return Err("expected 'empty' after 'is'".into());
                }
                self.at += 1;
                let m = Filter::Empty(sel);
                Ok(if negate { Filter::Not(Box::new(m)) } else { m })
            }
            other => Err(format!("expected an operator after the selector, found {other:?}")),
        }
    }
}

/// A value as the filter compares it: strings as they are, other scalars
/// as JSON writes them.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

fn select<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, part| v.get(part))
}

impl Filter {
    /// Parses `text`; the error reads as Consul's.
    pub(super) fn parse(text: &str) -> Result<Filter, String> {
        let fail = |e: String| format!("Failed to create boolean expression evaluator: {e}");
        if text.len() > MAX_LEN {
            return Err(fail(format!("longer than {MAX_LEN} bytes")));
        }
        let mut p = Parser { toks: lex(text).map_err(fail)?, at: 0 };
        let f = p.or(0).map_err(fail)?;
        if p.at != p.toks.len() {
            return Err(fail(format!("unexpected {:?}", p.toks.get(p.at))));
        }
        Ok(f)
    }

    pub(super) fn matches(&self, v: &Value) -> bool {
        match self {
            Filter::Or(a, b) => a.matches(v) || b.matches(v),
            Filter::And(a, b) => a.matches(v) && b.matches(v),
            Filter::Not(f) => !f.matches(v),
            Filter::Equal(sel, want) => select(v, sel).and_then(scalar).is_some_and(|s| &s == want),
            Filter::In(want, sel) => match select(v, sel) {
                Some(Value::Array(items)) => items.iter().filter_map(scalar).any(|s| &s == want),
                Some(Value::Object(map)) => map.contains_key(want),
                Some(Value::String(s)) => s.contains(want.as_str()),
                _ => false,
            },
            Filter::Empty(sel) => match select(v, sel) {
                None | Some(Value::Null) => true,
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_common_forms_match_as_consul_does() {
        let entry = json!({"Service": {"ID": "foo:1", "Tags": ["a", "b"], "Port": 80}, "Status": "passing"});
        let yes = [
            r#""a" in Service.Tags"#,
            r#"Service.ID == "foo:1""#,
            "Status == `passing`",
            "Service.Port == 80",
            r#"Service.Tags contains "b" and not Status != passing"#,
            r#"("z" in Service.Tags or Service.ID != "x") and Service.Meta is empty"#,
            r#""z" not in Service.Tags"#,
        ];
        for f in yes {
            assert!(Filter::parse(f).unwrap().matches(&entry), "{f}");
        }
        let no = [r#""z" in Service.Tags"#, r#"Service.ID == "foo:2""#, "Service.Tags is empty", "Nope == x"];
        for f in no {
            assert!(!Filter::parse(f).unwrap().matches(&entry), "{f}");
        }
        for bad in ["not a valid expression((", "Status ==", "== x", "\"open", "a = b", "(a == b", ""] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
        assert!(Filter::parse(&"(".repeat(100)).is_err());
    }
}
