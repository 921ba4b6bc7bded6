//! Key slots and the slot map: which master owns which of the 16,384 slots. Pure.

use super::resp::Value;

/// Slots in a Redis Cluster.
pub(crate) const SLOTS: u16 = 16_384;

/// CRC16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster uses for slots.
pub(crate) fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of a key or shard channel: CRC16 of the hash tag (the part between the first `{`
/// and the next `}`, when not empty) or of the whole name, modulo 16,384.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS
}

/// Which master serves every slot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SlotMap {
    /// Master addresses (`host:port`), sorted, no duplicates.
    masters: Vec<String>,
    /// `(first, last, index into masters)`, sorted by `first`, not overlapping.
    ranges: Vec<(u16, u16, usize)>,
}

/// A topology reply that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable CLUSTER SLOTS reply: {0}")]
pub(crate) struct SlotMapError(pub(crate) String);

impl SlotMap {
    /// Builds the map from `(first, last, master address)` ranges. Overlapping ranges or slots
    /// past 16,383 are refused; uncovered slots are allowed (`owner` answers `None`).
    pub(crate) fn from_ranges(
        input: impl IntoIterator<Item = (u16, u16, String)>,
    ) -> Result<SlotMap, SlotMapError> {
        let mut raw: Vec<(u16, u16, String)> = input.into_iter().collect();
        raw.sort_by_key(|r| r.0);
        let mut masters: Vec<String> = raw.iter().map(|r| r.2.clone()).collect();
        masters.sort();
        masters.dedup();
        let mut ranges = Vec::with_capacity(raw.len());
        let mut next_free: u32 = 0;
        for (first, last, addr) in raw {
            if first > last || last >= SLOTS {
                return Err(SlotMapError(format!("bad range {first}-{last}")));
            }
            if u32::from(first) < next_free {
                return Err(SlotMapError(format!("range {first}-{last} overlaps")));
            }
            next_free = u32::from(last) + 1;
            let idx = masters
                .binary_search(&addr)
                .map_err(|_| SlotMapError("master index".to_owned()))?;
            ranges.push((first, last, idx));
        }
        Ok(SlotMap { masters, ranges })
    }

    /// Parses a `CLUSTER SLOTS` reply: `[[first, last, [host, port, id, ..], replicas..], ..]`.
    /// An empty host (`""`, or `?` for an unknown endpoint) is replaced by `seed_host`, the
    /// host the reply came from.
    pub(crate) fn from_cluster_slots(
        reply: &Value,
        seed_host: &str,
    ) -> Result<SlotMap, SlotMapError> {
        let bad = |what: &str| SlotMapError(what.to_owned());
        let entries = reply.as_array().ok_or_else(|| bad("not an array"))?;
        let mut ranges = Vec::with_capacity(entries.len());
        for e in entries {
            let e = e.as_array().ok_or_else(|| bad("entry not an array"))?;
            let (Some(first), Some(last), Some(master)) = (
                e.first().and_then(Value::as_int),
                e.get(1).and_then(Value::as_int),
                e.get(2).and_then(Value::as_array),
            ) else {
                return Err(bad("entry without first, last and master"));
            };
            let host = master
                .first()
                .and_then(Value::as_str)
                .ok_or_else(|| bad("master without host"))?;
            let host = if host.is_empty() || host == "?" {
                seed_host
            } else {
                host
            };
            let port = master
                .get(1)
                .and_then(Value::as_int)
                .filter(|p| (1..=65_535).contains(p))
                .ok_or_else(|| bad("master without a port"))?;
            let first = u16::try_from(first).map_err(|_| bad("slot out of range"))?;
            let last = u16::try_from(last).map_err(|_| bad("slot out of range"))?;
            ranges.push((first, last, format!("{host}:{port}")));
        }
        SlotMap::from_ranges(ranges)
    }

    /// The master that owns `slot`, if any.
    pub(crate) fn owner(&self, slot: u16) -> Option<&str> {
        let i = self.ranges.partition_point(|r| r.0 <= slot);
        let (_, last, idx) = *self.ranges.get(i.checked_sub(1)?)?;
        (slot <= last).then(|| self.masters.get(idx).map(String::as_str))?
    }

