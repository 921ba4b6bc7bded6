//! Verification and figures: what was acknowledged against what PostgreSQL holds and what
//! each client received; percentiles, histograms, and the results file.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;

use serde_json::{json, Value};

use crate::clients::ClientReport;
use crate::publisher::Acked;
use crate::settings::{target_dir, variant};

/// User → max seq in PostgreSQL.
pub fn max_seqs(pg: &HashMap<String, Vec<(i64, String)>>) -> HashMap<String, i64> {
    pg.iter()
        .map(|(u, v)| (u.clone(), v.last().map(|x| x.0).unwrap_or(0)))
        .collect()
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub published_acked: usize,
    /// Acknowledged notifications not in PostgreSQL.
    pub acked_missing_in_pg: usize,
    /// Per socket: committed notifications of its user the socket does not hold.
    pub missing_on_clients: usize,
    /// Per socket: notifications held that PostgreSQL does not have for its user.
    pub extra_on_clients: usize,
    pub duplicates: u64,
    pub order_violations: u64,
    pub resyncs: u64,
    pub terminal_closes: usize,
    pub pg_rows: usize,
    pub pg_gaps: usize,
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn json(&self) -> Value {
        json!({
            "published_acked": self.published_acked,
            "acked_missing_in_pg": self.acked_missing_in_pg,
            "lost_on_clients": self.missing_on_clients,
            "extra_on_clients": self.extra_on_clients,
            "duplicates": self.duplicates,
            "order_violations": self.order_violations,
            "resyncs": self.resyncs,
            "terminal_closes": self.terminal_closes,
            "pg_rows": self.pg_rows,
            "pg_seq_gaps": self.pg_gaps,
        })
    }
}

/// The invariant: every acked publish is in PostgreSQL; every client holds exactly its user's
/// committed notifications, each once, in seq order.
pub fn verify(
    acked: &[Acked],
    pg: &HashMap<String, Vec<(i64, String)>>,
    clients: &[ClientReport],
) -> Verdict {
    let mut v = Verdict {
        published_acked: acked.len(),
        ..Default::default()
    };
    let mut pg_ids: HashMap<&str, (&str, i64)> = HashMap::new();
    for (u, rows) in pg {
        v.pg_rows += rows.len();
        for (i, (seq, id)) in rows.iter().enumerate() {
            if *seq != i as i64 + 1 {
                v.pg_gaps += 1;
            }
            pg_ids.insert(id.as_str(), (u.as_str(), *seq));
        }
    }
    for a in acked {
        match pg_ids.get(a.id.as_str()) {
            Some((u, s)) if *u == a.user && *s == a.seq => {}
            _ => v.acked_missing_in_pg += 1,
        }
    }
    let empty = Vec::new();
    for c in clients {
        let want = pg.get(&c.user).unwrap_or(&empty);
        v.duplicates += c.duplicates;
        v.order_violations += c.order_violations;
        v.resyncs += c.resyncs;
        if c.terminal_close.is_some() {
            v.terminal_closes += 1;
        }
        if c.held != *want {
            let held: HashSet<&str> = c.held.iter().map(|x| x.1.as_str()).collect();
            let wanted: HashSet<&str> = want.iter().map(|x| x.1.as_str()).collect();
            let missing = wanted.difference(&held).count();
            let extra = held.difference(&wanted).count();
            v.missing_on_clients += missing;
            v.extra_on_clients += extra;
            if missing == 0 && extra == 0 {
                v.order_violations += 1;
            }
        }
    }
    if v.acked_missing_in_pg > 0 {
        v.problems.push(format!(
            "{} acknowledged publishes are not in PostgreSQL",
            v.acked_missing_in_pg
        ));
    }
    if v.pg_gaps > 0 {
        v.problems
            .push(format!("{} seq gaps in PostgreSQL", v.pg_gaps));
    }
    if v.missing_on_clients > 0 {
        v.problems.push(format!(
            "{} (socket, notification) pairs missing on clients",
            v.missing_on_clients
        ));
    }
    if v.extra_on_clients > 0 {
        v.problems.push(format!(
            "{} notifications held by clients that PostgreSQL lacks",
            v.extra_on_clients
        ));
    }
    if v.duplicates > 0 {
        v.problems
            .push(format!("{} duplicate deliveries", v.duplicates));
    }
    if v.order_violations > 0 {
        v.problems
            .push(format!("{} out-of-order deliveries", v.order_violations));
    }
    if v.resyncs > 0 {
        v.problems.push(format!("{} resync events", v.resyncs));
    }
    if v.terminal_closes > 0 {
        v.problems.push(format!(
            "{} sockets got a terminal close",
            v.terminal_closes
        ));
    }
    v
}

/// p50/p90/p99/max of a sample (ms).
pub fn percentiles(xs: &[f64]) -> Value {
    if xs.is_empty() {
        return json!({ "n": 0 });
    }
    let mut s = xs.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| s[((s.len() as f64 - 1.0) * q).round() as usize];
    json!({
        "n": s.len(),
        "min_ms": round1(s[0]),
        "p50_ms": round1(p(0.5)),
        "p90_ms": round1(p(0.9)),
        "p99_ms": round1(p(0.99)),
        "max_ms": round1(s[s.len() - 1]),
    })
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Counts of `ts` (seconds) per bucket of `width` seconds starting at `from`.
pub fn histogram(ts: &[f64], from: f64, width: f64) -> Vec<u64> {
    let mut h: Vec<u64> = Vec::new();
    for &t in ts {
        let b = ((t - from) / width).floor().max(0.0) as usize;
        if h.len() <= b {
            h.resize(b + 1, 0);
        }
        h[b] += 1;
    }
    h
}

pub fn print_histogram(title: &str, h: &[u64], width: f64) {
    eprintln!("[chaos] {title}");
    let max = h.iter().copied().max().unwrap_or(1).max(1);
    for (i, n) in h.iter().enumerate() {
        let bar = "#".repeat(((*n as f64 / max as f64) * 50.0).round() as usize);
        eprintln!(
            "[chaos]   {:>6.2}s–{:<6.2}s {:>5} {bar}",
            i as f64 * width,
            (i + 1) as f64 * width,
            n
        );
    }
}

/// Appends one JSON line to target/chaos-results.jsonl and prints it.
pub fn record(scenario: &str, mut figures: Value) {
    figures["scenario"] = json!(scenario);
    figures["variant"] = json!(variant());
    figures["at"] = json!(chrono::Utc::now().to_rfc3339());
    let line = format!("{figures}\n");
    eprintln!("[chaos] RESULT {}", line.trim_end());
    let path = target_dir().join("chaos-results.jsonl");
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&path) {
        let _ = f.write_all(line.as_bytes());
    }
}
