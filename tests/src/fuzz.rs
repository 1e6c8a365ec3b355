//! Inputs for fuzzing the suite's parsers: the platforms' own payloads (and this repository's samples),
//! mutated structurally (a JSON node replaced by another type, dropped, duplicated or nested deep) and then
//! byte-wise (bits flipped, bytes inserted and removed). `bolero` drives the search on stable Rust and
//! shrinks a failing case; the mutations are this module's, since they start from real payloads.

use std::sync::atomic::{AtomicU64, Ordering};

use bolero::TypeGenerator;
use serde_json::Value;

/// What replaces a JSON node.
#[derive(Debug, Clone, TypeGenerator)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A number no f64 or i64 holds.
    Huge,
    Text(String),
    /// A long string of one character.
    Long(u16, char),
    EmptyArray,
    EmptyObject,
}

/// One mutation. Node indexes count the JSON tree depth-first; byte positions wrap around the body.
#[derive(Debug, Clone, TypeGenerator)]
pub enum Op {
    Replace(u16, Node),
    Drop(u16),
    Duplicate(u16),
    Nest(u16, u8),
    Flip(u16, u8),
    Insert(u16, Vec<u8>),
    Remove(u16, u8),
}

/// A fuzz case: which seed, and what is done to it.
#[derive(Debug, Clone, TypeGenerator)]
pub struct Case {
    pub seed: u16,
    #[generator(bolero::produce_with::<Vec<Op>>().len(0usize..8))]
    pub ops: Vec<Op>,
}

fn node_count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(node_count).sum(),
        Value::Object(o) => o.values().map(node_count).sum(),
        _ => 0,
    }
}

/// Applies `f` to the `n`-th node (depth-first) with its parent's view: `f` gets the node.
fn with_node(v: &mut Value, n: &mut usize, f: &mut dyn FnMut(&mut Value)) -> bool {
    if *n == 0 {
        f(v);
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|c| with_node(c, n, f)),
        Value::Object(o) => o.values_mut().any(|c| with_node(c, n, f)),
        _ => false,
    }
}

fn value_of(node: &Node) -> Value {
    match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::from(*i),
        Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Node::Huge => serde_json::from_str("1e999999").unwrap_or(Value::Null),
        Node::Text(s) => Value::String(s.clone()),
        Node::Long(n, c) => Value::String(std::iter::repeat_n(*c, usize::from(*n) * 16).collect()),
        Node::EmptyArray => Value::Array(Vec::new()),
        Node::EmptyObject => Value::Object(serde_json::Map::new()),
    }
}

fn structural(v: &mut Value, op: &Op) {
    let count = node_count(v);
    let at = |i: u16| usize::from(i) % count;
    match op {
        Op::Replace(i, node) => {
            let _ = with_node(v, &mut at(*i), &mut |n| *n = value_of(node));
        }
        Op::Drop(i) => {
            let _ = with_node(v, &mut at(*i), &mut |n| match n {
                Value::Object(o) => {
                    if let Some(k) = o.keys().next().cloned() {
                        o.remove(&k);
                    }
                }
                Value::Array(a) => {
                    a.pop();
                }
                other => *other = Value::Null,
            });
        }
        Op::Duplicate(i) => {
            let _ = with_node(v, &mut at(*i), &mut |n| {
                if let Value::Array(a) = n {
                    if let Some(first) = a.first().cloned() {
                        a.push(first);
                    }
                }
            });
        }
        Op::Nest(i, depth) => {
            let _ = with_node(v, &mut at(*i), &mut |n| {
                for _ in 0..(usize::from(*depth) % 64) {
                    *n = Value::Array(vec![n.take()]);
                }
            });
        }
        _ => {}
    }
}

fn bytewise(b: &mut Vec<u8>, op: &Op) {
    let at = |i: u16, len: usize| if len == 0 { 0 } else { usize::from(i) % len };
    match op {
        Op::Flip(i, bit) if !b.is_empty() => {
            let i = at(*i, b.len());
            b[i] ^= 1 << (bit % 8);
        }
        Op::Insert(i, bytes) => {
            let i = at(*i, b.len() + 1);
            b.splice(i..i, bytes.iter().copied());
        }
        Op::Remove(i, n) if !b.is_empty() => {
            let i = at(*i, b.len());
            let end = (i + usize::from(*n)).min(b.len());
            b.drain(i..end);
        }
        _ => {}
    }
}

/// The body `case` makes of `seeds`: JSON mutations first (when the seed is JSON), then byte mutations.
pub fn mutate(seeds: &[Vec<u8>], case: &Case) -> Vec<u8> {
    let seed = &seeds[usize::from(case.seed) % seeds.len()];
    let mut body = match serde_json::from_slice::<Value>(seed) {
        Ok(mut v) => {
            for op in &case.ops {
                structural(&mut v, op);
            }
            serde_json::to_vec(&v).unwrap_or_else(|_| seed.clone())
        }
        Err(_) => seed.clone(),
    };
    for op in &case.ops {
        bytewise(&mut body, op);
    }
    body
}

/// How many inputs each target tries: `NEX_FUZZ_INPUTS` (the benchmark's long run), 1,000 by default.
pub fn inputs() -> usize {
    std::env::var("NEX_FUZZ_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000)
}

/// Counts the inputs a target tried, for its line in the report.
#[derive(Debug, Default)]
pub struct Tried(AtomicU64);

impl Tried {
    pub fn one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The report line: a panic never gets here (the test fails with its input instead).
    pub fn report(&self, target: &str) {
        println!("fuzz {target:<34} {:>9} inputs  0 panics", self.0.load(Ordering::Relaxed));
    }
}

/// Every file of `dir` (sorted), read as bytes; nothing if the folder is not there.
pub fn files(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    paths.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == ext));
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}
