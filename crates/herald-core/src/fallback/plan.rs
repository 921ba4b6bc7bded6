//! What of one user's notifications is due for fallback now.
//!
//! Nothing is written per publish: the worker reads a user's notifications after the user's
//! fallback cursor (`fallback_seq`), and [`plan_user`] decides, row by row in seq order, with
//! the rule that applies to the row ([`effective_rule`]: the type's rule, or what the publish
//! call asked for):
//!
//! * no rule, or already **seen** (read, or at or below the seen watermark), or due longer
//!   than `max_age` ago: nothing to do;
//! * due (`created_at + after`, or at once with `priority: critical`): one job per channel;
//! * not due yet: wait. The cursor stops before the first such row, and `next_due` says when
//!   to look again.
//!
//! The cursor advances over the leading rows that need nothing more; rows after a waiting row
//! that are already due get their jobs now (the job table ignores a repeat), so a short wait
//! is never held up by a longer one before it.
//!
//! **A full page.** The planner reads a bounded page of rows after the cursor. When the page
//! is full, a waiting row would hold the cursor where it is and the rows after the page would
//! never be read; so then every waiting row of the page becomes a *scheduled* job (due at its
//! due time; seen by then, the worker cancels it) and the cursor moves to the end of the page.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::overrides::{effective_rule, FallbackOverride};
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
    /// What the publish call asked for (`notifications.fallback`).
    pub fallback: Option<FallbackOverride>,
}

/// One job to create: (notification, seq, channel), first due at `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub id: Uuid,
    pub seq: i64,
    pub channel: Channel,
    pub at: DateTime<Utc>,
}

/// What to do for one user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPlan {
    /// The new cursor: every row up to it needs nothing more.
    pub advance_to: i64,
    /// Jobs to create now: due ones at `now`, scheduled ones (a full page) at their due time.
    pub due: Vec<NewJob>,
    /// When the first waiting row falls due; `None` if no row waits.
    pub next_due: Option<DateTime<Utc>>,
}

/// When a notification created at `created_at` falls due under `rule`.
pub fn due_at(created_at: DateTime<Utc>, rule: &TypeRule) -> DateTime<Utc> {
    let after = chrono::Duration::from_std(rule.after).unwrap_or(chrono::Duration::MAX);
    created_at
        .checked_add_signed(after)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Whether a notification due at `due` is too late to be worth sending at `now`.
pub fn is_stale(due: DateTime<Utc>, now: DateTime<Utc>, max_age: Duration) -> bool {
    let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    now.signed_duration_since(due) > max_age
}

/// Plans one user's rows (`rows` in ascending seq order, all after `cursor`). `page_full`:
/// the rows are a full page, more may follow.
pub fn plan_user(
    cursor: i64,
    rows: &[Pending],
    rules: &Rules,
    now: DateTime<Utc>,
    max_age: Duration,
    page_full: bool,
) -> UserPlan {
    let mut plan = UserPlan {
        advance_to: cursor,
        ..UserPlan::default()
    };
    let mut blocked = false;
    for row in rows {
        let rule = if row.seen {
            None
        } else {
            effective_rule(rules, &row.kind, row.fallback.as_ref())
        };
        let waiting = match rule {
            None => false,
            Some(rule) => {
                let due = due_at(row.created_at, &rule);
                let jobs = |at| {
                    rule.channels.iter().map(move |&channel| NewJob {
                        id: row.id,
                        seq: row.seq,
                        channel,
                        at,
                    })
                };
                if due > now && page_full {
                    plan.due.extend(jobs(due));
                    false
                } else if due > now {
                    plan.next_due = Some(plan.next_due.map_or(due, |d| d.min(due)));
                    true
                } else {
                    // Due long ago (the workers were down): too late to be useful.
                    if !is_stale(due, now, max_age) {
                        plan.due.extend(jobs(now));
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
            fallback: None,
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
        let p = plan_user(0, &rows, &rules(), now, DAY, false);
        assert_eq!(p.advance_to, 1);
        let job = |channel| NewJob {
            id: Uuid::from_u128(3),
            seq: 3,
            channel,
            at: now,
        };
        assert_eq!(p.due, vec![job(Channel::Webhook), job(Channel::Email)]);
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
        let p = plan_user(4, &rows, &rules(), now, DAY, false);
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
        fn plan_is_sound(cursor in 0i64..10, specs in proptest::collection::vec(arb_row(), 0..40), page_full in any::<bool>()) {
            let now = Utc::now();
            let kinds = ["dm", "comment", "other"];
            let rows: Vec<Pending> = specs.iter().enumerate().map(|(i, (k, age, seen))| {
                row(cursor + 1 + i as i64, kinds[usize::from(*k)], *age, *seen, now)
            }).collect();
            let r = rules();
            let p = plan_user(cursor, &rows, &r, now, DAY, page_full);
            prop_assert!(p.advance_to >= cursor);
            for row in &rows {
                let jobs: Vec<Channel> = p.due.iter().filter(|d| d.id == row.id).map(|d| d.channel).collect();
                match r.rule(&row.kind) {
                    Some(rule) if !row.seen => {
                        let due = due_at(row.created_at, rule);
                        if due > now && page_full {
                            prop_assert_eq!(&jobs, &rule.channels);
                            prop_assert!(p.due.iter().filter(|d| d.id == row.id).all(|d| d.at == due));
                        } else if due > now {
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
            // Nothing waits (always so for a full page) → the cursor reaches the last row.
            prop_assert!(!page_full || p.next_due.is_none());
            if p.next_due.is_none() {
                prop_assert_eq!(p.advance_to, rows.last().map_or(cursor, |r| r.seq));
            }
        }
    }
}
