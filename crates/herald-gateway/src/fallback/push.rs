//! The Web Push channel: one notification, encrypted (RFC 8291, `aes128gcm`) to every push
//! subscription of its user, POSTed to each subscription's push service (RFC 8030) with a
//! VAPID token (RFC 8292).
//!
//! * `Topic`: the first 32 characters of base64url(SHA-256(delivery key)), the same on every
//!   attempt, so a push service replaces an undelivered earlier attempt instead of queueing
//!   a second message; the service worker uses it as the notification's `tag`.
//! * `TTL`: `HERALD_PUSH_TTL_SECS`; `Urgency`: the notification's `data.urgency` when it is
//!   one of `very-low`, `low`, `normal`, `high`, else `normal`.
//! * The payload is JSON `{id, type, title, body, url, seq}` of at most [`MAX_PLAINTEXT`]
//!   bytes (the body, then the title, is cut at a character boundary with `…`), so the
//!   encrypted record stays within the 4096 bytes push services accept.
//! * Outcome per subscription: 2xx accepted; 404/410 gone (the subscription is removed);
//!   429 and 5xx (and network errors) transient; any other status permanent.
//!   The job ([`job_verdict`]): sent when at least one subscription accepted; else retried
//!   while any failed transiently; else cancelled "no subscription" (none, or all gone);
//!   else dead-lettered (permanent refusals).
//!
//! Encryption is `web-push-native` (pure Rust on RustCrypto); the VAPID JWT (ES256) is signed
//! here with p256.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use herald_protocol::push::PushSubscriptionRequest;
use herald_protocol::Notification;
use herald_store::{JobEnd, PushSubscription};
use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use sha2::{Digest as _, Sha256};

/// Push services accept at least 4096 bytes of (encrypted) body; one aes128gcm record adds
/// 86 bytes of header (salt, record size, key id), a 16-byte tag and a padding delimiter.
pub const MAX_PLAINTEXT: usize = 4096 - 86 - 16 - 1;
/// Longest subscription endpoint accepted.
pub const MAX_ENDPOINT: usize = 2048;
/// Longest `User-Agent` stored with a subscription (longer ones are cut).
pub const MAX_USER_AGENT: usize = 256;
/// Lifetime of a VAPID token (RFC 8292: at most 24 hours).
pub const VAPID_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The server's VAPID key pair. `Debug` never shows the private half.
pub struct VapidKey {
    signing: p256::ecdsa::SigningKey,
    /// base64url of the 65-byte uncompressed public point.
    public_b64: String,
}

impl fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public_b64)
            .field("private", &"[redacted]")
            .finish()
    }
}

impl VapidKey {
    /// `HERALD_VAPID_PRIVATE_KEY`: base64url of the raw 32-byte P-256 scalar (what
    /// `web-push generate-vapid-keys` prints), or a PEM `EC PRIVATE KEY` / `PRIVATE KEY`.
    pub fn parse(s: &str) -> Result<VapidKey, String> {
        let s = s.trim();
        let secret = if s.starts_with("-----BEGIN") {
            p256::SecretKey::from_sec1_pem(s)
                .or_else(|_| {
                    use p256::pkcs8::DecodePrivateKey as _;
                    p256::SecretKey::from_pkcs8_pem(s)
                })
                .map_err(|_| "is not a P-256 private key in PEM (SEC1 or PKCS#8)".to_owned())?
        } else {
            let raw = B64URL
                .decode(s.trim_end_matches('='))
                .map_err(|_| "is neither PEM nor base64url".to_owned())?;
            if raw.len() != 32 {
                return Err(format!(
                    "must be the base64url of 32 bytes (a raw P-256 private key), got {} bytes",
                    raw.len()
                ));
            }
            p256::SecretKey::from_slice(&raw)
                .map_err(|_| "is not a valid P-256 private key".to_owned())?
        };
        let public = secret.public_key().to_encoded_point(false);
        Ok(VapidKey {
            public_b64: B64URL.encode(public.as_bytes()),
            signing: p256::ecdsa::SigningKey::from(secret),
        })
    }

