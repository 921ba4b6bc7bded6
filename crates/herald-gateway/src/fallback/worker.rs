//! The fallback worker every node runs. One pass:
//!
//! 1. **plan**: users with notifications after their fallback cursor get their due jobs
//!    created and their cursor advanced (`herald_core::fallback::plan_user`), in batches;
//! 2. **send**: due jobs are claimed with a lease (`FOR UPDATE SKIP LOCKED`), sent
//!    concurrently, and each outcome recorded: sent, cancelled (seen, muted), deferred (quiet
//!    hours), retried with backoff, or dead-lettered after the last attempt. A user's email
//!    jobs of one claim go together to [`super::digest`]: at most one email per window.
//!
//! A node killed mid-send leaves its jobs claimed; when their lease runs out any node claims
//! them again (at least once; the stable key lets receivers deduplicate).

use std::sync::Arc;

use actix_web::web;
use chrono::Utc;
use futures_util::future::join_all;
use herald_core::fallback::plan::{due_at, is_stale};
use herald_core::fallback::{
    after_failure, decide_send, delivery_key, effective_rule, plan_user, Channel, Preferences,
    SendDecision, Verdict,
};
use herald_store::{ClaimedJob, JobDetails, JobEnd};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Users planned per transaction, and users looked at per pass.
const PLAN_USERS: i64 = 100;
const PLAN_PASS_USERS: i64 = 1_000;
/// Rows read per user per planning.
const PLAN_ROWS_PER_USER: i64 = 200;
/// Claim rounds per pass (a pass ends early when a claim comes back short).
const SEND_ROUNDS: usize = 16;

pub async fn worker_loop(state: web::Data<AppState>, stop: CancellationToken) {
    let cfg = &state.config.fallback;
    if !cfg.enabled() {
        return;
    }
    // No redirects: a 3xx would turn the signed POST into a bodyless GET whose 2xx would count
    // as sent, and would carry the signed headers wherever the receiver points; it is a
    // failed attempt instead.
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "fallback worker: no HTTP client; fallbacks are not sent");
            return;
        }
    };
    let mailer = match cfg.email.as_ref().map(super::email::mailer).transpose() {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "fallback worker: no SMTP transport; fallbacks are not sent");
            return;
        }
    };
    let mut tick = tokio::time::interval(cfg.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        plan_pass(&state).await;
        send_pass(&state, &http, mailer.as_ref(), &stop).await;
    }
}

fn store_error(state: &AppState, op: &str, e: &herald_store::StoreError) {
    state.metrics.store_errors.with_label_values(&[op]).inc();
    tracing::warn!(op, error = %e, "fallback worker: store error; retrying next pass");
}

async fn plan_pass(state: &AppState) {
    let cfg = &state.config.fallback;
    let users = match state.store.fallback_users_to_plan(PLAN_PASS_USERS).await {
        Ok(u) => u,
        Err(e) => return store_error(state, "fallback_users_to_plan", &e),
    };
    let plan = |input: &herald_store::PlanInput, page_full: bool| {
        plan_user(
            input.cursor,
            &input.rows,
            &cfg.rules,
            input.now,
            cfg.max_age,
            page_full,
        )
    };
    for chunk in users.chunks(PLAN_USERS as usize) {
        match state
            .store
            .fallback_plan(chunk, PLAN_ROWS_PER_USER, &plan)
            .await
        {
            Ok(n) => state.metrics.fallback_jobs_planned.inc_by(n),
            Err(e) => return store_error(state, "fallback_plan", &e),
        }
    }
}

