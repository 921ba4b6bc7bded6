//! Verification keys from an identity provider's JWKS URL (`HERALD_JWT_JWKS_URL`).
//!
//! * Fetched at start (a node that cannot get its keys does not start), then again when the
//!   set's cache lifetime ends: the response's `Cache-Control: max-age`, clamped to
//!   [`JwksConfig::min_refetch`] .. 24 h, or [`JwksConfig::default_max_age`] without one.
//! * A token whose `kid` is not in the set triggers a fetch (a key rotated in at the provider
//!   works without a restart), at most one per [`JwksConfig::min_refetch`] however many such
//!   tokens arrive, so unknown `kid`s cannot make the node hammer the provider.
//! * A failed fetch keeps the keys it has (the provider being down does not log anyone out)
//!   and is retried; a successful one replaces the set, so a key removed at the provider is
//!   refused from then on.
//! * Accepted: RSA keys (RS256), EC P-256 (ES256) and Ed25519 (EdDSA); keys for encryption
//!   (`use: enc`) or other algorithms are skipped. The response is bounded
//!   ([`MAX_BODY_BYTES`], [`MAX_KEYS`]) before it is read.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Largest JWKS document read.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most keys taken from one document.
pub const MAX_KEYS: usize = 64;
/// One fetch's time limit.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a fetched set is used before it is fetched again.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// `https://…`, or `http://` on a loopback host (tests).
    pub url: String,
    /// `HERALD_JWT_JWKS_MAX_AGE_SECS`: the set's lifetime when the provider sends no
    /// `Cache-Control: max-age`.
    pub default_max_age: Duration,
    /// `HERALD_JWT_JWKS_MIN_REFETCH_MS`: the shortest time between two fetches (unknown `kid`s,
    /// retries after a failure, and the floor of the provider's `max-age`).
    pub min_refetch: Duration,
}

/// Checks a JWKS URL: HTTPS, or plain HTTP only to a loopback address.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("must be https:// (http:// only to a loopback address, for tests)".into())
            }
        }
        other => Err(format!("scheme {other}: must be https://")),
    }
}

/// One usable key.
pub struct JwkKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The fields of a JWK this node reads (RFC 7517/7518); anything else is ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// The signing keys of a JWKS document, and why any others were skipped.
pub fn parse_set(body: &[u8]) -> Result<(Vec<JwkKey>, Vec<String>), String> {
    let set: RawSet =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, value) in set.keys.into_iter().enumerate() {
        if keys.len() == MAX_KEYS {
            skipped.push(format!("keys past the first {MAX_KEYS}"));
            break;
        }
        match serde_json::from_value::<RawJwk>(value)
            .map_err(|e| e.to_string())
            .and_then(to_key)
        {
            Ok(Some(k)) => keys.push(k),
            Ok(None) => {}
            Err(e) => skipped.push(format!("key {i}: {e}")),
        }
    }
    Ok((keys, skipped))
}

/// `Ok(None)`: a key that is not for signatures (`use: enc`).
fn to_key(jwk: RawJwk) -> Result<Option<JwkKey>, String> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let field = |v: &Option<String>, name: &str| {
        v.clone()
            .ok_or_else(|| format!("{} key without `{name}`", jwk.kty))
    };
    let (alg, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => (
            Algorithm::RS256,
            DecodingKey::from_rsa_components(&field(&jwk.n, "n")?, &field(&jwk.e, "e")?)
                .map_err(|e| format!("RSA key: {e}"))?,
        ),
        ("EC", Some("P-256")) => (
            Algorithm::ES256,
            DecodingKey::from_ec_components(&field(&jwk.x, "x")?, &field(&jwk.y, "y")?)
                .map_err(|e| format!("EC key: {e}"))?,
        ),
        ("OKP", Some("Ed25519")) => (
            Algorithm::EdDSA,
            DecodingKey::from_ed_components(&field(&jwk.x, "x")?)
                .map_err(|e| format!("Ed25519 key: {e}"))?,
        ),
        (kty, crv) => {
            return Err(format!(
                "key type {kty}{} is not supported (RSA, EC P-256, OKP Ed25519)",
                crv.map(|c| format!("/{c}")).unwrap_or_default()
            ))
        }
    };
    // A key that names an algorithm is used for that one only.
    if let Some(named) = jwk.alg.as_deref() {
        let matches = matches!(
            (named, alg),
            ("RS256", Algorithm::RS256) | ("ES256", Algorithm::ES256) | ("EdDSA", Algorithm::EdDSA)
        );
        if !matches {
            return Err(format!("alg {named} is not accepted for a {} key", jwk.kty));
        }
    }
    Ok(Some(JwkKey {
        kid: jwk.kid,
        alg,
        key,
    }))
}

/// `max-age` of a `Cache-Control` value.
pub fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case("max-age") {
            v.trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs)
        } else {
            None
        }
    })
}

/// The provider's keys, shared by every verifier call.
pub struct Jwks {
    cfg: JwksConfig,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<JwkKey>>>,
    /// When the set is due to be fetched again.
    due: Mutex<Instant>,
    /// Held while fetching; the time of the last fetch attempt.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

impl Jwks {
    /// Builds the fetcher and fetches the set once; fails if that fetch does.
    pub async fn start(cfg: JwksConfig, metrics: Arc<Metrics>) -> Result<Arc<Jwks>, String> {
        check_url(&cfg.url)?;
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let jwks = Arc::new(Jwks {
            cfg,
            http,
            keys: RwLock::new(Arc::new(Vec::new())),
            due: Mutex::new(Instant::now()),
            fetching: tokio::sync::Mutex::new(None),
            metrics,
        });
        let mut last = jwks.fetching.lock().await;
        jwks.fetch_now(&mut last).await?;
        drop(last);
        Ok(jwks)
    }