    pub fn public_b64(&self) -> &str {
        &self.public_b64
    }

    /// The `Authorization` header for a push to `endpoint`: `vapid t=<ES256 JWT>, k=<key>`,
    /// the JWT's `aud` being the endpoint's origin.
    pub fn authorization(
        &self,
        endpoint: &url::Url,
        subject: &str,
        now: i64,
    ) -> Result<String, String> {
        let aud = endpoint.origin().ascii_serialization();
        let exp = now.saturating_add(VAPID_TOKEN_LIFETIME.as_secs() as i64);
        let header = B64URL.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims =
            serde_json::to_vec(&serde_json::json!({"aud": aud, "exp": exp, "sub": subject}))
                .map_err(|e| format!("encoding the VAPID claims: {e}"))?;
        let input = format!("{header}.{}", B64URL.encode(claims));
        let sig: p256::ecdsa::Signature = self.signing.sign(input.as_bytes());
        Ok(format!(
            "vapid t={input}.{}, k={}",
            B64URL.encode(sig.to_bytes()),
            self.public_b64
        ))
    }
}

/// `HERALD_VAPID_*` and `HERALD_PUSH_*`.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub vapid: Arc<VapidKey>,
    /// `HERALD_VAPID_SUBJECT`: a `mailto:` or `https:` URL push services may contact.
    pub subject: String,
    /// `HERALD_PUSH_TTL_SECS`: how long a push service keeps an undelivered message.
    pub ttl: Duration,
    /// `HERALD_PUSH_TIMEOUT_MS`: one request to a push service.
    pub timeout: Duration,
    /// `HERALD_PUSH_MAX_SUBSCRIPTIONS`: per user; a new one beyond replaces the oldest.
    pub max_subscriptions: i64,
    /// `HERALD_PUSH_ALLOW_HTTP_LOOPBACK` (lab builds only): accept `http://127.0.0.1`,
    /// `http://[::1]` and `http://localhost` endpoints (test push services).
    pub allow_http_loopback: bool,
}

/// `HERALD_VAPID_SUBJECT`: `mailto:<address>` or an `https://` URL.
pub fn check_subject(s: &str) -> Result<(), String> {
    let url = url::Url::parse(s).map_err(|_| "must be a mailto: or https: URL".to_owned())?;
    match url.scheme() {
        "mailto" if url.path().contains('@') => Ok(()),
        "https" if url.host().is_some() => Ok(()),
        _ => Err("must be a mailto: address or an https: URL".to_owned()),
    }
}

/// The push `Topic` of a delivery key: 32 characters of the URL-safe base64 alphabet
/// (RFC 8030 §5.4), the same for every attempt of one (notification, channel).
pub fn topic(delivery_key: &str) -> String {
    let digest = Sha256::digest(delivery_key.as_bytes());
    let mut t = B64URL.encode(digest);
    t.truncate(32);
    t
}

/// The `Urgency` header: the notification's `data.urgency` if it is a valid one.
pub fn urgency(n: &Notification) -> &'static str {
    let asked = n
        .data
        .as_ref()
        .and_then(|d| d.get("urgency"))
        .and_then(|u| u.as_str());
    match asked {
        Some("very-low") => "very-low",
        Some("low") => "low",
        Some("high") => "high",
        _ => "normal",
    }
}

#[derive(serde::Serialize)]
struct Payload<'a> {
    id: uuid::Uuid,
    #[serde(rename = "type")]
    kind: &'a str,
    title: String,
    body: String,
    url: Option<&'a str>,
    seq: i64,
}

