//! Steady mode: a realistic mix of small transactions at a fixed rate, until the duration ends or
//! SIGTERM/SIGINT. Which operation runs and on which rows is drawn from the seed; the timestamps are
//! the wall clock's, so steady data is plausible "now" rather than reproducible.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::ops::{self, Op};
use crate::progress::{say, Progress};
use crate::rng::Rng;
use crate::rows::Ids;
use crate::session::Session;

/// The stream id of steady mode's choices (see [`Rng::stream`]).
const STREAM_STEADY: u64 = 2;

/// How long one transaction may take before the connection is considered dead.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// After falling this far behind the schedule (a slow or unreachable database), the schedule
/// restarts from now instead of bursting to catch up.
const MAX_LAG: Duration = Duration::from_secs(1);

/// What steady mode does, with how often (out of 100).
pub const MIX: [(Op, u64); 12] = [
    (Op::Signup, 3),
    (Op::NewUser, 12),
    (Op::Activity, 35),
    (Op::PlanChange, 6),
    (Op::SeatsChange, 5),
    (Op::InvoiceIssued, 12),
    (Op::InvoicePaid, 12),
    (Op::PaymentFailed, 2),
    (Op::Cancellation, 3),
    (Op::UserDeleted, 3),
    (Op::EventsPruned, 2),
    (Op::ProfileUpdated, 5),
];

/// How a steady run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub transactions: u64,
    pub rows: u64,
    /// Committed transactions per operation.
    pub by_op: BTreeMap<Op, u64>,
    /// SIGTERM/SIGINT stopped it (rather than `--duration`).
    pub interrupted: bool,
}

/// The next operation: a sign-up while there is no organization, otherwise one from [`MIX`].
pub fn choose(rng: &mut Rng, has_organizations: bool) -> Op {
    if !has_organizations {
        return Op::Signup;
    }
    rng.weighted(&MIX).copied().unwrap_or(Op::Activity)
}

/// Runs `rate` transactions per second until `duration` has passed (forever without it) or `cancel`
/// fires. A transaction cut by a lost connection is rolled back by the server and skipped; the
/// connection is re-opened with backoff and the schedule goes on.
pub async fn run(
    session: &mut Session,
    seed: u64,
    rate: f64,
    duration: Option<Duration>,
    cancel: &CancellationToken,
) -> Result<Outcome, Error> {
    let mut rng = Rng::stream(seed, STREAM_STEADY, 0);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let mut next = start;
    let mut progress = Progress::new("steady");
    let mut by_op = BTreeMap::new();
    let mut interrupted = false;
    let mut behind = false;
    loop {
        // Priority: shutdown, then the end of the run, then the next transaction.
        let wake = deadline.map_or(next, |d| next.min(d));
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                interrupted = true;
                break;
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let op = choose(&mut rng, session.ids.organization > 1);
        let mut ids = session.ids.clone();
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                interrupted = true;
                break;
            }
            r = tokio::time::timeout(TRANSACTION_TIMEOUT, perform(&mut session.client, &mut rng, &mut ids, op)) => {
                r.unwrap_or_else(|_| Err(Error::Timeout { what: format!("{} transaction", op.name()), after: TRANSACTION_TIMEOUT }))
            }
        };
        match result {
            Ok((done, rows)) => {
                session.ids = ids;
                *by_op.entry(done).or_insert(0) += 1;
                progress.committed(rows);
            }
            Err(error) if error.is_retryable() => {
                if !session.reconnect(&error, cancel).await? {
                    interrupted = true;
                    break;
                }
            }
            Err(error) => return Err(error),
        }
        next += interval;
        let now = Instant::now();
        if now > next + MAX_LAG {
            if !behind && session.reconnects == 0 {
                behind = true;
                tracing::warn!(
                    rate,
                    "cannot keep up with --rate on one connection: transactions take longer than \
                     the schedule allows; the progress lines show the rate reached"
                );
            }
            next = now;
        }
        progress.tick("");
    }
    let mut detail: Vec<String> = by_op
        .iter()
        .map(|(op, n)| format!("{} {n}", op.name()))
        .collect();
    if session.reconnects > 0 {
        detail.push(format!("reconnects {}", session.reconnects));
    }
    let note = if interrupted { " (interrupted)" } else { "" };
    say(&progress.summary(&format!("{note}: {}", detail.join(", "))));
    Ok(Outcome {
        transactions: progress.transactions,
        rows: progress.rows,
        by_op,
        interrupted,
    })
}

/// One transaction of `op`; returns the operation done (an operation with nothing to work on falls
/// back to [`Op::Activity`]) and the rows it wrote.
async fn perform(
    client: &mut Client,
    rng: &mut Rng,
    ids: &mut Ids,
    op: Op,
) -> Result<(Op, u64), Error> {
    let what = format!("{} transaction", op.name());
    let tx = client.transaction().await.map_err(Error::sql(&what))?;
    let (done, rows) = match ops::apply(&tx, rng, ids, op).await? {
        Some(rows) => (op, rows),
        None => {
            let rows = ops::apply(&tx, rng, ids, Op::Activity).await?.unwrap_or(0);
            (Op::Activity, rows)
        }
    };
    tx.commit().await.map_err(Error::sql(&what))?;
    Ok((done, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_adds_up_and_is_reproducible() {
        assert_eq!(MIX.iter().map(|(_, w)| w).sum::<u64>(), 100);
        let draw = |seed| {
            let mut rng = Rng::stream(seed, STREAM_STEADY, 0);
            (0..1000)
                .map(|_| choose(&mut rng, true))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
        let ops = draw(42);
        for (op, _) in MIX {
            assert!(ops.contains(&op), "{op:?} never drawn in 1000 transactions");
        }
        assert_eq!(choose(&mut Rng::new(1), false), Op::Signup);
    }
}
