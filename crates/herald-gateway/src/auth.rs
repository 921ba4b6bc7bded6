//! User tokens (JWT) and service API keys.
//!
//! The algorithm is never taken on trust from the token: an HS256 token is checked only
//! against the configured shared secret, an RS256/ES256/EdDSA token only against public keys
//! of that algorithm, configured as files or fetched from the identity provider's JWKS URL
//! ([`crate::jwks`]) (selected by `kid` when present; an HS256 token with a `kid` is refused,
//! the secret has none). `alg: none` and unknown algorithms are refused when the
//! header is parsed; an `exp` after the year 9999 is refused. `exp` and `sub` are required; `aud`/`iss` are
//! enforced when configured. Error messages never contain the token.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jsonwebtoken::{
    decode, decode_header, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::JwtConfig;
use crate::jwks::Jwks;
use herald_core::validate_user_id;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed or uses an unsupported algorithm")]
    Malformed,
    #[error("token algorithm {0} is not accepted by this server")]
    AlgorithmNotAccepted(String),
    #[error("token key id is unknown")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is missing the required claim {0}")]
    MissingClaim(&'static str),
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token subject is not a valid user id")]
    InvalidSubject,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token exp is out of range (after the year 9999)")]
    ExpOutOfRange,
    /// Valid, but its user's sessions were revoked after it was issued (see
    /// `crate::revocation`); set by `AppState::verify_user`, not by the verifier.
    #[error("token revoked: the user's sessions were revoked after it was issued (or it has no iat); get a new token")]
    Revoked,
}

/// The latest `exp` accepted: 9999-12-31T23:59:59Z. A later one is refused as absurd rather
/// than carried into deadline arithmetic (Unix milliseconds overflow an i64 near 9.2e15 s).
pub const MAX_EXP: i64 = 253_402_300_799;

impl TokenError {
    pub fn is_expired(&self) -> bool {
        matches!(self, TokenError::Expired)
    }

    /// The error code an HTTP refusal or an `error` event carries.
    pub fn error_code(&self) -> herald_protocol::ErrorCode {
        use herald_protocol::ErrorCode;
        match self {
            TokenError::Expired => ErrorCode::TokenExpired,
            TokenError::Revoked => ErrorCode::TokenRevoked,
            _ => ErrorCode::Unauthorized,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user_id: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// `iat`, unix seconds, when the token has one (revocations compare it with their cut-off).
    pub issued_at: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(deserialize_with = "sub_as_string")]
    sub: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
}

/// `sub` as a string; a non-negative integer `sub` (the NestJS seed signs `{ sub: user.id }`
/// with a numeric id) as its decimal string, so `7` and `"7"` name the same user.
fn sub_as_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Sub {
        Text(String),
        Number(u64),
    }
    Ok(match Sub::deserialize(d)? {
        Sub::Text(s) => s,
        Sub::Number(n) => n.to_string(),
    })
}

