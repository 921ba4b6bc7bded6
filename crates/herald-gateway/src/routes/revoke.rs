//! `POST /v1/users/{user_id}/revoke`: revoke a user's sessions (service key, `revoke` scope).
//!
//! The cut-off is committed to PostgreSQL first (the durable record every node reads), then
//! applied on this node at once, then announced on the bus so every other node reads it
//! within about a second (or at its next refresh, if the bus is down).

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use herald_protocol::bus::BusMessage;
use herald_protocol::http::{RevokeRequest, RevokeResponse};
use herald_protocol::ErrorCode;

use crate::auth::Scope;
use crate::error::{optional_json_body, read_small_body, ApiError};
use crate::routes::extract::Service;
use crate::state::AppState;

/// How far in the future `issued_before` may be (clock skew between the caller and us).
const MAX_FUTURE: chrono::Duration = chrono::Duration::seconds(60);

pub async fn revoke(
    service: Service,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    service.require(&state, Scope::Revoke)?;
    let user_id = super::extract::path_user_id(path)?;
    let body = read_small_body(body).await?;
    let req: RevokeRequest = optional_json_body(&body)?;
    let before = req
        .issued_before
        .as_deref()
        .map(|t| parse_cut_off(t, Utc::now()))
        .transpose()?;

    let revoked_before = state.store.revoke(&user_id, before).await?;
    // This node at once (the bus would also tell it, a moment later).
    let now = Utc::now();
    crate::revocation::apply(
        &state,
        &[herald_store::Revocation {
            user_id: user_id.clone(),
            revoked_before,
            revoked_at: now,
        }],
    );
    if let Err(e) = state
        .bus
        .broadcast(BusMessage::Revoked {
            user_id: user_id.clone(),
        })
        .await
    {
        // Durable already: the other nodes read it at their next refresh.
        tracing::warn!(user = %user_id, error = %e, "revocation not announced on the bus; nodes learn it at their next refresh");
    }
    Ok(HttpResponse::Ok().json(RevokeResponse {
        user_id,
        revoked_before,
    }))
}

/// `issued_before`: an RFC 3339 time with an offset, at most [`MAX_FUTURE`] after `now`.
fn parse_cut_off(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let bad = |why: &str| {
        ApiError::field(
            ErrorCode::ValidationFailed,
            "issued_before",
            format!("issued_before: {why}"),
        )
    };
    let t = DateTime::parse_from_rfc3339(text)
        .map_err(|e| bad(&format!("not an RFC 3339 time with an offset ({e})")))?
        .with_timezone(&Utc);
    if t > now + MAX_FUTURE {
        return Err(bad("must not be more than 60 s in the future"));
    }
    if t.timestamp() < 0 {
        return Err(bad("must not be before 1970"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_offs_are_rfc3339_not_far_in_the_future() {
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(parse_cut_off("2029-12-31T23:00:00Z", now).is_ok());
        assert!(parse_cut_off("2030-01-01T01:00:30+01:00", now).is_ok());
        for bad in [
            "2029-12-31",
            "2029-12-31T23:00:00",
            "yesterday",
            "2030-01-01T00:05:00Z",
            "1969-12-31T23:59:59Z",
            "",
        ] {
            let e = parse_cut_off(bad, now).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("issued_before"), "{bad}");
        }
    }
}
