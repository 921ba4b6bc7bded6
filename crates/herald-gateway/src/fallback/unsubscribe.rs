//! One-click unsubscribe tokens: `v1.<user>.<scope>.<mac>`, each part base64url without
//! padding, `mac` = HMAC-SHA256(`HERALD_EMAIL_UNSUBSCRIBE_SECRET`, "unsubscribe\0" user "\0"
//! scope). Unforgeable without the secret, so the link needs no login; it never expires
//! (mail is read late), and rotating the secret invalidates every link sent before.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The longest token accepted (a 128-byte user id and a 64-byte type fit well within).
pub const MAX_TOKEN: usize = 512;

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token at all (400).
    Malformed,
    /// Well-formed, but not signed with this server's secret (403).
    Forged,
}

fn mac(key: &[u8], user: &str, scope: &str) -> Option<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).ok()?;
    m.update(b"unsubscribe\0");
    m.update(user.as_bytes());
    m.update(b"\0");
    m.update(scope.as_bytes());
    Some(m)
}

/// The token of (`user`, `scope`); `scope` is a notification type or `*`.
pub fn token(key: &[u8], user: &str, scope: &str) -> String {
    let sig = mac(key, user, scope)
        .map(|m| m.finalize().into_bytes().to_vec())
        .unwrap_or_default();
    format!(
        "v1.{}.{}.{}",
        B64.encode(user),
        B64.encode(scope),
        B64.encode(sig)
    )
}

/// The (user, scope) a token names, if this server signed it.
pub fn verify(key: &[u8], token: &str) -> Result<(String, String), TokenError> {
    if token.len() > MAX_TOKEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some("v1"), Some(u), Some(s), Some(sig), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    let text = |p: &str| {
        B64.decode(p)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::Malformed)
    };
    let (user, scope) = (text(u)?, text(s)?);
    let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
    let m = mac(key, &user, &scope).ok_or(TokenError::Forged)?;
    // Constant time.
    m.verify_slice(&sig).map_err(|_| TokenError::Forged)?;
    Ok((user, scope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_refusals() {
        let t = token(KEY, "ana", "*");
        assert_eq!(verify(KEY, &t), Ok(("ana".into(), "*".into())));
        assert_eq!(
            verify(b"another key, another key, another", &t),
            Err(TokenError::Forged)
        );
        // Another user with the same signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let bob = B64.encode("bob");
        parts[1] = &bob;
        assert_eq!(verify(KEY, &parts.join(".")), Err(TokenError::Forged));
        for bad in [
            "",
            "v1",
            "v2.YQ.Kg.AA",
            "v1.YQ.Kg",
            "v1.!!.Kg.AA",
            "v1..Kg.AA",
        ] {
            assert_eq!(verify(KEY, bad), Err(TokenError::Malformed), "{bad}");
        }
        assert_eq!(
            verify(KEY, &"a".repeat(MAX_TOKEN + 1)),
            Err(TokenError::Malformed)
        );
    }

    proptest! {
        /// A token verifies to what it was made of; changing any one character breaks it.
        #[test]
        fn tokens_verify_and_tampering_fails(user in "[a-z0-9@.]{1,40}", scope in "[a-z*._]{1,20}", pos in 0usize..200) {
            let t = token(KEY, &user, &scope);
            prop_assert_eq!(verify(KEY, &t), Ok((user, scope)));
            let i = pos % t.len();
            let mut b = t.into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(b).unwrap();
            prop_assert!(verify(KEY, &tampered).is_err());
        }
    }
}