/// `s` cut to its first `n` characters, with `…` when cut.
fn cut(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The largest `n` in `0..=max` with `fits(n)`, given `fits` is monotone (true up to some
/// point); `None` if not even `fits(0)`.
fn largest_fitting(max: usize, fits: impl Fn(usize) -> bool) -> Option<usize> {
    if !fits(0) {
        return None;
    }
    let (mut lo, mut hi) = (0, max);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// The push payload of `n`: JSON of at most `limit` bytes; the body is cut first, then the
/// title, then the url dropped.
pub fn payload(n: &Notification, limit: usize) -> Vec<u8> {
    let enc = |title: String, body: String, url: Option<&str>| {
        serde_json::to_vec(&Payload {
            id: n.id,
            kind: &n.kind,
            title,
            body,
            url,
            seq: n.seq,
        })
        .unwrap_or_default()
    };
    let url = n.link.as_deref();
    let full = enc(n.title.clone(), n.body.clone(), url);
    if full.len() <= limit {
        return full;
    }
    let body_chars = n.body.chars().count();
    let fits_body = |k: usize| enc(n.title.clone(), cut(&n.body, k), url).len() <= limit;
    if let Some(k) = largest_fitting(body_chars, fits_body) {
        return enc(n.title.clone(), cut(&n.body, k), url);
    }
    let title_chars = n.title.chars().count();
    for url in [url, None] {
        let fits_title = |k: usize| enc(cut(&n.title, k), String::new(), url).len() <= limit;
        if let Some(k) = largest_fitting(title_chars, fits_title) {
            return enc(cut(&n.title, k), String::new(), url);
        }
    }
    enc(String::new(), String::new(), None)
}

/// A subscription that passed [`check_subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSubscription {
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
}

/// Why a subscription is refused: the field, and what is wrong with it.
pub type Refusal = (&'static str, String);

fn b64url_bytes(s: &str) -> Option<Vec<u8>> {
    B64URL.decode(s.trim_end_matches('=')).ok()
}

/// Checks a browser's subscription: an `https://` endpoint (or loopback `http://` when
/// allowed) without credentials or fragment, at most [`MAX_ENDPOINT`] bytes; `p256dh` a
/// 65-byte uncompressed point on P-256; `auth` 16 bytes.
/// Whether `url`'s host is `localhost` (or under it) or an IP address that is not a public
/// unicast one: loopback, private (RFC 1918, ULA), link-local, shared (100.64/10),
/// unspecified, multicast, broadcast, documentation. A name that resolves to such an address
/// is not caught here (restrict egress, docs/channels.md).
pub fn internal_host(url: &url::Url) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let v4 = |a: Ipv4Addr| {
        let o = a.octets();
        a.is_loopback()
            || a.is_private()
            || a.is_link_local()
            || a.is_unspecified()
            || a.is_multicast()
            || a.is_broadcast()
            || a.is_documentation()
            || (o[0] == 100 && (64..128).contains(&o[1]))
            || o[0] == 0
    };
    let v6 = |a: Ipv6Addr| {
        let s = a.segments();
        a.is_loopback()
            || a.is_unspecified()
            || a.is_multicast()
            || (s[0] & 0xfe00) == 0xfc00
            || (s[0] & 0xffc0) == 0xfe80
            || a.to_ipv4_mapped().is_some_and(v4)
    };
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(a)) => v4(a),
        Some(url::Host::Ipv6(a)) => v6(a),
        None => true,
    }
}

