//! Offline fallback: reaching a user who has not seen a notification by its type's
//! `fallback_after`, through a signed webhook or email (docs/channels.md).
//!
//! * [`worker`]: the loop every node runs: plans due jobs from each user's fallback cursor,
//!   claims them with a lease, sends, records the outcome (retry, dead-letter).
//! * [`webhook`]: the Standard Webhooks channel (signature, request).
//! * [`push`]: the Web Push channel (RFC 8030/8291/8292: subscriptions, encryption, VAPID).
//! * [`email`]: the email channel (SMTP, MIME, templates); [`digest`]: a user's email jobs
//!   become at most one email per window; [`unsubscribe`]: the one-click unsubscribe token.
//!
//! What is due, when to retry and what the user allows is decided in
//! `herald_core::fallback` (pure); the outbox is in PostgreSQL (`migrations/0005_fallback.sql`).

pub mod digest;
pub mod email;
pub mod push;
pub mod unsubscribe;
pub mod webhook;
pub mod worker;

use std::time::Duration;

use herald_core::fallback::{Channel, RetryPolicy, Rules};

/// `HERALD_FALLBACK_*`.
#[derive(Debug, Clone)]
pub struct FallbackConfig {
    /// `HERALD_FALLBACK_TYPES`: per type, which channels after how long. Empty: the worker
    /// does not run.
    pub rules: Rules,
    /// How often the worker looks for due work.
    pub poll: Duration,
    /// How long a claimed job is this node's; a job not finished by then is claimed again.
    pub lease: Duration,
    /// Jobs claimed (and sent concurrently) at a time.
    pub batch: i64,
    /// A notification due longer ago than this (the workers were down) is not sent.
    pub max_age: Duration,
    pub retry: RetryPolicy,
    /// How long finished jobs (sent, cancelled, dead) are kept before the purge task deletes
    /// them (`HERALD_FALLBACK_JOB_RETENTION_HOURS`).
    pub job_retention: Duration,
    pub webhook: Option<webhook::WebhookConfig>,
    pub push: Option<push::PushConfig>,
    pub email: Option<email::EmailConfig>,
}

impl FallbackConfig {
    /// The channels set up on this node: what rules and publish calls may name.
    pub fn available_channels(&self) -> Vec<Channel> {
        Channel::ALL
            .into_iter()
            .filter(|c| match c {
                Channel::Webhook => self.webhook.is_some(),
                Channel::Push => self.push.is_some(),
                Channel::Email => self.email.is_some(),
            })
            .collect()
    }

    /// Whether the worker runs: some rule exists, or some channel is set up (a publish call
    /// may ask for a fallback its type's rule does not have).
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty() || !self.available_channels().is_empty()
    }
}

impl Default for FallbackConfig {
    fn default() -> FallbackConfig {
        FallbackConfig {
            rules: Rules::default(),
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            batch: 64,
            max_age: Duration::from_secs(3_600),
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
                max_attempts: 8,
            },
            job_retention: Duration::from_secs(7 * 86_400),
            webhook: None,
            push: None,
            email: None,
        }
    }
}
