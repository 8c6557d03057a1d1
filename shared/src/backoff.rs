//! Exponential backoff for reconnect loops.

use std::time::Duration;

/// Doubles from `initial` up to `max`, with up to 20% jitter so many processes do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = base.mul_f64(f64::from(nanos % 200) / 1000.0);
        (base + jitter).min(self.max + self.max / 5)
    }

    /// Back to the initial wait (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(waits[0] >= Duration::from_millis(100) && waits[0] < Duration::from_millis(121));
        assert!(waits[1] >= Duration::from_millis(200));
        assert!(waits[5] >= Duration::from_secs(1) && waits[5] <= Duration::from_millis(1200));
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(121));
    }
}