async fn send_pass(
    state: &AppState,
    http: &reqwest::Client,
    mailer: Option<&super::email::Mailer>,
    stop: &CancellationToken,
) {
    let cfg = &state.config.fallback;
    for _ in 0..SEND_ROUNDS {
        if stop.is_cancelled() {
            return;
        }
        let jobs = match state
            .store
            .fallback_claim(cfg.batch, cfg.lease, &state.config.node_id)
            .await
        {
            Ok(j) => j,
            Err(e) => return store_error(state, "fallback_claim", &e),
        };
        if jobs.is_empty() {
            return;
        }
        let ids: Vec<uuid::Uuid> = jobs.iter().map(|j| j.notification_id).collect();
        let details = match state.store.fallback_details(&ids).await {
            Ok(d) => Arc::new(d),
            // The jobs stay claimed; their lease runs out and they are claimed again.
            Err(e) => return store_error(state, "fallback_details", &e),
        };
        let short = (jobs.len() as i64) < cfg.batch;
        // Email jobs go per user to the digest (those a precheck ends are recorded at once);
        // the others one by one.
        let (email_jobs, jobs): (Vec<ClaimedJob>, Vec<ClaimedJob>) =
            jobs.into_iter().partition(|j| j.channel == Channel::Email);
        let mut by_user: std::collections::BTreeMap<String, Vec<ClaimedJob>> = Default::default();
        let now = Utc::now();
        for j in email_jobs {
            let d = details
                .iter()
                .find(|d| d.notification.id == j.notification_id);
            match precheck(cfg, &j, d, now) {
                Some(end) => record(state, &j, &end).await,
                None => by_user.entry(j.user_id.clone()).or_default().push(j),
            }
        }
        let digests = join_all(by_user.into_values().map(|mut group| {
            let details = details.clone();
            async move {
                group.sort_by_key(|j| notification_seq(&details, j));
                let ds: Vec<Option<&JobDetails>> = group
                    .iter()
                    .map(|j| {
                        details
                            .iter()
                            .find(|d| d.notification.id == j.notification_id)
                    })
                    .collect();
                let ends = match (&cfg.email, mailer) {
                    (Some(ec), Some(m)) => {
                        // Bounded by the lease: a send still running when the lease runs out
                        // would have its outcome fenced out by the next claim and be sent
                        // again; ending it first makes it an ordinary transient failure.
                        let limit = cfg.lease.mul_f64(0.75);
                        match tokio::time::timeout(
                            limit,
                            super::digest::send_user(state, ec, m, &group, &ds),
                        )
                        .await
                        {
                            Ok(ends) => ends,
                            // Past the limit: a failed attempt of every job it covered.
                            Err(_) => {
                                let error = format!(
                                    "the email send took longer than {} ms",
                                    limit.as_millis()
                                );
                                group
                                    .iter()
                                    .map(|j| failed_attempt(cfg, j, Utc::now(), error.clone()))
                                    .collect()
                            }
                        }
                    }
                    _ => group
                        .iter()
                        .map(|_| JobEnd::Dead("the email channel is not configured".to_owned()))
                        .collect(),
                };
                for (job, end) in group.iter().zip(&ends) {
                    record(state, job, end).await;
                }
            }
        }));
        let singles = join_all(jobs.into_iter().map(|job| {
            let details = details.clone();
            async move {
                let d = details
                    .iter()
                    .find(|d| d.notification.id == job.notification_id);
                let end = attempt(state, http, &job, d).await;
                record(state, &job, &end).await;
            }
        }));
        futures_util::future::join(digests, singles).await;
        if short {
            return;
        }
    }
}

/// One attempt of one job: what came of it.
/// How a failed attempt ends: retried after the backoff, or dead after the last attempt.
pub(super) fn failed_attempt(
    cfg: &super::FallbackConfig,
    job: &ClaimedJob,
    now: chrono::DateTime<Utc>,
    error: String,
) -> JobEnd {
    let attempt = u32::try_from(job.attempt).unwrap_or(u32::MAX);
    match after_failure(attempt, &cfg.retry, rand::random::<f64>()) {
        Verdict::Retry(delay) => JobEnd::Retry {
            at: chrono::Duration::from_std(delay)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(now),
            error,
        },
        Verdict::DeadLetter => JobEnd::Dead(error),
    }
}

/// What ends a job before any channel looks at it: the notification is gone, the job was
/// claimed more often than sends may be attempted, or it is too late to be useful.
fn precheck(
    cfg: &super::FallbackConfig,
    job: &ClaimedJob,
    details: Option<&JobDetails>,
    now: chrono::DateTime<Utc>,
) -> Option<JobEnd> {
    let Some(d) = details else {
        return Some(JobEnd::Cancelled("notification deleted".to_owned()));
    };
    // Claimed more often than sends may be attempted: the earlier claims' leases ran out
    // without an outcome (the node died, or the send hung past the lease). Never retried
    // forever.
    if u32::try_from(job.attempt).unwrap_or(u32::MAX) > cfg.retry.max_attempts {
        return Some(JobEnd::Dead(format!(
            "{} attempts without an outcome (the lease ran out)",
            job.attempt
        )));
    }
    // A scheduled job (planned early from a full page) first claimed long after it fell due:
    // the workers were down; too late to be useful, as the planner judges due rows.
    if job.claim == 1 {
        let rule = effective_rule(&cfg.rules, &d.notification.kind, d.fallback.as_ref());
        if let Some(rule) = rule {
            if is_stale(due_at(d.notification.created_at, &rule), now, cfg.max_age) {
                return Some(JobEnd::Cancelled("stale".to_owned()));
            }
        }
    }
    None
}