struct KeyEntry {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies user tokens; built once from config and shared.
pub struct TokenVerifier {
    hs256: Option<DecodingKey>,
    keys: Vec<KeyEntry>,
    /// Keys from the identity provider's JWKS URL, beside the configured ones.
    jwks: Option<Arc<Jwks>>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("public key {path}: {message}")]
pub struct KeyLoadError {
    pub path: String,
    pub message: String,
}

impl TokenVerifier {
    pub fn from_config(cfg: &JwtConfig) -> Result<TokenVerifier, KeyLoadError> {
        let mut keys = Vec::new();
        for pk in &cfg.public_keys {
            let path = pk.path.display().to_string();
            let pem = std::fs::read(&pk.path).map_err(|e| KeyLoadError {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let (alg, key) = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                (Algorithm::RS256, k)
            } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                (Algorithm::ES256, k)
            } else if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
                (Algorithm::EdDSA, k)
            } else {
                return Err(KeyLoadError {
                    path,
                    message: "not an RSA, EC (P-256) or Ed25519 public key in PEM format".into(),
                });
            };
            keys.push(KeyEntry {
                kid: pk.kid.clone(),
                alg,
                key,
            });
        }
        Ok(TokenVerifier {
            hs256: cfg
                .hs256_secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes())),
            keys,
            jwks: None,
            audience: cfg.audience.clone(),
            issuer: cfg.issuer.clone(),
            leeway: cfg.leeway_secs,
        })
    }

    /// Adds the identity provider's keys (`HERALD_JWT_JWKS_URL`).
    pub fn with_jwks(mut self, jwks: Arc<Jwks>) -> TokenVerifier {
        self.jwks = Some(jwks);
        self
    }

    /// Whether `token` names a `kid` this verifier does not hold while a JWKS URL is set: the
    /// caller should await [`TokenVerifier::refresh_keys`] before [`TokenVerifier::verify`],
    /// so a key rotated in at the provider is accepted at its first use.
    pub fn needs_refresh(&self, token: &str) -> bool {
        let Some(jwks) = &self.jwks else {
            return false;
        };
        let Ok(header) = decode_header(token) else {
            return false;
        };
        match (&header.alg, &header.kid) {
            (Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA, Some(kid)) => {
                !jwks.knows(kid) && !self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
            }
            _ => false,
        }
    }

    /// Fetches the JWKS again, rate-limited (see [`crate::jwks`]). Boxed, so an awaiting
    /// socket task stays small.
    pub fn refresh_keys(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if let Some(jwks) = &self.jwks {
                jwks.refetch_if_allowed().await;
            }
        })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        // `sub` is required by `Claims` itself (a missing one is reported as such): the
        // library's own check would refuse a numeric `sub`, which `sub_as_string` accepts.
        let mut required: HashSet<String> = ["exp"].iter().map(|s| s.to_string()).collect();
        match &self.audience {
            Some(a) => {
                v.set_audience(&[a]);
                required.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
            required.insert("iss".into());
        }
        v.required_spec_claims = required;
        v
    }

    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        let provider_keys = self.jwks.as_ref().map(|j| j.keys());
        let candidates: Vec<&DecodingKey> = match header.alg {
            // The shared secret has no key id: a token naming one asks for a key this server
            // does not have.
            Algorithm::HS256 if header.kid.is_some() => return Err(TokenError::UnknownKey),
            Algorithm::HS256 => match &self.hs256 {
                Some(k) => vec![k],
                None => return Err(TokenError::AlgorithmNotAccepted("HS256".into())),
            },
            alg @ (Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA) => {
                let of_alg: Vec<(&Option<String>, &DecodingKey)> = self
                    .keys
                    .iter()
                    .filter(|k| k.alg == alg)
                    .map(|k| (&k.kid, &k.key))
                    .chain(
                        provider_keys
                            .iter()
                            .flat_map(|set| set.iter())
                            .filter(|k| k.alg == alg)
                            .map(|k| (&k.kid, &k.key)),
                    )
                    .collect();
                if of_alg.is_empty() {
                    // With a JWKS URL, an algorithm without keys may be a key rotated in.
                    if self.jwks.is_some() && header.kid.is_some() {
                        return Err(TokenError::UnknownKey);
                    }
                    return Err(TokenError::AlgorithmNotAccepted(format!("{alg:?}")));
                }
                match &header.kid {
                    Some(kid) => {
                        let hit: Vec<&DecodingKey> = of_alg
                            .iter()
                            .filter(|(k, _)| k.as_deref() == Some(kid.as_str()))
                            .map(|(_, key)| *key)
                            .collect();
                        if hit.is_empty() {
                            return Err(TokenError::UnknownKey);
                        }
                        hit
                    }
                    None => of_alg.iter().map(|(_, key)| *key).collect(),
                }
            }
            other => return Err(TokenError::AlgorithmNotAccepted(format!("{other:?}"))),
        };
        let validation = self.validation(header.alg);
        let mut last = TokenError::BadSignature;
        for key in candidates {
            match decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    validate_user_id(&data.claims.sub).map_err(|_| TokenError::InvalidSubject)?;
                    if data.claims.exp > MAX_EXP {
                        return Err(TokenError::ExpOutOfRange);
                    }
                    return Ok(VerifiedToken {
                        user_id: data.claims.sub,
                        expires_at: data.claims.exp,
                        issued_at: data.claims.iat,
                    });
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::InvalidSignature => TokenError::BadSignature,
                        K::ExpiredSignature => return Err(TokenError::Expired),
                        K::ImmatureSignature => return Err(TokenError::NotYetValid),
                        K::InvalidAudience => return Err(TokenError::WrongAudience),
                        K::InvalidIssuer => return Err(TokenError::WrongIssuer),
                        K::MissingRequiredClaim(c) => {
                            return Err(TokenError::MissingClaim(match c.as_str() {
                                "exp" => "exp",
                                "sub" => "sub",
                                "aud" => "aud",
                                "iss" => "iss",
                                _ => "unknown",
                            }))
                        }
                        // A claim with the wrong type (e.g. `exp` missing from our struct) is
                        // reported by serde as a JSON error.
                        K::Json(err) if err.to_string().contains("missing field `exp`") => {
                            return Err(TokenError::MissingClaim("exp"))
                        }
                        K::Json(err) if err.to_string().contains("missing field `sub`") => {
                            return Err(TokenError::MissingClaim("sub"))
                        }
                        _ => TokenError::Malformed,
                    };
                }
            }
        }
        Err(last)
    }
}