    /// The current set.
    pub fn keys(&self) -> Arc<Vec<JwkKey>> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether the current set has a key with this id.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys().iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Fetches the set again unless a fetch happened within `min_refetch` (then returns at
    /// once, or after the fetch in progress). For tokens with an unknown `kid`.
    pub async fn refetch_if_allowed(&self) {
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.cfg.min_refetch) {
            return;
        }
        if let Err(e) = self.fetch_now(&mut last).await {
            tracing::warn!(error = %e, url = %self.cfg.url, "JWKS fetch for an unknown kid failed; keeping the keys held");
        }
    }

    /// Refreshes the set whenever its lifetime ends; a failure keeps the held keys and is
    /// retried after `min_refetch` (at least 1 s, at most a minute).
    pub async fn refresh_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let due = match self.due.lock() {
                Ok(d) => *d,
                Err(p) => *p.into_inner(),
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(due) => {}
            }
            let mut last = self.fetching.lock().await;
            // A fetch for an unknown kid may have renewed the set meanwhile.
            let still_due = match self.due.lock() {
                Ok(d) => *d <= Instant::now(),
                Err(p) => *p.into_inner() <= Instant::now(),
            };
            if !still_due {
                continue;
            }
            if let Err(e) = self.fetch_now(&mut last).await {
                let retry = self
                    .cfg
                    .min_refetch
                    .clamp(Duration::from_secs(1), Duration::from_secs(60));
                tracing::warn!(error = %e, url = %self.cfg.url, retry_ms = retry.as_millis() as u64,
                    keys = self.keys().len(), "JWKS refresh failed; keeping the keys held");
                self.set_due(Instant::now() + retry);
            }
        }
    }

    fn set_due(&self, at: Instant) {
        match self.due.lock() {
            Ok(mut d) => *d = at,
            Err(p) => *p.into_inner() = at,
        }
    }

    async fn fetch_now(&self, last: &mut Option<Instant>) -> Result<(), String> {
        *last = Some(Instant::now());
        let outcome = self.fetch().await;
        let label = if outcome.is_ok() { "ok" } else { "error" };
        self.metrics.jwks_fetches.with_label_values(&[label]).inc();
        let (keys, lifetime) = outcome?;
        let n = keys.len();
        self.metrics.jwks_keys.set(n as i64);
        match self.keys.write() {
            Ok(mut k) => *k = Arc::new(keys),
            Err(p) => *p.into_inner() = Arc::new(keys),
        }
        self.set_due(Instant::now() + lifetime);
        tracing::info!(url = %self.cfg.url, keys = n, lifetime_s = lifetime.as_secs(), "JWKS fetched");
        Ok(())
    }

    async fn fetch(&self) -> Result<(Vec<JwkKey>, Duration), String> {
        let url = &self.cfg.url;
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(format!(
                "GET {url}: the document is larger than {MAX_BODY_BYTES} bytes"
            ));
        }
        let lifetime = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(self.cfg.default_max_age)
            .clamp(self.cfg.min_refetch, MAX_LIFETIME);
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!(
                    "GET {url}: the document is larger than {MAX_BODY_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let (keys, skipped) = parse_set(&body).map_err(|e| format!("GET {url}: {e}"))?;
        for why in &skipped {
            tracing::warn!(url = %url, skipped = %why, "JWKS key skipped");
        }
        if keys.is_empty() {
            return Err(format!(
                "GET {url}: no usable signing key (RSA, EC P-256, Ed25519)"
            ));
        }
        Ok((keys, lifetime))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_url("https://id.example.com/.well-known/jwks.json").is_ok());
        assert!(check_url("http://127.0.0.1:9000/jwks").is_ok());
        assert!(check_url("http://[::1]:9000/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://id.example.com/jwks").is_err());
        assert!(check_url("http://10.0.0.1/jwks").is_err());
        assert!(check_url("ftp://id.example.com/jwks").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            max_age("Max-Age=\"30\", must-revalidate"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn unusable_keys_are_skipped_with_a_reason() {
        let doc = br#"{"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "use": "enc", "n": "x", "e": "AQAB", "kid": "enc"},
            {"kty": "EC", "crv": "P-384", "x": "a", "y": "b", "kid": "p384"},
            {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "alg": "RS256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "mismatch"},
            {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"}
        ]}"#;
        let (keys, skipped) = parse_set(doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ed"));
        assert_eq!(keys[0].alg, Algorithm::EdDSA);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped.iter().any(|s| s.contains("key type oct")));
        assert!(skipped.iter().any(|s| s.contains("EC/P-384")));
        assert!(skipped.iter().any(|s| s.contains("without `n`")));
        assert!(skipped
            .iter()
            .any(|s| s.contains("alg RS256 is not accepted")));
        assert!(parse_set(b"{\"not\": \"jwks\"}").is_err());
        assert!(parse_set(b"[]").is_err());
    }
}