pub fn check_subscription(
    req: &PushSubscriptionRequest,
    allow_http_loopback: bool,
) -> Result<ValidSubscription, Refusal> {
    const EP: &str = "endpoint";
    if req.endpoint.is_empty() || req.endpoint.len() > MAX_ENDPOINT {
        return Err((EP, format!("endpoint must be 1 to {MAX_ENDPOINT} bytes")));
    }
    let url =
        url::Url::parse(&req.endpoint).map_err(|_| (EP, "endpoint is not a URL".to_owned()))?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Ipv4(a)) if a.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(a)) if a.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" if url.host().is_some() => {}
        "http" if allow_http_loopback && loopback => {}
        _ => return Err((EP, "endpoint must be an https:// URL".to_owned())),
    }
    // Push services are public: an endpoint on this machine or a private network would make
    // the workers POST to internal services for any signed-in user.
    if internal_host(&url) && !(allow_http_loopback && loopback) {
        return Err((
            EP,
            "endpoint must be a public push service, not a loopback, private or link-local address"
                .to_owned(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err((
            EP,
            "endpoint may not carry credentials or a fragment".to_owned(),
        ));
    }
    let p256dh = b64url_bytes(&req.keys.p256dh)
        .ok_or(("keys.p256dh", "keys.p256dh is not base64url".to_owned()))?;
    if p256dh.len() != 65 || p256dh[0] != 4 || p256::PublicKey::from_sec1_bytes(&p256dh).is_err() {
        return Err((
            "keys.p256dh",
            "keys.p256dh must be a 65-byte uncompressed P-256 point".to_owned(),
        ));
    }
    let auth = b64url_bytes(&req.keys.auth)
        .ok_or(("keys.auth", "keys.auth is not base64url".to_owned()))?;
    if auth.len() != 16 {
        return Err(("keys.auth", "keys.auth must be 16 bytes".to_owned()));
    }
    Ok(ValidSubscription {
        endpoint: req.endpoint.clone(),
        p256dh,
        auth,
    })
}

/// How one subscription's push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubOutcome {
    Accepted,
    /// 404/410: the subscription no longer exists; it is removed.
    Gone,
    /// 429, 5xx, network: may work later.
    Transient(String),
    /// Any other refusal: will not work by retrying.
    Permanent(String),
}

/// A push service's answer status → outcome.
pub fn classify(status: u16) -> SubOutcome {
    match status {
        200..=299 => SubOutcome::Accepted,
        404 | 410 => SubOutcome::Gone,
        429 | 500..=599 => SubOutcome::Transient(format!("HTTP {status}")),
        300..=399 => SubOutcome::Permanent(format!("HTTP {status} (redirects are not followed)")),
        _ => SubOutcome::Permanent(format!("HTTP {status}")),
    }
}

/// How a push job ends, from its subscriptions' outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushVerdict {
    Sent,
    /// Retry with backoff (counts as a failed attempt).
    Retry(String),
    Cancel(String),
    Dead(String),
}

/// Sent if any accepted; else retried if any failed transiently; else cancelled when there
/// was nothing to send to (none, or all gone); else dead (permanent refusals).
pub fn job_verdict(outcomes: &[SubOutcome]) -> PushVerdict {
    if outcomes.contains(&SubOutcome::Accepted) {
        return PushVerdict::Sent;
    }
    if let Some(SubOutcome::Transient(e)) = outcomes
        .iter()
        .find(|o| matches!(o, SubOutcome::Transient(_)))
    {
        return PushVerdict::Retry(format!("push service: {e}"));
    }
    match outcomes
        .iter()
        .find(|o| matches!(o, SubOutcome::Permanent(_)))
    {
        Some(SubOutcome::Permanent(e)) => PushVerdict::Dead(format!("push service: {e}")),
        _ => PushVerdict::Cancel("no subscription".to_owned()),
    }
}

/// One encrypted push to one subscription.
async fn push_one(
    http: &reqwest::Client,
    cfg: &PushConfig,
    sub: &PushSubscription,
    topic: &str,
    urgency: &str,
    plaintext: &[u8],
) -> SubOutcome {
    let Ok(endpoint) = url::Url::parse(&sub.endpoint) else {
        return SubOutcome::Permanent("stored endpoint is not a URL".to_owned());
    };
    let Ok(ua_public) = p256::PublicKey::from_sec1_bytes(&sub.p256dh) else {
        return SubOutcome::Permanent("stored p256dh is not a P-256 point".to_owned());
    };
    if sub.auth.len() != 16 {
        return SubOutcome::Permanent("stored auth is not 16 bytes".to_owned());
    }
    let mut auth = web_push_native::Auth::default();
    auth.copy_from_slice(&sub.auth);
    let body = match web_push_native::encrypt(plaintext.to_vec(), &ua_public, &auth) {
        Ok(b) => b,
        Err(e) => return SubOutcome::Permanent(format!("encrypting: {e}")),
    };
    let authorization =
        match cfg
            .vapid
            .authorization(&endpoint, &cfg.subject, chrono::Utc::now().timestamp())
        {
            Ok(a) => a,
            Err(e) => return SubOutcome::Permanent(e),
        };
    let resp = http
        .post(endpoint)
        .timeout(cfg.timeout)
        .header("ttl", cfg.ttl.as_secs().to_string())
        .header("content-encoding", "aes128gcm")
        .header("content-type", "application/octet-stream")
        .header("topic", topic)
        .header("urgency", urgency)
        .header("authorization", authorization)
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) => classify(r.status().as_u16()),
        // Without the URL: the endpoint's path is the subscription's capability.
        Err(e) => SubOutcome::Transient(format!("request failed: {}", e.without_url())),
    }
}

