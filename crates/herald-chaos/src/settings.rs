//! Suite settings: the service key and JWT secret the nodes run with, the client backoff and
//! drain timings, the smoke/full variant, and where the workspace, target dir and PostgreSQL are.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SERVICE_KEY: &str = "chaos-service-key-0123456789";
pub const SECRET: &str = "chaos-hs256-secret-0123456789abcdef0123456789";
/// Client reconnect backoff: full jitter over `min(CAP, BASE * 2^attempt)`.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Gateway drain settings used for every node (also the expected spread of a drain wave).
pub const DRAIN_SPREAD_MS: u64 = 2000;
pub const DRAIN_GRACE_MS: u64 = 5000;

/// `HERALD_CHAOS_FULL=1` selects the large variants.
pub fn full() -> bool {
    std::env::var("HERALD_CHAOS_FULL").is_ok_and(|v| v == "1" || v == "true")
}

pub fn variant() -> &'static str {
    if full() {
        "full"
    } else {
        "smoke"
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        }
        None => workspace_root().join("target"),
    }
}

pub use herald_testkit::admin_url;

/// Seconds (float) since `t0`.
pub fn secs_since(t0: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(t0).as_secs_f64()
}

/// The port of PostgreSQL in [`admin_url`].
pub fn pg_port() -> u16 {
    let url = admin_url();
    url.rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432)
}
