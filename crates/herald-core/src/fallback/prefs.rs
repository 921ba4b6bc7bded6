//! A user's fallback preferences: per type × channel on/off, quiet hours in an IANA time
//! zone, and the email digest window. Stored as this JSON (`GET`/`PUT /v1/me/preferences`):
//!
//! ```json
//! { "channels": { "comment": { "email": false }, "*": { "push": false } },
//!   "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "Europe/Berlin" },
//!   "digest_window_secs": 3600 }
//! ```
//!
//! A type's own setting wins over the `*` one; a channel not mentioned is on (the server's
//! rules chose it). Preferences only ever remove fallback channels: the in-app inbox always
//! stores the notification.

use chrono::{DateTime, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::rules::Channel;

/// At most this many types in `channels`.
pub const MAX_TYPES: usize = 256;
/// The digest window: one email per user per window, between 1 minute and 1 day.
pub const DIGEST_WINDOW_SECS: (u32, u32) = (60, 86_400);

pub use herald_protocol::prefs::{
    DigestBounds, Preferences, PreferencesSchema, QuietHours, TypeDefaults,
};

use super::rules::{Rules, TypeRule};

/// What a preferences form can offer, from the server's rules: each configured type (sorted,
/// `*` last) with its channels and delay, every channel some rule names (webhook, email, push
/// order), the digest bounds.
pub fn schema(rules: &Rules) -> PreferencesSchema {
    let entry = |kind: &str, r: &TypeRule| TypeDefaults {
        kind: kind.to_owned(),
        channels: r.channels.iter().map(|c| c.as_str().to_owned()).collect(),
        after_ms: u64::try_from(r.after.as_millis()).unwrap_or(u64::MAX),
    };
    let types = rules
        .by_type
        .iter()
        .map(|(k, r)| entry(k, r))
        .chain(rules.default.iter().map(|r| entry("*", r)))
        .collect();
    let (min, max) = DIGEST_WINDOW_SECS;
    PreferencesSchema {
        channels: rules
            .channels()
            .into_iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        types,
        digest_window_secs: DigestBounds { min, max },
    }
}

/// A refused preference: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefsError {
    pub field: String,
    pub message: String,
}

fn perr(field: impl Into<String>, message: impl Into<String>) -> PrefsError {
    PrefsError {
        field: field.into(),
        message: message.into(),
    }
}

fn parse_hhmm(field: &str, s: &str) -> Result<NaiveTime, PrefsError> {
    let ok = s.len() == 5 && s.as_bytes().get(2) == Some(&b':');
    ok.then(|| NaiveTime::parse_from_str(s, "%H:%M").ok())
        .flatten()
        .ok_or_else(|| perr(field, "must be HH:MM (00:00 to 23:59)"))
}

/// What the fallback makes of [`Preferences`].
pub trait PreferencesExt {
    /// Checks everything a `PUT` may set.
    fn validate(&self) -> Result<(), PrefsError>;
    /// Whether the user lets `kind` fall back to `channel`.
    fn allows(&self, kind: &str, channel: Channel) -> bool;
    /// If `now` is within the user's quiet hours, when they end; else `None`.
    fn quiet_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>>;
}

impl PreferencesExt for Preferences {
    fn validate(&self) -> Result<(), PrefsError> {
        if self.channels.len() > MAX_TYPES {
            return Err(perr("channels", format!("at most {MAX_TYPES} types")));
        }
        for (kind, chans) in &self.channels {
            if kind.is_empty() || kind.len() > 64 {
                return Err(perr("channels", "a type must be 1 to 64 characters"));
            }
            for c in chans.keys() {
                if Channel::parse(c).is_none() {
                    return Err(perr(
                        format!("channels.{kind}"),
                        format!("unknown channel {c:?} (webhook, email or push)"),
                    ));
                }
            }
        }
        if let Some(q) = &self.quiet_hours {
            parse_quiet(q)?;
        }
        if let Some(w) = self.digest_window_secs {
            let (lo, hi) = DIGEST_WINDOW_SECS;
            if !(lo..=hi).contains(&w) {
                return Err(perr(
                    "digest_window_secs",
                    format!("must be between {lo} and {hi}"),
                ));
            }
        }
        Ok(())
    }