/// What the worker makes of one push job: sent, failed transiently (retry with backoff), or
/// ended otherwise.
pub enum PushResult {
    Sent,
    Transient(String),
    End(JobEnd),
}

/// Sends notification `n` (delivery key `key`) to every subscription of `user_id`, removing
/// the ones that are gone.
pub async fn send(
    state: &crate::state::AppState,
    http: &reqwest::Client,
    user_id: &str,
    key: &str,
    n: &Notification,
) -> PushResult {
    let Some(cfg) = &state.config.fallback.push else {
        return PushResult::Transient("the push channel is not configured".to_owned());
    };
    let subs = match state.store.push_subscriptions(user_id).await {
        Ok(s) => s,
        Err(e) => return PushResult::Transient(format!("reading subscriptions: {e}")),
    };
    let topic = topic(key);
    let urgency = urgency(n);
    let plaintext = payload(n, MAX_PLAINTEXT);
    let outcomes = futures_util::future::join_all(
        subs.iter()
            .map(|s| push_one(http, cfg, s, &topic, urgency, &plaintext)),
    )
    .await;
    for (sub, outcome) in subs.iter().zip(&outcomes) {
        match outcome {
            SubOutcome::Gone => match state.store.push_remove_gone(sub.id, &sub.endpoint).await {
                Ok(_) => tracing::info!(notification_id = %n.id, subscription_id = %sub.id,
                        "push subscription gone (404/410); removed"),
                Err(e) => tracing::warn!(subscription_id = %sub.id, error = %e,
                        "removing a gone push subscription failed"),
            },
            SubOutcome::Transient(e) | SubOutcome::Permanent(e) => {
                tracing::info!(notification_id = %n.id, subscription_id = %sub.id, error = %e,
                    "push to one subscription failed")
            }
            SubOutcome::Accepted => {}
        }
    }
    match job_verdict(&outcomes) {
        PushVerdict::Sent => PushResult::Sent,
        PushVerdict::Retry(e) => PushResult::Transient(e),
        PushVerdict::Cancel(why) => PushResult::End(JobEnd::Cancelled(why)),
        PushVerdict::Dead(e) => PushResult::End(JobEnd::Dead(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::push::PushKeys;
    use proptest::prelude::*;

    fn note(title: &str, body: &str, link: Option<&str>) -> Notification {
        Notification {
            id: uuid::Uuid::nil(),
            user_id: "u".into(),
            seq: 7,
            kind: "dm".into(),
            title: title.into(),
            body: body.into(),
            link: link.map(str::to_owned),
            avatar_url: None,
            data: None,
            created_at: chrono::Utc::now(),
            delivered_at: None,
            read_at: None,
            archived_at: None,
        }
    }

    #[test]
    fn topic_is_32_url_safe_chars_and_stable() {
        let k = herald_core::fallback::delivery_key(
            uuid::Uuid::new_v4(),
            herald_core::fallback::Channel::Push,
        );
        let t = topic(&k);
        assert_eq!(t.len(), 32);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(t, topic(&k));
        assert_ne!(t, topic("other"));
    }

    #[test]
    fn vapid_keys_parse_and_bad_ones_are_refused() {
        // The web-push-native documentation's example key.
        let k = VapidKey::parse("RS0WdYWWo1HajXg3NZR1olzCf31i-ZBGDkFyCs7j1jw").unwrap();
        assert_eq!(B64URL.decode(k.public_b64()).unwrap().len(), 65);
        assert!(!format!("{k:?}").contains("RS0Wd"));
        assert!(VapidKey::parse("c2hvcnQ").unwrap_err().contains("32 bytes"));
        assert!(VapidKey::parse("not base64!").is_err());
        assert!(VapidKey::parse(
            "-----BEGIN EC PRIVATE KEY-----\nxx\n-----END EC PRIVATE KEY-----"
        )
        .is_err());
        // The zero scalar is no key.
        assert!(VapidKey::parse(&B64URL.encode([0u8; 32])).is_err());
    }

    #[test]
    fn subjects() {
        assert!(check_subject("mailto:ops@example.com").is_ok());
        assert!(check_subject("https://example.com/contact").is_ok());
        for bad in [
            "ops@example.com",
            "http://example.com",
            "mailto:",
            "ftp://x.y",
        ] {
            assert!(check_subject(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(201), SubOutcome::Accepted);
        assert_eq!(classify(410), SubOutcome::Gone);
        assert_eq!(classify(404), SubOutcome::Gone);
        assert!(matches!(classify(429), SubOutcome::Transient(_)));
        assert!(matches!(classify(503), SubOutcome::Transient(_)));
        assert!(matches!(classify(400), SubOutcome::Permanent(_)));
        assert!(matches!(classify(403), SubOutcome::Permanent(_)));
        assert!(matches!(classify(301), SubOutcome::Permanent(_)));
    }

    #[test]
    fn job_verdicts() {
        use SubOutcome::*;
        let t = || Transient("HTTP 500".into());
        let p = || Permanent("HTTP 400".into());
        assert_eq!(
            job_verdict(&[]),
            PushVerdict::Cancel("no subscription".into())
        );
        assert_eq!(
            job_verdict(&[Gone, Gone]),
            PushVerdict::Cancel("no subscription".into())
        );
        assert_eq!(job_verdict(&[t(), Accepted, p()]), PushVerdict::Sent);
        assert!(matches!(
            job_verdict(&[Gone, t(), p()]),
            PushVerdict::Retry(_)
        ));
        assert!(matches!(job_verdict(&[Gone, p()]), PushVerdict::Dead(_)));
    }

    fn sub(endpoint: &str, p256dh: &str, auth: &str) -> PushSubscriptionRequest {
        PushSubscriptionRequest {
            endpoint: endpoint.into(),
            expiration_time: None,
            keys: PushKeys {
                p256dh: p256dh.into(),
                auth: auth.into(),
            },
        }
    }

    /// RFC 8291 §5's user agent public key and auth secret.
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const UA_AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn subscriptions_are_checked() {
        let ok =
            check_subscription(&sub("https://push.example/x", UA_PUBLIC, UA_AUTH), false).unwrap();
        assert_eq!((ok.p256dh.len(), ok.auth.len()), (65, 16));
        assert!(check_subscription(&sub("http://127.0.0.1:9/x", UA_PUBLIC, UA_AUTH), true).is_ok());
        assert!(
            check_subscription(&sub("https://8.8.8.8/x", UA_PUBLIC, UA_AUTH), false).is_ok(),
            "a public address is fine"
        );
        let mut not_on_curve = B64URL.decode(UA_PUBLIC).unwrap();
        not_on_curve[64] ^= 1;
        let not_on_curve = B64URL.encode(not_on_curve);
        for (s, field) in [
            (sub("http://127.0.0.1:9/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (sub("http://push.example/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (sub("ftp://push.example/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (
                sub("https://u:p@push.example/x", UA_PUBLIC, UA_AUTH),
                "endpoint",
            ),
            (sub("not a url", UA_PUBLIC, UA_AUTH), "endpoint"),
            // Not public push services: this machine, private and link-local networks.
            (sub("https://127.0.0.1/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (
                sub("https://localhost:8443/x", UA_PUBLIC, UA_AUTH),
                "endpoint",
            ),
            (
                sub("https://api.localhost/x", UA_PUBLIC, UA_AUTH),
                "endpoint",
            ),
            (sub("https://[::1]/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (sub("https://10.1.2.3/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (sub("https://192.168.0.1/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (
                sub("https://169.254.169.254/x", UA_PUBLIC, UA_AUTH),
                "endpoint",
            ),
            (sub("https://100.64.0.1/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (sub("https://[fd00::1]/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (sub("https://[fe80::1]/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (
                sub("https://[::ffff:10.0.0.1]/x", UA_PUBLIC, UA_AUTH),
                "endpoint",
            ),
            (sub("https://0.0.0.0/x", UA_PUBLIC, UA_AUTH), "endpoint"),
            (
                sub(
                    &format!("https://p.example/{}", "a".repeat(MAX_ENDPOINT)),
                    UA_PUBLIC,
                    UA_AUTH,
                ),
                "endpoint",
            ),
            (sub("https://push.example/x", "!!", UA_AUTH), "keys.p256dh"),
            (
                sub("https://push.example/x", &not_on_curve, UA_AUTH),
                "keys.p256dh",
            ),
            (
                sub("https://push.example/x", UA_AUTH, UA_AUTH),
                "keys.p256dh",
            ),
            (
                sub("https://push.example/x", UA_PUBLIC, UA_PUBLIC),
                "keys.auth",
            ),
            (sub("https://push.example/x", UA_PUBLIC, "***"), "keys.auth"),
        ] {
            let err = check_subscription(&s, false).err();
            assert_eq!(err.as_ref().map(|e| e.0), Some(field), "{s:?}: {err:?}");
        }
    }

    #[test]
    fn vapid_token_is_an_es256_jwt_for_the_origin() {
        let k = VapidKey::parse("RS0WdYWWo1HajXg3NZR1olzCf31i-ZBGDkFyCs7j1jw").unwrap();
        let ep = url::Url::parse("https://push.example:8443/wpush/abc").unwrap();
        let h = k
            .authorization(&ep, "mailto:ops@example.com", 1_800_000_000)
            .unwrap();
        let (t, key) = h
            .strip_prefix("vapid t=")
            .and_then(|r| r.split_once(", k="))
            .unwrap();
        assert_eq!(key, k.public_b64());
        let pt = B64URL.decode(key).unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(
            &B64URL.encode(&pt[1..33]),
            &B64URL.encode(&pt[33..65]),
        )
        .unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["https://push.example:8443"]);
        v.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(t, &decoding, &v)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        assert_eq!(claims["exp"], 1_800_000_000 + 12 * 3600);
    }

    proptest! {
        /// The payload always fits, is JSON, and keeps a prefix of the body and title.
        #[test]
        fn payload_fits_and_keeps_prefixes(title in ".{0,300}", body in ".{0,3000}", link in proptest::option::of("https://x\\.example/[a-z]{0,900}"), limit in 200usize..MAX_PLAINTEXT) {
            let n = note(&title, &body, link.as_deref());
            let p = payload(&n, limit);
            prop_assert!(p.len() <= limit, "{} > {limit}", p.len());
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            let b = v["body"].as_str().unwrap();
            prop_assert!(body.starts_with(b.trim_end_matches('…')));
            let t = v["title"].as_str().unwrap();
            prop_assert!(title.starts_with(t.trim_end_matches('…')));
            prop_assert_eq!(v["seq"].as_i64(), Some(7));
        }
    }

    #[test]
    fn a_long_body_is_cut_to_fit() {
        let n = note("hi", &"é\"".repeat(5000), Some("https://x.example/a"));
        let p = payload(&n, MAX_PLAINTEXT);
        assert!(p.len() <= MAX_PLAINTEXT && p.len() > MAX_PLAINTEXT - 16);
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert!(v["body"].as_str().unwrap().ends_with('…'));
        assert_eq!(v["url"], "https://x.example/a");
    }
}
