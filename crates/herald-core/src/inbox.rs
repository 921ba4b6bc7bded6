//! The inbox lifecycle's decisions, with no IO: which bulk requests are valid, and the
//! retention setting (`HERALD_RETENTION`).

use std::time::Duration;

use herald_protocol::inbox::{BulkRequest, InboxAction, InboxFilter, MAX_BULK_IDS};
use uuid::Uuid;

use crate::validate::{validate_kind, ValidationError};

/// What a valid bulk request selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkTarget {
    /// 1 to [`MAX_BULK_IDS`] distinct ids, in request order.
    Ids(Vec<Uuid>),
    Filter {
        filter: InboxFilter,
        up_to_seq: Option<i64>,
    },
}

fn err(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field,
        message: message.into(),
    }
}

/// A filter is valid when its type (if any) is a valid notification type.
pub fn validate_filter(filter: &InboxFilter) -> Result<(), ValidationError> {
    if let Some(kind) = &filter.kind {
        validate_kind(kind).map_err(|e| err("filter.type", e.message))?;
    }
    Ok(())
}

/// Checks a bulk request: exactly one of `ids` (1 to [`MAX_BULK_IDS`], duplicates dropped)
/// and `filter`; `up_to_seq` only with `filter`, and not negative.
pub fn validate_bulk(req: BulkRequest) -> Result<(InboxAction, BulkTarget), ValidationError> {
    let target = match (req.ids, req.filter) {
        (Some(_), Some(_)) => return Err(err("ids", "give ids or filter, not both")),
        (None, None) => return Err(err("ids", "ids or filter is required")),
        (Some(ids), None) => {
            if req.up_to_seq.is_some() {
                return Err(err("up_to_seq", "up_to_seq goes with filter, not ids"));
            }
            if ids.is_empty() || ids.len() > MAX_BULK_IDS {
                return Err(err("ids", format!("must hold 1 to {MAX_BULK_IDS} ids")));
            }
            let mut seen = std::collections::HashSet::with_capacity(ids.len());
            BulkTarget::Ids(ids.into_iter().filter(|id| seen.insert(*id)).collect())
        }
        (None, Some(filter)) => {
            validate_filter(&filter)?;
            if req.up_to_seq.is_some_and(|s| s < 0) {
                return Err(err("up_to_seq", "must be non-negative"));
            }
            BulkTarget::Filter {
                filter,
                up_to_seq: req.up_to_seq,
            }
        }
    };
    Ok((req.action, target))
}

/// How long notifications are kept: per type, and for every other type (`*`). Empty: kept
/// forever (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub per_type: Vec<(String, Duration)>,
    pub other: Option<Duration>,
}

impl Retention {
    pub fn is_off(&self) -> bool {
        self.per_type.is_empty() && self.other.is_none()
    }
}

fn parse_age(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3_600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    // At most 100 years.
    (secs <= 100 * 365 * 86_400).then(|| Duration::from_secs(secs))
}

/// Parses `HERALD_RETENTION`: comma-separated `type=age` entries, `*` for every type not
/// listed, an age being a positive integer with `s`, `m`, `h` or `d` (e.g.
/// `chat.message=30d,*=365d`). Empty: off. Each type at most once.
pub fn parse_retention(text: &str) -> Result<Retention, String> {
    let mut out = Retention::default();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (kind, age) = entry
            .split_once('=')
            .ok_or_else(|| format!("{entry:?}: expected type=age (e.g. chat.message=30d)"))?;
        let kind = kind.trim();
        let age = parse_age(age).ok_or_else(|| {
            format!("{entry:?}: the age must be a positive integer with s, m, h or d (at most 100 years)")
        })?;
        if kind == "*" {
            if out.other.replace(age).is_some() {
                return Err("* is given twice".into());
            }
        } else {
            validate_kind(kind).map_err(|e| format!("{entry:?}: type {}", e.message))?;
            if out.per_type.iter().any(|(k, _)| k == kind) {
                return Err(format!("{kind} is given twice"));
            }
            out.per_type.push((kind.to_owned(), age));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(ids: Option<Vec<Uuid>>, filter: Option<InboxFilter>, up: Option<i64>) -> BulkRequest {
        BulkRequest {
            action: InboxAction::Archive,
            ids,
            filter,
            up_to_seq: up,
        }
    }

    #[test]
    fn bulk_requests_need_exactly_one_target() {
        let id = Uuid::now_v7();
        assert_eq!(
            validate_bulk(req(None, None, None)).unwrap_err().field,
            "ids"
        );
        assert_eq!(
            validate_bulk(req(Some(vec![id]), Some(InboxFilter::default()), None))
                .unwrap_err()
                .field,
            "ids"
        );
        assert_eq!(
            validate_bulk(req(Some(vec![id]), None, Some(3)))
                .unwrap_err()
                .field,
            "up_to_seq"
        );
        assert_eq!(
            validate_bulk(req(None, Some(InboxFilter::default()), Some(-1)))
                .unwrap_err()
                .field,
            "up_to_seq"
        );
        let bad = InboxFilter {
            kind: Some("no spaces".into()),
            ..InboxFilter::default()
        };
        assert_eq!(
            validate_bulk(req(None, Some(bad), None)).unwrap_err().field,
            "filter.type"
        );
        assert_eq!(
            validate_bulk(req(Some(vec![id, id]), None, None)).unwrap(),
            (InboxAction::Archive, BulkTarget::Ids(vec![id]))
        );
    }

    #[test]
    fn retention_parses_and_refuses() {
        let r = parse_retention("chat.message=30d, *=1h ,comment.created=90s").unwrap();
        assert_eq!(r.other, Some(Duration::from_secs(3600)));
        assert_eq!(
            r.per_type,
            vec![
                ("chat.message".to_owned(), Duration::from_secs(30 * 86_400)),
                ("comment.created".to_owned(), Duration::from_secs(90)),
            ]
        );
        assert!(parse_retention("").unwrap().is_off());
        for bad in [
            "x",
            "x=",
            "x=0d",
            "x=5",
            "x=5w",
            "x=-1d",
            "*=1d,*=2d",
            "a=1d,a=2d",
            "bad type=1d",
            "x=99999999999d",
        ] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn ids_within_the_limit_are_kept_once_in_order(n in 1usize..=MAX_BULK_IDS, dup in 0usize..5) {
            let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
            let mut with_dups = ids.clone();
            with_dups.extend(ids.iter().take(dup).copied());
            let (_, t) = validate_bulk(req(Some(with_dups), None, None)).unwrap();
            prop_assert_eq!(t, BulkTarget::Ids(ids));
        }

        #[test]
        fn too_many_ids_are_refused(extra in 1usize..50) {
            let ids: Vec<Uuid> = (0..MAX_BULK_IDS + extra).map(|_| Uuid::new_v4()).collect();
            prop_assert_eq!(validate_bulk(req(Some(ids), None, None)).unwrap_err().field, "ids");
        }

        #[test]
        fn ages_round_trip(n in 1u64..10_000, unit in prop::sample::select(vec!["s", "m", "h", "d"])) {
            let mult = match unit { "s" => 1, "m" => 60, "h" => 3600, _ => 86_400 };
            let r = parse_retention(&format!("t.x={n}{unit}")).unwrap();
            prop_assert_eq!(r.per_type, vec![("t.x".to_owned(), Duration::from_secs(n * mult))]);
        }
    }
}
