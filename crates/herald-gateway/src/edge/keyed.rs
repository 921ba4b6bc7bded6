//! Token buckets by key: per user for the user API, per service key for publish and
//! broadcast. Per node: behind a round-robin balancer a user's effective limit is the node
//! count times this.
//!
//! Bounded: at capacity, buckets that are full again (they say nothing a fresh one would not)
//! are forgotten; if every bucket is still in use, a new key is refused with the wait of a
//! full refill (overflow policy: refuse the newcomer, never forget a bucket that is limiting).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_core::rate::{Rate, TokenBucket};

pub struct KeyedLimiter<K> {
    rate: Rate,
    capacity: usize,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq> KeyedLimiter<K> {
    pub fn new(rate: Rate, capacity: usize) -> KeyedLimiter<K> {
        KeyedLimiter {
            rate,
            capacity: capacity.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; `Err(wait)` when it has none left.
    pub fn check(&self, key: K) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: K, now: Instant) -> Result<(), Duration> {
        let rate = self.rate;
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !map.contains_key(&key) && map.len() >= self.capacity {
            map.retain(|_, b| !b.is_full(&rate, now));
            if map.len() >= self.capacity {
                return Err(Duration::from_secs_f64(rate.burst() / rate.per_sec()));
            }
        }
        map.entry(key)
            .or_insert_with(|| TokenBucket::full(&rate, now))
            .take(&rate, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_limited_independently_and_the_table_is_bounded() {
        let l: KeyedLimiter<&str> = KeyedLimiter::new(Rate::new(1, 2), 2);
        let t0 = Instant::now();
        assert!(l.check_at("a", t0).is_ok());
        assert!(l.check_at("a", t0).is_ok());
        assert!(l.check_at("a", t0).is_err(), "a's burst is spent");
        assert!(l.check_at("b", t0).is_ok(), "b has its own bucket");
        // Full table, both buckets in use: a newcomer is refused.
        assert!(l.check_at("c", t0).is_err());
        // Later the buckets are full again and forgotten: c gets one.
        assert!(l.check_at("c", t0 + Duration::from_secs(5)).is_ok());
    }
}
