//! Retries of a failed send: exponential backoff with jitter, and the dead-letter verdict.

use std::time::Duration;

/// `HERALD_FALLBACK_RETRY_*`: the first delay, the longest delay, and how many attempts in
/// all before a job is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this long.
    Retry(Duration),
    /// `max_attempts` reached: the job is dead-lettered.
    DeadLetter,
}

/// The delay before attempt `attempt + 1` after attempt `attempt` (1-based) failed:
/// `min(cap, base · 2^(attempt-1))`, of which the upper half is jittered ("equal jitter"):
/// the result lies in `[d/2, d]`. `jitter` is a sample in `[0, 1)`.
pub fn retry_delay(attempt: u32, policy: &RetryPolicy, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let full = policy
        .base
        .checked_mul(1u32 << exp.min(31))
        .unwrap_or(policy.cap)
        .min(policy.cap);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let half = full / 2;
    half + (full - half).mul_f64(jitter)
}

/// What follows a failed attempt `attempt` (1-based).
pub fn after_failure(attempt: u32, policy: &RetryPolicy, jitter: f64) -> Verdict {
    if attempt >= policy.max_attempts {
        Verdict::DeadLetter
    } else {
        Verdict::Retry(retry_delay(attempt, policy, jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(base_ms: u64, cap_ms: u64, max: u32) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(base_ms),
            cap: Duration::from_millis(cap_ms),
            max_attempts: max,
        }
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let p = policy(1_000, 60_000, 8);
        let full: Vec<u64> = (1..=8)
            .map(|a| retry_delay(a, &p, 1.0).as_millis() as u64)
            .collect();
        assert_eq!(
            full,
            vec![1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(retry_delay(3, &p, 0.0), Duration::from_millis(2_000));
        assert_eq!(after_failure(8, &p, 0.5), Verdict::DeadLetter);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]
        /// Every delay is within [d/2, d] of the un-jittered d, never above the cap; the
        /// un-jittered delay never shrinks from one attempt to the next; only the last allowed
        /// attempt dead-letters.
        #[test]
        fn schedule_is_bounded_and_monotone(
            base in 1u64..10_000, cap in 1u64..1_000_000, max in 1u32..50,
            attempt in 1u32..200, jitter in proptest::num::f64::ANY,
        ) {
            let p = policy(base, cap.max(base), max);
            let full = retry_delay(attempt, &p, 1.0);
            let d = retry_delay(attempt, &p, jitter);
            prop_assert!(d <= full && d >= full / 2);
            prop_assert!(full <= p.cap);
            prop_assert!(retry_delay(attempt + 1, &p, 1.0) >= full);
            match after_failure(attempt, &p, jitter) {
                Verdict::DeadLetter => prop_assert!(attempt >= max),
                Verdict::Retry(r) => { prop_assert!(attempt < max); prop_assert_eq!(r, d); }
            }
        }
    }
}
