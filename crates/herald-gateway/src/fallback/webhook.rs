//! The webhook channel: a POST of the notification to the configured endpoint, signed the
//! Standard Webhooks way. `webhook-id` is stable per (notification, channel), so a receiver
//! deduplicates retries on it; `webhook-timestamp` is the attempt's Unix time;
//! `webhook-signature` is `v1,` + base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")), the
//! key being the base64 after `whsec_` in `HERALD_FALLBACK_WEBHOOK_SECRET`.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use herald_protocol::Notification;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// Secret key length after decoding, as Standard Webhooks recommends.
pub const KEY_LEN: (usize, usize) = (24, 64);

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub key: Arc<SecretSlice<u8>>,
    pub timeout: Duration,
}

/// `whsec_<base64>` → the key bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("must start with whsec_ followed by the base64 of the key")?;
    let key = B64
        .decode(b64)
        .map_err(|_| "the part after whsec_ is not valid base64".to_owned())?;
    let (lo, hi) = KEY_LEN;
    if key.len() < lo || key.len() > hi {
        return Err(format!(
            "the key must be {lo} to {hi} bytes, got {}",
            key.len()
        ));
    }
    Ok(key)
}

/// The `webhook-signature` value of one request.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The request body: `{"type":"notification.fallback","timestamp":…,"data":{…}}`.
pub fn body(n: &Notification, attempt: i32) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&serde_json::json!({
        "type": "notification.fallback",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": {
            "channel": "webhook",
            "attempt": attempt,
            "notification": n,
        }
    }))
}

/// Sends one attempt. `Ok` on a 2xx answer; otherwise why not.
pub async fn send(
    http: &reqwest::Client,
    cfg: &WebhookConfig,
    id: &str,
    n: &Notification,
    attempt: i32,
) -> Result<(), String> {
    let body = body(n, attempt).map_err(|e| format!("encoding the body: {e}"))?;
    let ts = chrono::Utc::now().timestamp();
    let signature = sign(cfg.key.expose_secret(), id, ts, &body);
    let resp = http
        .post(&cfg.url)
        .timeout(cfg.timeout)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        // Without the URL: an error is stored (`last_error`) and logged, and the URL may hold
        // a secret in its query.
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else if status.is_redirection() {
        Err(format!(
            "HTTP {} (redirects are not followed)",
            status.as_u16()
        ))
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference vector (the libraries' own test).
    #[test]
    fn signature_matches_the_reference_vector() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_c2hvcnQ=")
            .unwrap_err()
            .contains("24 to 64"));
    }
}