    fn allows(&self, kind: &str, channel: Channel) -> bool {
        let of = |k: &str| {
            self.channels
                .get(k)
                .and_then(|m| m.get(channel.as_str()))
                .copied()
        };
        of(kind).or_else(|| of("*")).unwrap_or(true)
    }

    fn quiet_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (start, end, tz) = parse_quiet(self.quiet_hours.as_ref()?).ok()?;
        quiet_until(start, end, tz, now)
    }
}

/// The start, end and zone of quiet hours, checked.
pub fn parse_quiet(q: &QuietHours) -> Result<(NaiveTime, NaiveTime, Tz), PrefsError> {
    let start = parse_hhmm("quiet_hours.start", &q.start)?;
    let end = parse_hhmm("quiet_hours.end", &q.end)?;
    if start == end {
        return Err(perr("quiet_hours.end", "must differ from start"));
    }
    let tz: Tz = q.time_zone.parse().map_err(|_| {
        perr(
            "quiet_hours.time_zone",
            format!("{:?} is not an IANA time zone name", q.time_zone),
        )
    })?;
    Ok((start, end, tz))
}

fn in_window(t: NaiveTime, start: NaiveTime, end: NaiveTime) -> bool {
    if start < end {
        t >= start && t < end
    } else {
        t >= start || t < end
    }
}