/// Mints a development token (HS256). Used by `herald token` and the dev endpoints.
pub fn mint_dev_token(
    cfg: &JwtConfig,
    user_id: &str,
    ttl_secs: i64,
) -> Result<(String, i64), anyhow::Error> {
    let secret: &SecretString = cfg
        .hs256_secret
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("HERALD_JWT_HS256_SECRET is required to mint tokens"))?;
    validate_user_id(user_id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = chrono::Utc::now().timestamp();
    let exp = now + ttl_secs;
    let mut claims = serde_json::json!({ "sub": user_id, "exp": exp, "iat": now });
    if let Some(a) = &cfg.audience {
        claims["aud"] = serde_json::Value::String(a.clone());
    }
    if let Some(i) = &cfg.issuer {
        claims["iss"] = serde_json::Value::String(i.clone());
    }
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )?;
    Ok((token, exp))
}

/// What a service key may call. `HERALD_SERVICE_KEYS` keys hold every scope; a key in
/// `HERALD_SCOPED_SERVICE_KEYS` only those it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `POST /v1/notifications`.
    Publish,
    /// `POST /v1/broadcasts`.
    Broadcast,
    /// `POST /v1/users/{user_id}/revoke`.
    Revoke,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Publish, Scope::Broadcast, Scope::Revoke];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Broadcast => "broadcast",
            Scope::Revoke => "revoke",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Publish => 1,
            Scope::Broadcast => 2,
            Scope::Revoke => 4,
        }
    }
}

/// A set of [`Scope`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub const ALL: Scopes = Scopes(1 | 2 | 4);

    pub fn allows(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// `publish+broadcast` → those two. Every name must be a known scope; at least one.
    pub fn parse(spec: &str) -> Result<Scopes, String> {
        let mut bits = 0;
        for name in spec.split('+').map(str::trim) {
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| {
                    format!("unknown scope {name:?} (scopes: publish, broadcast, revoke)")
                })?;
            bits |= scope.bit();
        }
        Ok(Scopes(bits))
    }
}

/// Which configured service key `presented` is, comparing with every key in constant time.
pub fn service_key_index(keys: &[SecretString], presented: &str) -> Option<usize> {
    let mut hit = None;
    for (i, k) in keys.iter().enumerate() {
        if constant_time_eq::constant_time_eq(k.expose_secret().as_bytes(), presented.as_bytes()) {
            hit = Some(i);
        }
    }
    hit
}

/// A stable, non-secret name for a service key: the first 8 bytes of its SHA-256, in hex.
/// Idempotency keys are scoped by it, so two services (two keys) never share one.
pub fn service_key_scope(key: &SecretString) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.expose_secret().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `Authorization: Bearer <x>` → `x`.
pub fn bearer(req: &actix_web::HttpRequest) -> Option<&str> {
    bearer_in(req.headers())
}

/// [`bearer`] over a bare header map (the WebSocket upgrade hook has no `HttpRequest`).
pub fn bearer_in(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    let v = headers.get(actix_web::http::header::AUTHORIZATION)?;
    let s = v.to_str().ok()?;
    let (scheme, rest) = s.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
        Some(rest.trim())
    } else {
        None
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    #[test]
    fn scopes_parse_strictly() {
        let s = Scopes::parse("publish+revoke").unwrap();
        assert!(s.allows(Scope::Publish) && s.allows(Scope::Revoke));
        assert!(!s.allows(Scope::Broadcast));
        assert!(Scope::ALL.into_iter().all(|x| Scopes::ALL.allows(x)));
        for bad in ["", "publish+", "Publish", "publish+admin", "*"] {
            assert!(Scopes::parse(bad).is_err(), "{bad:?}");
        }
    }
}
