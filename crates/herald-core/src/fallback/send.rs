//! Whether a claimed job is sent now, at the moment of sending: the notification may have
//! been seen since it was planned, the user may have muted the channel, or be in quiet hours.

use chrono::{DateTime, Utc};

use super::prefs::{Preferences, PreferencesExt};
use super::rules::Channel;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendDecision {
    Send,
    /// Never send: why.
    Cancel(&'static str),
    /// Not now (quiet hours): due again then; the attempt does not count.
    Defer(DateTime<Utc>),
}

/// `prefs` is `None` when the user has none stored (or they no longer parse: then the
/// server's rules apply unchanged). `critical` (published with `priority: critical`): quiet
/// hours do not defer it; a channel the user muted stays muted.
pub fn decide_send(
    seen: bool,
    prefs: Option<&Preferences>,
    kind: &str,
    channel: Channel,
    now: DateTime<Utc>,
    critical: bool,
) -> SendDecision {
    if seen {
        return SendDecision::Cancel("seen");
    }
    let Some(p) = prefs else {
        return SendDecision::Send;
    };
    if !p.allows(kind, channel) {
        return SendDecision::Cancel("muted");
    }
    match p.quiet_until(now) {
        Some(at) if !critical => SendDecision::Defer(at),
        _ => SendDecision::Send,
    }
}

/// The stable key of one (notification, channel), the same on every attempt: the
/// `webhook-id`, the push `Topic`, the email `Message-ID` local part.
pub fn delivery_key(notification: uuid::Uuid, channel: Channel) -> String {
    format!("nf_{}_{}", notification.simple(), channel.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Seen always cancels; without preferences, unseen always sends; muted never sends.
        #[test]
        fn seen_and_muted_never_send(seen in any::<bool>(), muted in any::<bool>(), ch in 0usize..3, secs in 1_600_000_000i64..1_900_000_000) {
            let channel = Channel::ALL[ch];
            let now = DateTime::from_timestamp(secs, 0).unwrap();
            let mut p = Preferences::default();
            p.channels.entry("dm".into()).or_default().insert(channel.as_str().into(), !muted);
            let d = decide_send(seen, Some(&p), "dm", channel, now, false);
            if seen {
                prop_assert_eq!(d, SendDecision::Cancel("seen"));
            } else if muted {
                prop_assert_eq!(d, SendDecision::Cancel("muted"));
            } else {
                prop_assert_eq!(d, SendDecision::Send);
            }
            prop_assert_eq!(decide_send(seen, None, "dm", channel, now, false) == SendDecision::Send, !seen);
            // Critical changes neither seen nor muted.
            prop_assert_eq!(decide_send(seen, Some(&p), "dm", channel, now, true), decide_send(seen, Some(&p), "dm", channel, now, false));
        }
    }

    #[test]
    fn quiet_hours_defer() {
        let p: Preferences = serde_json::from_value(serde_json::json!({
            "quiet_hours": {"start": "00:00", "end": "23:59", "time_zone": "UTC"}
        }))
        .unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(
            matches!(decide_send(false, Some(&p), "dm", Channel::Webhook, now, false), SendDecision::Defer(at) if at > now)
        );
        // A critical notification is not held by quiet hours.
        assert_eq!(
            decide_send(false, Some(&p), "dm", Channel::Webhook, now, true),
            SendDecision::Send
        );
    }
}
