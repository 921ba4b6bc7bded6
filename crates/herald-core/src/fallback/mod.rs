//! Offline fallback, the deciding part (no IO): which channels a notification type falls back
//! to and after how long ([`rules`]), what of a user's notifications is due ([`plan`]), when a
//! failed send is tried again or dead-lettered ([`retry`]), what a user's preferences and
//! quiet hours allow ([`prefs`]), what one digest email covers ([`digest`]) and how an email
//! looks ([`template`]). The worker in the gateway does the IO around these.

pub mod digest;
pub mod overrides;
pub mod plan;
pub mod prefs;
pub mod retry;
pub mod rules;
pub mod send;
pub mod template;

pub use digest::{plan_digest, DigestOutcome, MAX_DIGEST_ITEMS};
pub use overrides::{effective_rule, FallbackOverride};
pub use plan::{plan_user, Pending, UserPlan};
pub use prefs::{Preferences, PreferencesExt, PrefsError, QuietHours};
pub use retry::{after_failure, retry_delay, RetryPolicy, Verdict};
pub use rules::{Channel, Rules, TypeRule};
pub use send::{decide_send, delivery_key, SendDecision};
