//! Per notification type: which fallback channels, after how long.
//!
//! The server's rules come from `HERALD_FALLBACK_TYPES`, a comma-separated list of
//! `<type>:<channel>[+<channel>…]:<after>` entries, e.g.
//! `direct_message:webhook+email:30s, comment:email:15m, *:webhook:1h`. `*` is the rule of
//! every type without its own entry; a type without a rule (and no `*`) never falls back.
//! `<after>` is a number with the unit `ms`, `s`, `m` or `h`, at most [`MAX_AFTER`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The longest `fallback_after`: a day.
pub const MAX_AFTER: Duration = Duration::from_secs(86_400);
/// At most this many entries in `HERALD_FALLBACK_TYPES`.
pub const MAX_RULES: usize = 256;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Webhook,
    Email,
    Push,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Webhook, Channel::Email, Channel::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Push => "push",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fallback of one type: these channels (sorted, no duplicates), after this long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRule {
    pub channels: Vec<Channel>,
    pub after: Duration,
}

/// The server's rules, by type, with the `*` default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub by_type: BTreeMap<String, TypeRule>,
    pub default: Option<TypeRule>,
}

impl Rules {
    /// The rule of `kind`: its own, else the default, else none (no fallback).
    pub fn rule(&self, kind: &str) -> Option<&TypeRule> {
        self.by_type.get(kind).or(self.default.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty() && self.default.is_none()
    }

    /// Every channel some rule names.
    pub fn channels(&self) -> Vec<Channel> {
        let mut all: Vec<Channel> = self
            .by_type
            .values()
            .chain(self.default.iter())
            .flat_map(|r| r.channels.iter().copied())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Parses `HERALD_FALLBACK_TYPES` (already split at commas). Errors name the entry.
    pub fn parse(entries: &[String]) -> Result<Rules, String> {
        if entries.len() > MAX_RULES {
            return Err(format!("at most {MAX_RULES} entries"));
        }
        let mut rules = Rules::default();
        for (i, entry) in entries.iter().enumerate() {
            let n = i + 1;
            let mut parts = entry.split(':').map(str::trim);
            let (Some(kind), Some(channels), Some(after), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!(
                    "entry #{n} {entry:?} is not <type>:<channel>[+<channel>…]:<after>"
                ));
            };
            if kind.is_empty() || kind.len() > 64 {
                return Err(format!("entry #{n}: the type must be 1 to 64 characters"));
            }
            let channels = parse_channels(channels).map_err(|e| format!("entry #{n}: {e}"))?;
            let after = parse_duration(after).map_err(|e| format!("entry #{n}: {e}"))?;
            let rule = TypeRule { channels, after };
            let taken = if kind == "*" {
                rules.default.replace(rule).is_some()
            } else {
                rules.by_type.insert(kind.to_owned(), rule).is_some()
            };
            if taken {
                return Err(format!("entry #{n}: type {kind:?} is given twice"));
            }
        }
        Ok(rules)
    }
}

/// `webhook+email` → sorted, deduplicated channels; at least one.
pub fn parse_channels(s: &str) -> Result<Vec<Channel>, String> {
    let mut out = Vec::new();
    for c in s.split('+').map(str::trim) {
        let ch = Channel::parse(c)
            .ok_or_else(|| format!("unknown channel {c:?} (webhook, email or push)"))?;
        out.push(ch);
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err("no channel".to_owned());
    }
    Ok(out)
}

/// `250ms`, `30s`, `15m`, `2h` → a duration of at most [`MAX_AFTER`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 15m, 250ms or 2h"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    };
    if d > MAX_AFTER {
        return Err(format!("{s:?} is longer than a day"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Rules, String> {
        let entries: Vec<String> = s.split(',').map(|e| e.trim().to_owned()).collect();
        Rules::parse(&entries)
    }

    #[test]
    fn rules_parse_with_default() {
        let r = parse("direct_message:email+webhook:30s, comment:email:15m, *:webhook:1h").unwrap();
        assert_eq!(
            r.rule("direct_message"),
            Some(&TypeRule {
                channels: vec![Channel::Webhook, Channel::Email],
                after: Duration::from_secs(30)
            })
        );
        assert_eq!(r.rule("comment").unwrap().after, Duration::from_secs(900));
        assert_eq!(r.rule("other").unwrap().after, Duration::from_secs(3600));
        assert_eq!(r.channels(), vec![Channel::Webhook, Channel::Email]);
    }

    #[test]
    fn bad_rules_are_refused_naming_the_entry() {
        for (bad, want) in [
            ("dm:webhook", "entry #1"),
            ("dm:fax:30s", "unknown channel"),
            ("dm:webhook:30", "unit"),
            ("dm:webhook:2d", "unit"),
            ("dm:webhook:25h", "longer than a day"),
            (
                "dm:webhook:1s,dm:email:1s",
                "entry #2: type \"dm\" is given twice",
            ),
            (":webhook:1s", "1 to 64"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
