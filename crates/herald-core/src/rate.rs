//! Token-bucket rate limiting, pure: time is an input, so the decisions are property-tested.
//!
//! A [`Rate`] is shared by every bucket it governs (one per socket, per client address, per
//! user, per service key); a [`TokenBucket`] holds only its tokens and when it last refilled,
//! so a bucket per idle socket costs 24 bytes.

use std::time::{Duration, Instant};

/// Sustained requests per second and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_sec: f64,
    burst: f64,
}

impl Rate {
    /// `per_sec` and `burst` are clamped to at least 1 (a zero rate would never refill).
    pub fn new(per_sec: u32, burst: u32) -> Rate {
        Rate {
            per_sec: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
        }
    }

    pub fn per_sec(&self) -> f64 {
        self.per_sec
    }

    pub fn burst(&self) -> f64 {
        self.burst
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A bucket with its whole burst available.
    pub fn full(rate: &Rate, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: rate.burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: &Rate, now: Instant) {
        // A clock that went backwards (never with Instant, but cheap to guard) refills nothing.
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.burst);
        self.at = self.at.max(now);
    }

    /// Takes one token: `Ok` if there was one, otherwise how long until there will be.
    pub fn take(&mut self, rate: &Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        // The tolerance absorbs nanosecond rounding for a client pacing exactly at the rate.
        if self.tokens >= 1.0 - 1e-6 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate.per_sec))
        }
    }

    /// Whether the bucket is back to its full burst: it then says nothing a fresh bucket
    /// would not, so a table of buckets may forget it.
    pub fn is_full(&self, rate: &Rate, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, now);
        b.tokens >= rate.burst
    }
}

/// Whole seconds to put in `Retry-After` for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_burst_then_the_rate() {
        let rate = Rate::new(10, 5);
        let t0 = Instant::now();
        let mut b = TokenBucket::full(&rate, t0);
        for _ in 0..5 {
            assert!(b.take(&rate, t0).is_ok());
        }
        let wait = b.take(&rate, t0).expect_err("the burst is spent");
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert!(b.take(&rate, t0 + Duration::from_millis(100)).is_ok());
        assert!(!b.is_full(&rate, t0 + Duration::from_millis(100)));
        assert!(b.is_full(&rate, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }

    proptest! {
        /// Over any schedule of attempts, no window lets through more than the burst plus
        /// the rate times its length, and a refused attempt's wait is enough.
        #[test]
        fn never_more_than_burst_plus_rate_times_time(
            per_sec in 1u32..1_000,
            burst in 1u32..200,
            gaps_us in proptest::collection::vec(0u64..50_000, 1..400),
        ) {
            let rate = Rate::new(per_sec, burst);
            let t0 = Instant::now();
            let mut b = TokenBucket::full(&rate, t0);
            let mut now = t0;
            let mut taken: Vec<Instant> = Vec::new();
            for gap in gaps_us {
                now += Duration::from_micros(gap);
                match b.take(&rate, now) {
                    Ok(()) => taken.push(now),
                    Err(wait) => {
                        let mut probe = b;
                        prop_assert!(probe.take(&rate, now + wait + Duration::from_micros(1)).is_ok());
                    }
                }
            }
            // Check every window that starts at an accepted attempt.
            for (i, start) in taken.iter().enumerate() {
                for (j, end) in taken.iter().enumerate().skip(i) {
                    let secs = end.duration_since(*start).as_secs_f64();
                    let allowed = rate.burst() + rate.per_sec() * secs + 1e-6;
                    prop_assert!((j - i + 1) as f64 <= allowed,
                        "{} accepted in {secs}s (burst {burst}, {per_sec}/s)", j - i + 1);
                }
            }
        }

        /// A client that waits as told is always let through eventually and never starved.
        #[test]
        fn a_client_pacing_at_the_rate_is_never_refused(per_sec in 1u32..1_000, burst in 1u32..50, n in 1usize..300) {
            let rate = Rate::new(per_sec, burst);
            let t0 = Instant::now();
            let mut b = TokenBucket::full(&rate, t0);
            let step = Duration::from_secs_f64(1.0 / f64::from(per_sec));
            for i in 0..n {
                let now = t0 + step * (i as u32 + 1);
                prop_assert!(b.take(&rate, now).is_ok(), "attempt {i} refused");
            }
        }
    }
}
