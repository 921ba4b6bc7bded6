//! Offline fallback: reaching a user who has not seen a notification by its type's
//! `fallback_after`, through a signed webhook or email (docs/channels.md).
//!
//! * [`worker`]: the loop every node runs: plans due jobs from each user's fallback cursor,
//!   claims them with a lease, sends, records the outcome (retry, dead-letter).
//! * [`webhook`]: the Standard Webhooks channel (signature, request).
//! * [`email`]: the email channel (SMTP, MIME, templates); [`digest`]: a user's email jobs
//!   become at most one email per window; [`unsubscribe`]: the one-click unsubscribe token.
//!
//! What is due, when to retry and what the user allows is decided in
//! `herald_core::fallback` (pure); the outbox is in PostgreSQL (`migrations/0005_fallback.sql`).

pub mod digest;
pub mod email;
pub mod unsubscribe;
pub mod webhook;
pub mod worker;

use std::time::Duration;

use herald_core::fallback::{RetryPolicy, Rules};

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
    pub webhook: Option<webhook::WebhookConfig>,
    pub email: Option<email::EmailConfig>,
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
            webhook: None,
            email: None,
        }
    }
}
