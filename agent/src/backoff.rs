//! Reconnect delays: exponential, capped, full jitter with a floor.
//! See: https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The next delay: uniform in `[initial/2, min(max, initial * 2^n)]`.
    /// The floor keeps a flapping link from spinning.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self
            .initial
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let floor = self.initial / 2;
        floor + (cap.saturating_sub(floor)).mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_stays_within_bounds() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for n in 0..50 {
            let d = b.next_delay();
            let cap = Duration::from_secs(1u64 << n.min(5)).min(Duration::from_secs(30));
            assert!(
                d >= Duration::from_millis(500) && d <= cap,
                "attempt {n}: {d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
