//! Progress lines (at most one a second) and the closing summary of each phase, on stdout.

use std::io::Write as _;
use std::time::{Duration, Instant};

/// How often a progress line may be printed.
const EVERY: Duration = Duration::from_secs(1);

/// Counts of one phase (`bulk` or `steady`).
#[derive(Debug)]
pub struct Progress {
    phase: &'static str,
    started: Instant,
    last_print: Instant,
    last_rows: u64,
    last_transactions: u64,
    pub rows: u64,
    pub transactions: u64,
}

impl Progress {
    pub fn new(phase: &'static str) -> Progress {
        let now = Instant::now();
        Progress {
            phase,
            started: now,
            last_print: now,
            last_rows: 0,
            last_transactions: 0,
            rows: 0,
            transactions: 0,
        }
    }

    /// Counts a committed transaction of `rows` rows.
    pub fn committed(&mut self, rows: u64) {
        self.transactions += 1;
        self.rows += rows;
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints a progress line if a second has passed since the last one: totals, then the rates
    /// over that second. `detail` comes first (`3/10 organizations`).
    pub fn tick(&mut self, detail: &str) {
        let now = Instant::now();
        let since = now.duration_since(self.last_print);
        if since < EVERY {
            return;
        }
        let secs = since.as_secs_f64();
        let tx_rate = (self.transactions - self.last_transactions) as f64 / secs;
        let row_rate = (self.rows - self.last_rows) as f64 / secs;
        say(&format!(
            "{}: {detail}{} transactions, {} rows ({tx_rate:.1} tx/s, {row_rate:.0} rows/s)",
            self.phase, self.transactions, self.rows
        ));
        self.last_print = now;
        self.last_rows = self.rows;
        self.last_transactions = self.transactions;
    }

    /// The phase's closing line: totals and average rates, then `detail`.
    pub fn summary(&self, detail: &str) -> String {
        let secs = self.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{} done: {} transactions, {} rows in {secs:.1}s ({:.1} tx/s, {:.0} rows/s){detail}",
            self.phase,
            self.transactions,
            self.rows,
            self.transactions as f64 / secs,
            self.rows as f64 / secs
        )
    }
}

/// Prints a line on stdout now (a pipe would otherwise hold it back).
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_totals() {
        let mut p = Progress::new("bulk");
        p.committed(10);
        p.committed(5);
        p.tick("2/2 organizations, "); // too early: prints nothing, keeps the window
        assert_eq!(p.last_transactions, 0);
        let s = p.summary(", 2 organizations");
        assert!(
            s.starts_with("bulk done: 2 transactions, 15 rows in "),
            "{s}"
        );
        assert!(s.ends_with(", 2 organizations"), "{s}");
    }
}
