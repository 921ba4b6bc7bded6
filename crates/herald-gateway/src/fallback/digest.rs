//! The email jobs of one user, claimed together, become at most one email (the digest):
//!
//! 1. each job is judged alone (`decide_send`: seen, muted, quiet hours); no address on file
//!    or a suppressed address cancels them all;
//! 2. `plan_digest` says which jobs the email covers now and when the others are due again
//!    (the user was emailed less than a window ago: all wait for the window's end);
//! 3. the user's slot is reserved in the store (one winner across nodes), the email sent, and
//!    every covered job recorded with the one outcome: sent; a 5xx suppresses the address and
//!    dead-letters them (no retry); a transient failure gives the slot back and retries them
//!    with backoff.

use chrono::{DateTime, Utc};
use herald_core::fallback::{
    decide_send, delivery_key, plan_digest, Channel, DigestOutcome, Preferences, SendDecision,
};
use herald_protocol::Notification;
use herald_store::{ClaimedJob, JobDetails, JobEnd};
use secrecy::ExposeSecret;

use super::email::{self, EmailConfig, Mailer, SmtpFailure};
use crate::state::AppState;

/// The outcome of each of `jobs` (one user's email jobs; `details[i]` is `jobs[i]`'s, `None`
/// when the notification is gone).
pub async fn send_user(
    state: &AppState,
    cfg: &EmailConfig,
    mailer: &Mailer,
    jobs: &[ClaimedJob],
    details: &[Option<&JobDetails>],
) -> Vec<JobEnd> {
    let now = Utc::now();
    let Some(user) = jobs.first().map(|j| j.user_id.clone()) else {
        return Vec::new();
    };
    // The user's data is the same on every row; take it from any.
    let any = details.iter().flatten().next();
    let prefs: Option<Preferences> = any
        .and_then(|d| d.prefs.as_ref())
        .and_then(|p| serde_json::from_value(p.clone()).ok());
    let address = any.and_then(|d| d.email.clone());
    let decisions: Vec<SendDecision> = details
        .iter()
        .map(|d| match d {
            None => SendDecision::Cancel("notification deleted"),
            Some(d) => decide_send(
                d.seen,
                prefs.as_ref(),
                &d.notification.kind,
                Channel::Email,
                now,
                d.fallback.as_ref().is_some_and(|f| f.critical),
            ),
        })
        .collect();
    let wants_send = decisions.contains(&SendDecision::Send);
    let cancel_sendable = |why: String| -> Vec<JobEnd> {
        decisions
            .iter()
            .map(|d| match d {
                SendDecision::Send => JobEnd::Cancelled(why.clone()),
                SendDecision::Cancel(w) => JobEnd::Cancelled((*w).to_owned()),
                SendDecision::Defer(at) => JobEnd::Deferred(*at),
            })
            .collect()
    };
    let address = match address {
        Some(a) => a,
        None if wants_send => return cancel_sendable("no address".to_owned()),
        None => String::new(),
    };
    if wants_send {
        match state.store.suppressed(&address).await {
            Ok(Some(_)) => return cancel_sendable("suppressed".to_owned()),
            Ok(None) => {}
            Err(e) => return retry_all(state, jobs, now, &format!("store: {e}")),
        }
    }
    let window = prefs
        .as_ref()
        .and_then(|p| p.digest_window_secs)
        .map(|s| std::time::Duration::from_secs(u64::from(s)))
        .unwrap_or(cfg.digest_window);
    let last_sent = if wants_send {
        match state.store.email_last_sent(&user).await {
            Ok(t) => t,
            Err(e) => return retry_all(state, jobs, now, &format!("store: {e}")),
        }
    } else {
        None
    };
    let mut plan = plan_digest(&decisions, last_sent, window, now);
    let covered: Vec<usize> = (0..plan.len())
        .filter(|&i| plan[i] == DigestOutcome::Send)
        .collect();
    if covered.is_empty() {
        return plan.into_iter().map(outcome).collect();
    }
    // Another node may have emailed the user since `last_sent` was read: the reservation is
    // the one that counts.
    let reserved = match state.store.email_reserve(&user, window).await {
        Ok(Some(at)) => at,
        Ok(None) => {
            let at = chrono::Duration::from_std(window)
                .ok()
                .and_then(|w| now.checked_add_signed(w))
                .unwrap_or(now);
            for i in &covered {
                plan[*i] = DigestOutcome::Defer(at);
            }
            return plan.into_iter().map(outcome).collect();
        }
        Err(e) => return retry_all(state, jobs, now, &format!("store: {e}")),
    };
    let mut items: Vec<(&Notification, String)> = Vec::with_capacity(covered.len());
    for &i in &covered {
        if let Some(d) = details[i] {
            items.push((
                &d.notification,
                delivery_key(d.notification.id, Channel::Email),
            ));
        }
    }
    let token = super::unsubscribe::token(cfg.unsubscribe_key.expose_secret(), &user, "*");
    let url = format!("{}/v1/email/unsubscribe?t={token}", cfg.public_url);
    let mail = email::compose(cfg, &address, &items, url);
    let result = match email::message(cfg, &mail) {
        Ok(msg) => email::send(mailer, msg).await,
        // An address the builder refuses cannot be sent to, ever.
        Err(e) => Err(SmtpFailure::Permanent(e)),
    };
    let end_of_covered = match result {
        Ok(()) => {
            state
                .metrics
                .email_messages
                .with_label_values(&["sent"])
                .inc();
            tracing::info!(user_id = %user, message_id = %mail.message_id, covered = covered.len(),
                "email sent");
            None
        }
        Err(failure) => {
            let label = match failure {
                SmtpFailure::Permanent(_) => "bounced",
                SmtpFailure::Rejected(_) => "rejected",
                SmtpFailure::Transient(_) => "failed",
            };
            state
                .metrics
                .email_messages
                .with_label_values(&[label])
                .inc();
            if let Err(e) = state.store.email_release(&user, reserved, last_sent).await {
                tracing::warn!(user_id = %user, error = %e, "email: giving the digest slot back failed");
            }
            Some(failure)
        }
    };
    let mut out: Vec<JobEnd> = Vec::with_capacity(plan.len());
    for (i, o) in plan.into_iter().enumerate() {
        out.push(match (&o, &end_of_covered) {
            (DigestOutcome::Send, None) => JobEnd::Sent,
            (DigestOutcome::Send, Some(SmtpFailure::Permanent(error))) => {
                JobEnd::Dead(format!("permanent failure, address suppressed: {error}"))
            }
            (DigestOutcome::Send, Some(SmtpFailure::Rejected(error))) => {
                JobEnd::Dead(format!("permanent failure: {error}"))
            }
            (DigestOutcome::Send, Some(SmtpFailure::Transient(error))) => {
                retry_one(state, &jobs[i], now, error)
            }
            _ => outcome(o),
        });
    }
    if let Some(SmtpFailure::Permanent(error)) = &end_of_covered {
        let reason: String = error.chars().take(200).collect();
        match state.store.suppress(&address, &reason, "bounce").await {
            Ok(_) => tracing::warn!(user_id = %user, %error, "email bounced; address suppressed"),
            Err(e) => tracing::warn!(user_id = %user, error = %e, "email: suppressing failed"),
        }
    }
    out
}

fn outcome(o: DigestOutcome) -> JobEnd {
    match o {
        // Only reached for a job the email did not cover.
        DigestOutcome::Send => JobEnd::Deferred(Utc::now()),
        DigestOutcome::Cancel(why) => JobEnd::Cancelled(why.to_owned()),
        DigestOutcome::Defer(at) => JobEnd::Deferred(at),
    }
}

fn retry_one(state: &AppState, job: &ClaimedJob, now: DateTime<Utc>, error: &str) -> JobEnd {
    super::worker::failed_attempt(&state.config.fallback, job, now, error.to_owned())
}

fn retry_all(
    state: &AppState,
    jobs: &[ClaimedJob],
    now: DateTime<Utc>,
    error: &str,
) -> Vec<JobEnd> {
    jobs.iter()
        .map(|j| retry_one(state, j, now, error))
        .collect()
}
