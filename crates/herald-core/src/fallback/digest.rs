//! The email digest: at most one email per user per window, summarising what is still
//! unseen. The worker hands over all of a user's email jobs it claimed together, each already
//! judged by [`decide_send`](super::decide_send) (seen, muted, quiet hours), and when the user
//! was last emailed; [`plan_digest`] says which jobs one email covers now, and when the others
//! are due again.
//!
//! * A user emailed less than a window ago gets nothing now: every sendable job is deferred
//!   to `last_sent + window`, so the jobs that gather meanwhile fall due together and are
//!   sent as one email.
//! * Otherwise one email covers every sendable job, up to [`MAX_DIGEST_ITEMS`]; the overflow
//!   policy is *defer*: the rest wait for the next window's email (oldest first are covered).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::send::SendDecision;

/// At most this many notifications in one email.
pub const MAX_DIGEST_ITEMS: usize = 50;

/// What becomes of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestOutcome {
    /// Covered by the one email sent now.
    Send,
    /// Never sent: why.
    Cancel(&'static str),
    /// Due again then (the attempt does not count).
    Defer(DateTime<Utc>),
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(t)
}

/// One outcome per job of `decisions` (in the worker's order: oldest first).
pub fn plan_digest(
    decisions: &[SendDecision],
    last_sent: Option<DateTime<Utc>>,
    window: Duration,
    now: DateTime<Utc>,
) -> Vec<DigestOutcome> {
    let open_at = last_sent.map(|t| add(t, window)).filter(|at| *at > now);
    let mut covered = 0;
    decisions
        .iter()
        .map(|d| match d {
            SendDecision::Cancel(why) => DigestOutcome::Cancel(why),
            SendDecision::Defer(at) => DigestOutcome::Defer(*at),
            SendDecision::Send => match open_at {
                Some(at) => DigestOutcome::Defer(at),
                None if covered < MAX_DIGEST_ITEMS => {
                    covered += 1;
                    DigestOutcome::Send
                }
                None => DigestOutcome::Defer(add(now, window)),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn within_the_window_everything_waits_for_its_end() {
        let w = Duration::from_secs(60);
        let d = [
            SendDecision::Send,
            SendDecision::Cancel("seen"),
            SendDecision::Send,
        ];
        assert_eq!(
            plan_digest(&d, Some(t(0)), w, t(30)),
            vec![
                DigestOutcome::Defer(t(60)),
                DigestOutcome::Cancel("seen"),
                DigestOutcome::Defer(t(60))
            ]
        );
        assert_eq!(
            plan_digest(&d, Some(t(0)), w, t(60)),
            vec![
                DigestOutcome::Send,
                DigestOutcome::Cancel("seen"),
                DigestOutcome::Send
            ]
        );
    }

    #[test]
    fn overflow_waits_for_the_next_email() {
        let d = vec![SendDecision::Send; MAX_DIGEST_ITEMS + 3];
        let out = plan_digest(&d, None, Duration::from_secs(60), t(0));
        assert_eq!(
            out.iter().filter(|o| **o == DigestOutcome::Send).count(),
            MAX_DIGEST_ITEMS
        );
        assert_eq!(out[MAX_DIGEST_ITEMS], DigestOutcome::Defer(t(60)));
    }

    /// One notification of the simulation: due at, seen at (if ever).
    #[derive(Debug, Clone)]
    struct N {
        due: i64,
        seen: Option<i64>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// A worker polling every `step` seconds over a random stream of notifications (each
        /// job retried at its deferral time): no two emails within the window; every
        /// notification not seen by the time an email covers it is covered by exactly one
        /// email; a seen one is never covered after it was seen.
        #[test]
        fn one_email_per_window_and_each_unseen_covered_once(
            ns in prop::collection::vec((0i64..600, prop::option::of(0i64..900)), 0..40),
            window in 1u64..200,
            step in 1i64..20,
        ) {
            let ns: Vec<N> = ns.into_iter().map(|(due, seen)| N { due, seen }).collect();
            let window_d = Duration::from_secs(window);
            // Per job: next attempt time, done.
            let mut next: Vec<i64> = ns.iter().map(|n| n.due).collect();
            let mut done = vec![false; ns.len()];
            let mut covered = vec![0u32; ns.len()];
            let mut emails: Vec<i64> = Vec::new();
            let mut now = 0;
            while now < 600 + 900 + 10 * window as i64 {
                let claimed: Vec<usize> = (0..ns.len()).filter(|&i| !done[i] && next[i] <= now).collect();
                if !claimed.is_empty() {
                    let decisions: Vec<SendDecision> = claimed.iter().map(|&i| {
                        if ns[i].seen.is_some_and(|s| s <= now) { SendDecision::Cancel("seen") } else { SendDecision::Send }
                    }).collect();
                    let out = plan_digest(&decisions, emails.last().map(|&s| t(s)), window_d, t(now));
                    prop_assert_eq!(out.len(), claimed.len());
                    let mut sent = false;
                    for (&i, o) in claimed.iter().zip(&out) {
                        match o {
                            DigestOutcome::Send => { covered[i] += 1; done[i] = true; sent = true;
                                prop_assert!(ns[i].seen.is_none_or(|s| s > now)); }
                            DigestOutcome::Cancel(_) => done[i] = true,
                            DigestOutcome::Defer(at) => { prop_assert!(*at > t(now)); next[i] = (*at - t(0)).num_seconds(); }
                        }
                    }
                    if sent { emails.push(now); }
                }
                now += step;
            }
            for w in emails.windows(2) {
                prop_assert!(w[1] - w[0] >= window as i64, "emails at {} and {}", w[0], w[1]);
            }
            for (i, n) in ns.iter().enumerate() {
                prop_assert!(done[i], "job {i} never finished");
                prop_assert!(covered[i] <= 1);
                if n.seen.is_none() { prop_assert_eq!(covered[i], 1); }
            }
        }
    }
}
