//! A publish call's say over one notification's fallback: `priority: critical` and a
//! `fallback` object that replaces the type's rule. Validated at publish, stored with the
//! notification (`notifications.fallback`, NULL when the call said nothing), and read by the
//! planner and the worker.

use std::time::Duration;

use herald_protocol::http::{Priority, PublishFallback};
use serde::{Deserialize, Serialize};

use super::rules::{parse_duration, Channel, Rules, TypeRule};

/// What is stored in `notifications.fallback`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackOverride {
    /// Replaces the rule's channels; empty: no fallback at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    /// Replaces the rule's wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_ms: Option<u64>,
    /// `priority: critical`: no wait unless `after_ms` is given, and quiet hours do not defer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub critical: bool,
}

impl FallbackOverride {
    /// From a publish request's fields; `None` when they change nothing (so nothing is
    /// stored). Errors are `(field, message)`.
    pub fn from_request(
        priority: Option<Priority>,
        fallback: Option<&PublishFallback>,
    ) -> Result<Option<FallbackOverride>, (&'static str, String)> {
        let critical = priority == Some(Priority::Critical);
        let mut out = FallbackOverride {
            critical,
            ..FallbackOverride::default()
        };
        if let Some(f) = fallback {
            if let Some(list) = &f.channels {
                if list.len() > Channel::ALL.len() {
                    return Err(("fallback.channels", "at most 3 channels".to_owned()));
                }
                let mut channels = Vec::with_capacity(list.len());
                for c in list {
                    channels.push(Channel::parse(c).ok_or_else(|| {
                        (
                            "fallback.channels",
                            format!("unknown channel {c:?} (webhook, email or push)"),
                        )
                    })?);
                }
                channels.sort();
                channels.dedup();
                out.channels = Some(channels);
            }
            if let Some(after) = &f.after {
                let d = parse_duration(after).map_err(|e| ("fallback.after", e))?;
                out.after_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            }
        }
        Ok((out != FallbackOverride::default()).then_some(out))
    }

    /// Channels this override names that are not in `available`.
    pub fn unavailable(&self, available: &[Channel]) -> Vec<Channel> {
        self.channels
            .iter()
            .flatten()
            .copied()
            .filter(|c| !available.contains(c))
            .collect()
    }
}

/// The rule that applies to one notification: the type's rule with the publish's override
/// laid over it. `None`: no fallback.
pub fn effective_rule(
    rules: &Rules,
    kind: &str,
    over: Option<&FallbackOverride>,
) -> Option<TypeRule> {
    let base = rules.rule(kind);
    let Some(o) = over else {
        return base.cloned();
    };
    let channels = match &o.channels {
        Some(c) => c.clone(),
        None => base?.channels.clone(),
    };
    if channels.is_empty() {
        return None;
    }
    let after = match (o.after_ms, o.critical) {
        (Some(ms), _) => Duration::from_millis(ms),
        (None, true) => Duration::ZERO,
        (None, false) => base.map_or(Duration::ZERO, |b| b.after),
    };
    Some(TypeRule { channels, after })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules() -> Rules {
        Rules::parse(&["dm:webhook:30s".to_owned()]).unwrap()
    }

    fn fb(channels: Option<&[&str]>, after: Option<&str>) -> PublishFallback {
        PublishFallback {
            channels: channels.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
            after: after.map(str::to_owned),
        }
    }

    #[test]
    fn nothing_said_stores_nothing() {
        assert_eq!(FallbackOverride::from_request(None, None), Ok(None));
        assert_eq!(
            FallbackOverride::from_request(Some(Priority::Normal), Some(&fb(None, None))),
            Ok(None)
        );
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        let e = FallbackOverride::from_request(None, Some(&fb(Some(&["fax"]), None))).unwrap_err();
        assert_eq!(e.0, "fallback.channels");
        let e = FallbackOverride::from_request(None, Some(&fb(Some(&["webhook+email"]), None)))
            .unwrap_err();
        assert_eq!(e.0, "fallback.channels", "{e:?}");
        let e = FallbackOverride::from_request(None, Some(&fb(None, Some("2d")))).unwrap_err();
        assert_eq!(e.0, "fallback.after");
        let e = FallbackOverride::from_request(None, Some(&fb(None, Some("25h")))).unwrap_err();
        assert_eq!(e.0, "fallback.after");
    }

    #[test]
    fn critical_skips_the_wait_and_an_after_wins() {
        let r = rules();
        let crit = FallbackOverride::from_request(Some(Priority::Critical), None)
            .unwrap()
            .unwrap();
        let rule = effective_rule(&r, "dm", Some(&crit)).unwrap();
        assert_eq!(rule.after, Duration::ZERO);
        assert_eq!(rule.channels, vec![Channel::Webhook]);
        // No rule for the type and no channels named: nothing to send, critical or not.
        assert_eq!(effective_rule(&r, "other", Some(&crit)), None);
        let o = FallbackOverride::from_request(
            Some(Priority::Critical),
            Some(&fb(Some(&["email", "webhook"]), Some("5s"))),
        )
        .unwrap()
        .unwrap();
        let rule = effective_rule(&r, "other", Some(&o)).unwrap();
        assert_eq!(rule.after, Duration::from_secs(5));
        assert_eq!(rule.channels, vec![Channel::Webhook, Channel::Email]);
        let off = FallbackOverride::from_request(None, Some(&fb(Some(&[]), None)))
            .unwrap()
            .unwrap();
        assert_eq!(effective_rule(&r, "dm", Some(&off)), None);
    }

    proptest! {
        /// Stored and read back, an override means the same; without one the type's rule applies.
        #[test]
        fn round_trips_through_json(ch in proptest::option::of(proptest::sample::subsequence(vec!["webhook", "email", "push"], 0..=3)),
                                    after in proptest::option::of(0u64..86_400_000), critical in any::<bool>()) {
            let o = FallbackOverride {
                channels: ch.map(|c| c.iter().filter_map(|s| Channel::parse(s)).collect()),
                after_ms: after,
                critical,
            };
            let json = serde_json::to_value(&o).unwrap();
            let back: FallbackOverride = serde_json::from_value(json).unwrap();
            prop_assert_eq!(&back, &o);
            let r = rules();
            prop_assert_eq!(effective_rule(&r, "dm", None), r.rule("dm").cloned());
            if let Some(rule) = effective_rule(&r, "dm", Some(&o)) {
                prop_assert!(!rule.channels.is_empty());
                if let Some(ms) = o.after_ms { prop_assert_eq!(rule.after, Duration::from_millis(ms)); }
            }
        }
    }
}
