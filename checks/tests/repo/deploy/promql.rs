//! The metric names the binaries export (read from their `metrics.rs`) and the metric names a
//! PromQL expression refers to.

use std::collections::{BTreeMap, BTreeSet};

use crate::files::read;

/// The metric names a binary exports, read from its `metrics.rs` as text (so this follows the code):
/// every `pub const NAME: &str = "value";`, and which of them are described as histograms.
pub(super) struct Exported {
    pub(super) plain: BTreeSet<String>,
    pub(super) histograms: BTreeSet<String>,
}

pub(super) fn exported_metrics() -> Exported {
    let mut exported = Exported {
        plain: BTreeSet::new(),
        histograms: BTreeSet::new(),
    };
    for rel in ["cdc/src/metrics.rs", "shard-router/src/metrics.rs"] {
        let text = read(rel);
        let mut consts: BTreeMap<String, String> = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("pub const ") else {
                continue;
            };
            let Some((name, value)) = rest.split_once(": &str = ") else {
                continue;
            };
            let value = value
                .trim()
                .strip_suffix(';')
                .and_then(|v| v.strip_prefix('"'))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("{rel}: cannot read {line:?}"));
            consts.insert(name.trim().to_owned(), value.to_owned());
        }
        assert!(consts.len() >= 5, "{rel}: only {consts:?} found");
        let mut histograms = 0;
        for (i, _) in text.match_indices("describe_histogram!(") {
            let after = text[i + "describe_histogram!(".len()..].trim_start();
            let ident: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let name = consts
                .remove(&ident)
                .unwrap_or_else(|| panic!("{rel}: histogram {ident} is not a name constant"));
            exported.histograms.insert(name);
            histograms += 1;
        }
        assert!(histograms >= 1, "{rel}: no describe_histogram! found");
        exported.plain.extend(consts.into_values());
    }
    exported
}

impl Exported {
    /// A series name Prometheus would have: a counter/gauge as is, a histogram as `_bucket`, `_sum`
    /// or `_count` (a histogram has no series under its bare name).
    pub(super) fn check(&self, series: &str) -> Result<(), String> {
        if self.plain.contains(series) {
            return Ok(());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = series.strip_suffix(suffix) {
                if self.histograms.contains(base) {
                    return Ok(());
                }
            }
        }
        if self.histograms.contains(series) {
            return Err(format!(
                "{series} is a histogram: use {series}_bucket, _sum or _count"
            ));
        }
        Err(format!(
            "{series} is not a metric cdc or shard-router exports"
        ))
    }
}

const PROMQL_KEYWORDS: &[&str] = &[
    // binary operators and modifiers
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "group_left",
    "group_right",
    "on",
    "ignoring",
    "by",
    "without",
    "atan2",
    // aggregation operators (also written before `by (...)`, not followed by `(`)
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    // literals and @ modifiers
    "inf",
    "nan",
    "start",
    "end",
];

/// Keywords whose parenthesised list holds label names, not expressions.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression (or Grafana's `label_values(selector, label)`) refers to:
/// identifiers that are not followed by `(` (functions), not keywords, and not inside strings, label
/// matchers `{…}`, ranges `[…]`, label lists `by (…)`, or Grafana variables `$x`/`${x}`.
pub(super) fn promql_metric_names(expr: &str) -> Vec<String> {
    let expr = expr.trim();
    let expr = match expr
        .strip_prefix("label_values(")
        .and_then(|e| e.strip_suffix(')'))
    {
        // label_values(label) names no metric; label_values(selector, label) names the selector's.
        Some(inner) => match inner.rsplit_once(',') {
            Some((selector, _label)) => selector,
            None => "",
        },
        None => expr,
    };
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_to_close = |mut i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '"' || c == '\'' || c == '`' {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            i += 1;
        }
        panic!("unbalanced {open}{close} in {expr:?}");
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '{' {
            i = skip_to_close(i, '{', '}');
        } else if c == '[' {
            i = skip_to_close(i, '[', ']');
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_to_close(i, '{', '}');
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // numbers and durations: 0.99, 1e3, 5m, 0x1f
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let lower = word.to_ascii_lowercase();
            if chars.get(next) == Some(&'(') {
                if LABEL_LISTS.contains(&lower.as_str()) {
                    i = skip_to_close(next, '(', ')');
                }
                // otherwise a function call: its arguments are scanned next
            } else if !PROMQL_KEYWORDS.contains(&lower.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every panel of a dashboard, rows' nested panels included.
pub(super) fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    pub(super) fn walk<'a>(
        list: Option<&'a serde_json::Value>,
        out: &mut Vec<&'a serde_json::Value>,
    ) {
        for p in list.and_then(|l| l.as_array()).into_iter().flatten() {
            out.push(p);
            walk(p.get("panels"), out);
        }
    }
    let mut out = Vec::new();
    walk(dashboard.get("panels"), &mut out);
    out
}

/// (where, expression) for every query of the dashboard: panel targets and template variables.
pub(super) fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?} has a target without expr"));
            queries.push((format!("panel {title:?}"), expr.to_owned()));
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap_or("?");
        let query = match &var["query"] {
            serde_json::Value::String(s) => s.clone(),
            q => q["query"].as_str().unwrap_or_default().to_owned(),
        };
        queries.push((format!("variable ${name}"), query));
    }
    queries
}

#[test]
pub(super) fn metric_name_extractor_skips_labels_functions_and_keywords() {
    let names = |e: &str| promql_metric_names(e);
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (job, le) (rate(router_end_to_end_lag_seconds_bucket{job=~"$router", le!="+Inf"}[$__rate_interval])))"#
        ),
        ["router_end_to_end_lag_seconds_bucket"]
    );
    assert_eq!(
        names(
            "(sum(increase(cdc_errors_total[5m])) or vector(0)) + sum(x_total offset 1h) by (kind)"
        ),
        ["cdc_errors_total", "x_total"]
    );
    assert_eq!(
        names("a_total / on(instance) group_left(shard) b_info * 1e3 > bool 0.5"),
        ["a_total", "b_info"]
    );
    assert_eq!(
        names(r#"sum without (partition) (router_consumer_lag_messages{job="x"}) unless ${var}"#),
        ["router_consumer_lag_messages"]
    );
    assert_eq!(
        names("label_values(router_partitions_assigned, job)"),
        ["router_partitions_assigned"]
    );
    assert!(names("label_values(job)").is_empty());
    assert_eq!(names("{__name__=~\"cdc_.*\"}"), Vec::<String>::new());

    let exported = exported_metrics();
    assert!(exported.check("cdc_events_published_total").is_ok());
    assert!(exported
        .check("router_replica_commit_seconds_bucket")
        .is_ok());
    assert!(exported.check("router_replica_commit_seconds").is_err());
    assert!(exported.check("cdc_events_published_total_bucket").is_err());
    assert!(exported.check("cdc_events_published").is_err());
    assert!(exported.check("up").is_err());
}
