//! Files of the workspace, read from the tests' point of view, and YAML helpers.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// Paths another engineer writes in parallel (the demo schema, the routing file, the data generator
/// crate). Until they exist, the checks that need them are skipped with a note — for these three paths
/// only; every other file the deployment references must exist.
const WRITTEN_ELSEWHERE: &[&str] = &["main-db/schema.sql", "main-db/routing.toml", "generator"];

pub(super) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

pub(super) fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Normalises `./a/b/` to `a/b`, relative to the workspace root.
pub(super) fn normalise(rel: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// True if the file or directory exists. A missing path written elsewhere is reported and accepted.
pub(super) fn exists_or_written_elsewhere(rel: &str) -> bool {
    let rel = normalise(rel);
    if root().join(&rel).exists() {
        return true;
    }
    if written_elsewhere(&rel) {
        eprintln!("note: {rel} does not exist yet (written in parallel); its check is skipped");
        return true;
    }
    false
}

/// Whether `rel`, one of the paths written in parallel, exists yet (with a note while it does not).
pub(super) fn written_yet(rel: &str) -> bool {
    assert!(
        written_elsewhere(rel),
        "{rel} is not written in parallel: it must exist"
    );
    let exists = root().join(rel).exists();
    if !exists {
        eprintln!("note: {rel} does not exist yet (written in parallel); its checks are skipped");
    }
    exists
}

fn written_elsewhere(rel: &str) -> bool {
    WRITTEN_ELSEWHERE
        .iter()
        .any(|w| rel == *w || rel.starts_with(&format!("{w}/")))
}

pub(super) fn yaml(rel: &str) -> Value {
    let mut v: Value = serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    // `<<: *anchor` merge keys, as docker compose applies them.
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: merge keys: {e}"));
    v
}

pub(super) fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

pub(super) fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().map(scalar).collect(),
        Some(other) => vec![scalar(other)],
    }
}