/// Quiet from `start` to `end` local time in `tz`: if `now` is quiet, the first instant at
/// or after `now` that is not (the next local `end`; across a DST gap, the first valid
/// instant after it).
pub fn quiet_until(
    start: NaiveTime,
    end: NaiveTime,
    tz: Tz,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&tz);
    let t = local.time().with_nanosecond(0)?;
    if !in_window(t, start, end) {
        return None;
    }
    let mut day = local.date_naive();
    if t >= end {
        day = day.succ_opt()?;
    }
    // The local `end` of that day. In a DST gap it does not exist, and the first valid
    // instant after it may still be quiet: step on by minutes until it is not (bounded).
    let mut naive = day.and_time(end);
    for _ in 0..3_000 {
        match tz.from_local_datetime(&naive).earliest() {
            Some(at) if at.with_timezone(&Utc) <= now => {
                naive = naive.checked_add_signed(chrono::Duration::days(1))?;
            }
            Some(at) if !in_window(at.time(), start, end) => return Some(at.with_timezone(&Utc)),
            _ => naive = naive.checked_add_signed(chrono::Duration::minutes(1))?,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prefs(json: serde_json::Value) -> Preferences {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn schema_lists_types_sorted_star_last_with_their_channels() {
        let entries: Vec<String> = "*:webhook:1h, dm:email+webhook:30s, comment:push:250ms"
            .split(',')
            .map(str::to_owned)
            .collect();
        let s = schema(&Rules::parse(&entries).unwrap());
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({
                "channels": ["webhook", "email", "push"],
                "types": [
                    { "type": "comment", "channels": ["push"], "after_ms": 250 },
                    { "type": "dm", "channels": ["webhook", "email"], "after_ms": 30000 },
                    { "type": "*", "channels": ["webhook"], "after_ms": 3600000 },
                ],
                "digest_window_secs": { "min": 60, "max": 86400 },
            })
        );
        let empty = schema(&Rules::default());
        assert!(empty.channels.is_empty() && empty.types.is_empty());
    }

    proptest! {
        /// Every type's channels are among the listed ones; one entry per rule.
        #[test]
        fn schema_channels_cover_every_type(
            rules in proptest::collection::btree_map(
                "[a-z*]{1,4}",
                (proptest::sample::subsequence(vec!["webhook", "email", "push"], 1..=3), 0u64..86_400),
                0..8,
            )
        ) {
            let entries: Vec<String> = rules
                .iter()
                .map(|(k, (chs, after))| format!("{k}:{}:{after}s", chs.join("+")))
                .collect();
            let parsed = Rules::parse(&entries).unwrap();
            let s = schema(&parsed);
            prop_assert_eq!(s.types.len(), rules.len());
            for t in &s.types {
                prop_assert!(!t.channels.is_empty());
                for c in &t.channels {
                    prop_assert!(s.channels.contains(c));
                }
            }
        }
    }

    #[test]
    fn type_setting_wins_over_star_and_default_is_on() {
        let p = prefs(serde_json::json!({
            "channels": { "comment": { "email": true }, "*": { "email": false, "push": false } }
        }));
        assert!(p.allows("comment", Channel::Email));
        assert!(!p.allows("dm", Channel::Email));
        assert!(!p.allows("comment", Channel::Push));
        assert!(p.allows("dm", Channel::Webhook));
    }

    #[test]
    fn bad_preferences_are_refused_naming_the_field() {
        for (json, field) in [
            (
                serde_json::json!({"channels": {"dm": {"fax": true}}}),
                "channels.dm",
            ),
            (
                serde_json::json!({"quiet_hours": {"start": "25:00", "end": "07:00", "time_zone": "UTC"}}),
                "quiet_hours.start",
            ),
            (
                serde_json::json!({"quiet_hours": {"start": "22:00", "end": "7:00", "time_zone": "UTC"}}),
                "quiet_hours.end",
            ),
            (
                serde_json::json!({"quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Mars/Olympus"}}),
                "quiet_hours.time_zone",
            ),
            (
                serde_json::json!({"quiet_hours": {"start": "22:00", "end": "22:00", "time_zone": "UTC"}}),
                "quiet_hours.end",
            ),
            (
                serde_json::json!({"digest_window_secs": 5}),
                "digest_window_secs",
            ),
        ] {
            let e = prefs(json.clone()).validate().unwrap_err();
            assert_eq!(e.field, field, "{json}");
        }
    }

    #[test]
    fn quiet_hours_in_berlin_wrap_midnight() {
        let p = prefs(serde_json::json!({
            "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "Europe/Berlin" }
        }));
        // 2026-01-15 23:30 Berlin = 22:30 UTC → quiet until 07:00 Berlin = 06:00 UTC.
        let now = Utc.with_ymd_and_hms(2026, 1, 15, 22, 30, 0).unwrap();
        assert_eq!(
            p.quiet_until(now),
            Some(Utc.with_ymd_and_hms(2026, 1, 16, 6, 0, 0).unwrap())
        );
        // 12:00 UTC = 13:00 Berlin: not quiet.
        assert_eq!(
            p.quiet_until(Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()),
            None
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]
        /// `quiet_until` is Some exactly when the local time is in the window; the instant it
        /// names is later than now, within two days, and not itself quiet.
        #[test]
        fn quiet_until_ends_the_quiet(
            start in 0u32..1440, end in 0u32..1440, secs in 1_600_000_000i64..1_900_000_000,
            zone in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Apia"]),
        ) {
            prop_assume!(start != end);
            let s = NaiveTime::from_hms_opt(start / 60, start % 60, 0).unwrap();
            let e = NaiveTime::from_hms_opt(end / 60, end % 60, 0).unwrap();
            let tz: Tz = zone.parse().unwrap();
            let now = DateTime::from_timestamp(secs, 0).unwrap();
            let local = now.with_timezone(&tz).time();
            match quiet_until(s, e, tz, now) {
                None => prop_assert!(!in_window(local, s, e)),
                Some(at) => {
                    prop_assert!(in_window(local, s, e));
                    prop_assert!(at > now);
                    prop_assert!(at - now <= chrono::Duration::hours(49));
                    let local_at = at.with_timezone(&tz).time();
                    prop_assert!(!in_window(local_at, s, e), "{at} is still quiet");
                }
            }
        }
    }
}