    /// The master that owns `channel`'s slot.
    pub(crate) fn owner_of(&self, channel: &str) -> Option<&str> {
        self.owner(key_slot(channel.as_bytes()))
    }

    /// Every master, sorted.
    pub(crate) fn masters(&self) -> &[String] {
        &self.masters
    }

    /// Whether every slot has an owner.
    pub(crate) fn is_complete(&self) -> bool {
        let mut next: u32 = 0;
        for (first, last, _) in &self.ranges {
            if u32::from(*first) != next {
                return false;
            }
            next = u32::from(*last) + 1;
        }
        next == u32::from(SLOTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc16_matches_the_redis_cluster_spec() {
        // The reference value from the cluster specification, and slots `redis-cli cluster
        // keyslot` prints.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12_182);
        assert_eq!(key_slot(b"bar"), 5_061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn parses_cluster_slots() {
        let node = |h: &str, p: i64| Value::Array(Some(vec![bulk(h), Value::Int(p), bulk("id")]));
        let reply = Value::Array(Some(vec![
            Value::Array(Some(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("127.0.0.1", 7002),
                node("127.0.0.1", 7005),
            ])),
            Value::Array(Some(vec![Value::Int(0), Value::Int(5460), node("", 7001)])),
            Value::Array(Some(vec![
                Value::Int(10923),
                Value::Int(16383),
                node("127.0.0.1", 7003),
            ])),
        ]));
        let map = SlotMap::from_cluster_slots(&reply, "10.0.0.1").unwrap();
        assert!(map.is_complete());
        assert_eq!(map.owner(0), Some("10.0.0.1:7001"));
        assert_eq!(map.owner(5461), Some("127.0.0.1:7002"));
        assert_eq!(map.owner(16383), Some("127.0.0.1:7003"));
        assert_eq!(map.masters().len(), 3);
        assert!(SlotMap::from_cluster_slots(&Value::Int(1), "h").is_err());
    }

    #[test]
    fn overlaps_and_holes() {
        assert!(SlotMap::from_ranges([(0, 10, "a".into()), (10, 20, "b".into())]).is_err());
        assert!(SlotMap::from_ranges([(0, SLOTS, "a".into())]).is_err());
        let holes = SlotMap::from_ranges([(0, 10, "a".into()), (20, 16_383, "b".into())]).unwrap();
        assert!(!holes.is_complete());
        assert_eq!(holes.owner(15), None);
        assert_eq!(holes.owner(10), Some("a"));
        assert_eq!(holes.owner(20), Some("b"));
    }

    /// A random complete partition of the slots over up to 6 masters.
    fn partition() -> impl Strategy<Value = Vec<(u16, u16, String)>> {
        proptest::collection::btree_set(1..SLOTS, 0..12).prop_flat_map(|cuts| {
            let mut bounds: Vec<u16> = vec![0];
            bounds.extend(cuts);
            bounds.push(SLOTS);
            let n = bounds.len() - 1;
            proptest::collection::vec(0..6usize, n).prop_map(move |owners| {
                bounds
                    .windows(2)
                    .zip(owners)
                    .map(|(w, o)| (w[0], w[1] - 1, format!("127.0.0.1:{}", 7001 + o)))
                    .collect()
            })
        })
    }

    proptest! {
        /// Every slot is owned by exactly the range that contains it, whatever the order the
        /// ranges came in.
        #[test]
        fn owner_is_the_range_that_holds_the_slot(mut ranges in partition(), slot in 0..SLOTS, seed in any::<u64>()) {
            let want = ranges.iter().find(|r| r.0 <= slot && slot <= r.1).map(|r| r.2.clone());
            let len = ranges.len();
            ranges.rotate_left((seed as usize) % len);
            let map = SlotMap::from_ranges(ranges).unwrap();
            prop_assert!(map.is_complete());
            prop_assert_eq!(map.owner(slot).map(str::to_owned), want);
        }

        #[test]
        fn a_hash_tag_decides_the_slot(tag in "[a-z0-9]{1,12}", a in "[a-z:]{0,8}", b in "[a-z:]{0,8}") {
            let key = format!("{a}{{{tag}}}{b}");
            prop_assert_eq!(key_slot(key.as_bytes()), key_slot(tag.as_bytes()));
            prop_assert!(key_slot(key.as_bytes()) < SLOTS);
        }
    }
}