async fn attempt(
    state: &AppState,
    http: &reqwest::Client,
    job: &ClaimedJob,
    details: Option<&JobDetails>,
) -> JobEnd {
    let cfg = &state.config.fallback;
    let now = Utc::now();
    if let Some(end) = precheck(cfg, job, details, now) {
        return end;
    }
    let Some(d) = details else {
        return JobEnd::Cancelled("notification deleted".to_owned());
    };
    // Stored preferences that no longer parse are ignored (the server's rules apply).
    let prefs: Option<Preferences> = d
        .prefs
        .as_ref()
        .and_then(|p| serde_json::from_value(p.clone()).ok());
    let critical = d.fallback.as_ref().is_some_and(|f| f.critical);
    match decide_send(
        d.seen,
        prefs.as_ref(),
        &d.notification.kind,
        job.channel,
        now,
        critical,
    ) {
        SendDecision::Cancel(why) => return JobEnd::Cancelled(why.to_owned()),
        SendDecision::Defer(at) => return JobEnd::Deferred(at),
        SendDecision::Send => {}
    }
    let key = delivery_key(job.notification_id, job.channel);
    let result = match job.channel {
        Channel::Webhook => match &cfg.webhook {
            Some(w) => super::webhook::send(http, w, &key, &d.notification, job.attempt).await,
            None => Err("the webhook channel is not configured".to_owned()),
        },
        Channel::Push => {
            match super::push::send(state, http, &job.user_id, &key, &d.notification).await {
                super::push::PushResult::Sent => Ok(()),
                super::push::PushResult::Transient(e) => Err(e),
                super::push::PushResult::End(end) => return end,
            }
        }
        // Email jobs go to the digest (`send_pass`), never one by one.
        Channel::Email => Err("email jobs are sent by the digest".to_owned()),
    };
    match result {
        Ok(()) => JobEnd::Sent,
        Err(error) => failed_attempt(cfg, job, now, error),
    }
}

/// A job's notification seq (the digest covers the oldest first); 0 if it is gone.
fn notification_seq(details: &[JobDetails], job: &ClaimedJob) -> i64 {
    details
        .iter()
        .find(|d| d.notification.id == job.notification_id)
        .map_or(0, |d| d.notification.seq)
}

async fn record(state: &AppState, job: &ClaimedJob, end: &JobEnd) {
    let outcome = match end {
        JobEnd::Sent => "sent",
        JobEnd::Cancelled(_) => "cancelled",
        JobEnd::Deferred(_) => "deferred",
        JobEnd::Retry { .. } => "failed",
        JobEnd::Dead(_) => "dead",
    };
    state
        .metrics
        .fallback_sends
        .with_label_values(&[job.channel.as_str(), outcome])
        .inc();
    match end {
        JobEnd::Retry { error, at } => tracing::info!(
            notification_id = %job.notification_id, channel = %job.channel, attempt = job.attempt,
            %error, retry_at = %at, "fallback send failed; retrying"),
        JobEnd::Dead(error) => tracing::warn!(
            notification_id = %job.notification_id, channel = %job.channel, attempt = job.attempt,
            %error, "fallback send failed for the last time; dead-lettered"),
        _ => tracing::debug!(
            notification_id = %job.notification_id, channel = %job.channel, outcome, "fallback job"),
    }
    match state.store.fallback_finish(job, end).await {
        Ok(true) => {}
        Ok(false) => tracing::info!(notification_id = %job.notification_id, channel = %job.channel,
            "fallback job was claimed again before this attempt ended; its outcome is the later one's"),
        Err(e) => store_error(state, "fallback_finish", &e),
    }
}
