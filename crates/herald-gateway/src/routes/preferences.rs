//! A user's fallback preferences (user token) and contact data (service key): stored as
//! given once valid; the fallback worker reads them at send time (docs/channels.md).

use actix_web::{web, HttpResponse};
use herald_core::fallback::PreferencesExt;
use herald_protocol::prefs::{Contact, ContactResponse, Preferences};
use herald_protocol::ErrorCode;

use crate::auth::Scope;
use crate::error::{optional_json_body, read_small_body, ApiError};
use crate::routes::extract::{Service, User};
use crate::state::AppState;

/// Longest email address (RFC 5321 path limit) and locale tag.
const MAX_EMAIL: usize = 254;
const MAX_LOCALE: usize = 35;

/// `GET /v1/me/preferences`: the stored preferences, or the empty ones (every channel on).
pub async fn get(user: User, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let prefs = match state.store.preferences(&user.id).await? {
        // Stored ones always parsed when they were stored.
        Some(v) => serde_json::from_value(v).unwrap_or_default(),
        None => Preferences::default(),
    };
    Ok(HttpResponse::Ok().json(prefs))
}

/// `GET /v1/me/preferences/schema`: the types, channels and defaults a preferences form can
/// offer (the server's `HERALD_FALLBACK_TYPES`); the same for every user.
pub async fn schema(_user: User, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(
        HttpResponse::Ok().json(herald_core::fallback::prefs::schema(
            &state.config.fallback.rules,
        )),
    )
}

/// `PUT /v1/me/preferences`: replaces the preferences (an empty body resets them).
pub async fn put(
    user: User,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_small_body(body).await?;
    let prefs: Preferences = optional_json_body(&body)?;
    prefs.validate().map_err(|e| {
        ApiError::field(
            ErrorCode::ValidationFailed,
            &e.field,
            format!("{}: {}", e.field, e.message),
        )
    })?;
    let json = serde_json::to_value(&prefs)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("encoding preferences: {e}")))?;
    state.store.set_preferences(&user.id, &json).await?;
    Ok(HttpResponse::Ok().json(prefs))
}

/// An address the SMTP envelope can carry: `local@domain`, printable ASCII or UTF-8 without
/// spaces, controls or angle brackets, one `@`, a dotted domain.
pub fn check_email(e: &str) -> Result<(), &'static str> {
    if e.is_empty() || e.len() > MAX_EMAIL {
        return Err("must be 1 to 254 bytes");
    }
    if e.chars()
        .any(|c| c.is_control() || c.is_whitespace() || "<>,;\"\\".contains(c))
    {
        return Err("may not contain spaces, control characters or <>,;\"\\");
    }
    match e.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => Err("must be local@domain"),
    }
}

/// A BCP 47-shaped tag: 2 to 35 of `[A-Za-z0-9-]`, starting with a letter.
pub fn check_locale(l: &str) -> Result<(), &'static str> {
    let ok = (2..=MAX_LOCALE).contains(&l.len())
        && l.starts_with(|c: char| c.is_ascii_alphabetic())
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err("must be a language tag such as en or de-CH")
    }
}

/// `PUT /v1/users/{user_id}/contact` (service key, `publish` scope).
pub async fn put_contact(
    service: Service,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    service.require(&state, Scope::Publish)?;
    let user_id = super::extract::path_user_id(path)?;
    let body = read_small_body(body).await?;
    let c: Contact = optional_json_body(&body)?;
    if let Some(e) = &c.email {
        check_email(e).map_err(|m| {
            ApiError::field(ErrorCode::ValidationFailed, "email", format!("email {m}"))
        })?;
    }
    if let Some(l) = &c.locale {
        check_locale(l).map_err(|m| {
            ApiError::field(ErrorCode::ValidationFailed, "locale", format!("locale {m}"))
        })?;
    }
    state
        .store
        .set_contact(&user_id, c.email.as_deref(), c.locale.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(ContactResponse {
        user_id,
        email: c.email,
        locale: c.locale,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_and_locales() {
        assert!(check_email("ana@example.com").is_ok());
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "a b@example.com",
            "ana@example",
            "a@b@c.d",
            "a\r\n@x.y",
            "<a@b.c>",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
        assert!(check_locale("de-CH").is_ok());
        for bad in ["d", "1e", "de_CH", "de CH", ""] {
            assert!(check_locale(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// An accepted address never carries what could break a mail header.
        #[test]
        fn accepted_emails_are_header_safe(s in ".{0,80}") {
            if check_email(&s).is_ok() {
                prop_assert!(!s.contains(['\r', '\n', '<', '>', ',', ' ']));
                prop_assert_eq!(s.matches('@').count(), 1);
            }
        }
    }
}
