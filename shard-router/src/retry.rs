//! Waiting out a replica that is down: a partition task runs each replica operation until it succeeds,
//! retrying transient errors with backoff (and reading nothing meanwhile), and gives up on a definite
//! error or when it is told to stop.

use std::future::Future;
use std::time::Duration;

use shared::backoff::Backoff;
use tokio_util::sync::CancellationToken;

use crate::consume::Health;
use crate::error::RouterError;
use crate::metrics as m;

/// Why a partition task's loop ended.
#[derive(Debug)]
pub enum Stop {
    /// Revoked or shutting down.
    Cancelled,
    /// A definite error: the partition stops at it.
    Failed(RouterError),
}

impl From<RouterError> for Stop {
    fn from(e: RouterError) -> Self {
        Stop::Failed(e)
    }
}

/// The retry policy of one partition task.
pub struct Retry {
    pub partition: i32,
    pub cancel: CancellationToken,
    pub health: Health,
    pub max_backoff: Duration,
}

impl Retry {
    /// Runs `op` until it succeeds, retrying transient errors with backoff. A definite error or
    /// cancellation ends the task. An attempt under way is not interrupted by revocation or shutdown:
    /// a replica transaction in flight finishes (commits or fails) before the partition is given up.
    pub async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, Stop>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(100), self.max_backoff);
        let mut failing = false;
        let result = loop {
            if self.cancel.is_cancelled() {
                break Err(Stop::Cancelled);
            }
            match op().await {
                Ok(v) => break Ok(v),
                Err(error) if error.is_retryable() => {
                    metrics::counter!(m::ERRORS, "kind" => error.kind()).increment(1);
                    if !failing {
                        failing = true;
                        self.health.failing(true);
                    }
                    let delay = backoff.next_delay();
                    let waiting = match error {
                        RouterError::Kafka { .. } => "Kafka",
                        _ => "the replica",
                    };
                    tracing::warn!(
                        partition = self.partition,
                        error = shared::service::error_chain(&error),
                        retry_in = ?delay,
                        "{what} failed; waiting for {waiting}"
                    );
                    if let Err(stop) = self.sleep(delay).await {
                        break Err(stop);
                    }
                }
                Err(error) => break Err(Stop::Failed(error)),
            }
        };
        if failing {
            self.health.failing(false);
        }
        result
    }

    /// Sleeps, unless told to stop first.
    pub async fn sleep(&self, delay: Duration) -> Result<(), Stop> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Stop::Cancelled),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }
}
