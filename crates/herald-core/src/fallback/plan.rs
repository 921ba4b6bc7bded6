//! What of one user's notifications is due for fallback now.
//!
//! Nothing is written per publish: the worker reads a user's notifications after the user's
//! fallback cursor (`fallback_seq`), and [`plan_user`] decides, row by row in seq order:
//!
//! * no rule for the type (and no per-publish override), or already **seen** (read, or at or
//!   below the seen watermark), or due longer than `max_age` ago: nothing to do;
//! * due (`created_at + after`, or at once with `priority: critical`): one job per channel;
//! * not due yet: wait. The cursor stops before the first such row, and `next_due` says when
//!   to look again.
//!
//! The cursor advances over the leading rows that need nothing more; rows after a waiting row
//! that are already due get their jobs now (the job table ignores a repeat), so a short wait
//! is never held up by a longer one before it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::rules::{Channel, Rules, TypeRule};

/// One notification after the cursor, as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub seq: i64,
    pub id: Uuid,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// Read, or at or below the user's seen watermark.
    pub seen: bool,
}

/// What to do for one user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPlan {
    /// The new cursor: every row up to it needs nothing more.
    pub advance_to: i64,
    /// Jobs to create now: (notification, seq, channel).
    pub due: Vec<(Uuid, i64, Channel)>,
    /// When the first waiting row falls due; `None` if no row waits.
    pub next_due: Option<DateTime<Utc>>,
}

/// When `row` falls due under `rule`.
pub fn due_at(row: &Pending, rule: &TypeRule) -> DateTime<Utc> {
    let after = chrono::Duration::from_std(rule.after).unwrap_or(chrono::Duration::MAX);
    row.created_at
        .checked_add_signed(after)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Plans one user's rows (`rows` in ascending seq order, all after `cursor`).
pub fn plan_user(
    cursor: i64,
    rows: &[Pending],
    rules: &Rules,
    now: DateTime<Utc>,
    max_age: Duration,
) -> UserPlan {
    let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    let mut plan = UserPlan {
        advance_to: cursor,
        ..UserPlan::default()
    };
    let mut blocked = false;
    for row in rows {
        let waiting = match rules.rule(&row.kind) {
            None => false,
            Some(_) if row.seen => false,
            Some(rule) => {
                let due = due_at(row, rule);
                if due > now {
                    plan.next_due = Some(plan.next_due.map_or(due, |d| d.min(due)));
                    true
                } else {
                    // Due long ago (the workers were down): too late to be useful.
                    let stale = now.signed_duration_since(due) > max_age;
                    if !stale {
                        plan.due
                            .extend(rule.channels.iter().map(|&c| (row.id, row.seq, c)));
                    }
                    false
                }
            }
        };
        blocked |= waiting;
        if !blocked {
            plan.advance_to = plan.advance_to.max(row.seq);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules() -> Rules {
        let entries: Vec<String> = ["dm:webhook+email:30s", "comment:webhook:15m"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        Rules::parse(&entries).unwrap()
    }

    fn row(seq: i64, kind: &str, age_secs: i64, seen: bool, now: DateTime<Utc>) -> Pending {
        Pending {
            seq,
            id: Uuid::from_u128(seq as u128),
            kind: kind.to_owned(),
            created_at: now - chrono::Duration::seconds(age_secs),
            seen,
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_short_wait_is_not_held_up_by_a_longer_one_before_it() {
        let now = Utc::now();
        let rows = [
            row(1, "other", 100, false, now),
            row(2, "comment", 60, false, now),
            row(3, "dm", 40, false, now),
            row(4, "dm", 10, false, now),
        ];
        let p = plan_user(0, &rows, &rules(), now, DAY);
        assert_eq!(p.advance_to, 1);
        assert_eq!(
            p.due,
            vec![
                (Uuid::from_u128(3), 3, Channel::Webhook),
                (Uuid::from_u128(3), 3, Channel::Email)
            ]
        );
        assert_eq!(
            p.next_due,
            Some(rows[3].created_at + chrono::Duration::seconds(30))
        );
    }

    #[test]
    fn seen_and_stale_rows_need_nothing() {
        let now = Utc::now();
        let rows = [
            row(5, "dm", 10, true, now),
            row(6, "dm", 3 * 86_400, false, now),
        ];
        let p = plan_user(4, &rows, &rules(), now, DAY);
        assert_eq!(
            p,
            UserPlan {
                advance_to: 6,
                due: vec![],
                next_due: None
            }
        );
    }

    fn arb_row() -> impl Strategy<Value = (u8, i64, bool)> {
        (0u8..3, 0i64..2_000, any::<bool>())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// The cursor never passes a row that still waits, never goes back, and every due,
        /// unseen row with a rule gets exactly its rule's channels; seen rows never get a job.
        #[test]
        fn plan_is_sound(cursor in 0i64..10, specs in proptest::collection::vec(arb_row(), 0..40)) {
            let now = Utc::now();
            let kinds = ["dm", "comment", "other"];
            let rows: Vec<Pending> = specs.iter().enumerate().map(|(i, (k, age, seen))| {
                row(cursor + 1 + i as i64, kinds[usize::from(*k)], *age, *seen, now)
            }).collect();
            let r = rules();
            let p = plan_user(cursor, &rows, &r, now, DAY);
            prop_assert!(p.advance_to >= cursor);
            for row in &rows {
                let jobs: Vec<Channel> = p.due.iter().filter(|d| d.0 == row.id).map(|d| d.2).collect();
                match r.rule(&row.kind) {
                    Some(rule) if !row.seen => {
                        let due = due_at(row, rule);
                        if due > now {
                            prop_assert!(jobs.is_empty());
                            prop_assert!(p.advance_to < row.seq, "cursor passed a waiting row");
                            prop_assert!(p.next_due.is_some_and(|d| d <= due));
                        } else {
                            prop_assert_eq!(&jobs, &rule.channels);
                        }
                    }
                    _ => prop_assert!(jobs.is_empty()),
                }
            }
            // Nothing waits → the cursor reaches the last row.
            if p.next_due.is_none() {
                prop_assert_eq!(p.advance_to, rows.last().map_or(cursor, |r| r.seq));
            }
        }
    }
}
