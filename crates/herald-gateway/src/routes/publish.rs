//! Service endpoints: publish (durable, then fanned out) and broadcast (ephemeral).

use std::time::Instant;

use actix_web::{web, HttpResponse};
use herald_core::{validate_broadcast, validate_publish, NewNotification};
use herald_protocol::bus::BusMessage;
use herald_protocol::http::{BroadcastRequest, BroadcastResponse, PublishRequest, PublishResponse};
use herald_protocol::{Broadcast, ErrorCode};
use herald_store::{Committed, PublishOutcome, StoreError};

use crate::auth::Scope;
use crate::error::{from_json_value, ApiError};
use crate::publisher::{response_body, PublishError};
use crate::routes::extract::Service;
use crate::state::AppState;

pub async fn publish(
    service: Service,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    service.require(&state, Scope::Publish)?;
    service.check_publish(&state)?;
    let req: PublishRequest = from_json_value(body.into_inner())?;
    let scope = req.idempotency_key.is_some().then(|| service.scope(&state));
    publish_validated(&state, req, scope.as_deref()).await
}

/// Validates, commits, and only then fans out. The response is sent after the commit, so
/// an acknowledged notification is durable whether or not the Redis publish succeeds (if it
/// fails, receivers catch up through reconcile or their next connect).
///
/// An idempotency key is stored as `<scope>:<key>`, so callers with different service keys
/// (`scope`) never answer each other's retries.
pub async fn publish_validated(
    state: &AppState,
    req: PublishRequest,
    scope: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let outcome = async {
        let mut n = validate_publish(req)?;
        if let Some(f) = &n.fallback {
            check_fallback_channels(state, f)?;
        }
        if let Some(k) = n.idempotency_key.as_mut() {
            *k = format!("{}:{k}", scope.unwrap_or_default());
        }
        if n.idempotency_key.is_some() {
            // Keyed publishes need their own transaction to claim the key. Boxed: its
            // future is most of this one's size, and every call would otherwise allocate
            // (and copy) room for it.
            return Box::pin(publish_keyed(state, n)).await;
        }
        // The publisher commits and fans out the whole batch, then answers.
        let (response, _) = state.publisher.publish(n).await.map_err(publish_error)?;
        Ok(Answer::Created(response))
    }
    .await;
    let m = &state.metrics;
    let resp = match outcome {
        Ok(Answer::Created(response)) => {
            m.publish_requests.with_label_values(&["created"]).inc();
            Ok(HttpResponse::Created().json(response))
        }
        Ok(Answer::Replayed(response)) => {
            m.publish_requests.with_label_values(&["replayed"]).inc();
            Ok(HttpResponse::Ok()
                .insert_header(("Idempotent-Replayed", "true"))
                .json(response))
        }
        Err(e) => {
            m.publish_requests
                .with_label_values(&[e.code.as_str()])
                .inc();
            if e.code == ErrorCode::ServiceUnavailable || e.code == ErrorCode::Internal {
                m.store_errors.with_label_values(&["publish"]).inc();
            }
            Err(e)
        }
    };
    m.publish_seconds.observe(started.elapsed().as_secs_f64());
    resp
}

async fn publish_keyed(state: &AppState, n: NewNotification) -> Result<Answer, ApiError> {
    Ok(match state.store.publish(&n, &idempotency_record).await? {
        PublishOutcome::Created(committed) => {
            let response = response_body(&committed);
            state.publisher.fanout().send(committed.items).await;
            Answer::Created(response)
        }
        PublishOutcome::Replayed(record) => {
            let response: PublishResponse = serde_json::from_value(record).map_err(|e| {
                StoreError::Internal(format!(
                    "publish: reading the idempotency record: stored response unreadable: {e}"
                ))
            })?;
            Answer::Replayed(response)
        }
    })
}

/// What a keyed publish stores with its key: the response body, replayed to a retry.
fn idempotency_record(c: &Committed) -> serde_json::Result<serde_json::Value> {
    serde_json::to_value(response_body(c))
}

/// What a publish call answers, once committed (and fanned out, for new rows).
enum Answer {
    Created(PublishResponse),
    Replayed(PublishResponse),
}

fn publish_error(e: PublishError) -> ApiError {
    match e {
        PublishError::Store(e) => e.into(),
        PublishError::QueueFull | PublishError::Stopped => {
            ApiError::new(ErrorCode::ServiceUnavailable, format!("{e}; retry later"))
        }
    }
}

pub async fn broadcast(
    service: Service,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    service.require(&state, Scope::Broadcast)?;
    service.check_broadcast(&state)?;
    let req: BroadcastRequest = from_json_value(body.into_inner())?;
    validate_broadcast(&req)?;
    let b = Broadcast {
        id: uuid::Uuid::now_v7(),
        kind: req.kind,
        title: req.title,
        body: req.body,
        link: req.link.filter(|l| !l.is_empty()),
        data: req.data.filter(|d| !d.is_null()),
        created_at: chrono::Utc::now(),
    };
    let id = b.id;
    let nodes = state
        .bus
        .broadcast(BusMessage::Broadcast { broadcast: b })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "broadcast failed");
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                "the fan-out bus is unavailable; broadcast not sent",
            )
        })?;
    Ok(HttpResponse::Accepted().json(BroadcastResponse { id, nodes }))
}

/// A publish may only name fallback channels this node has set up; naming one that is not is
/// refused rather than silently never sent.
fn check_fallback_channels(
    state: &AppState,
    f: &herald_core::fallback::FallbackOverride,
) -> Result<(), ApiError> {
    let available = state.config.fallback.available_channels();
    let missing = f.unavailable(&available);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|c| c.as_str()).collect();
    Err(ApiError::field(
        ErrorCode::ValidationFailed,
        "fallback.channels",
        format!(
            "fallback.channels: {} not set up on this server (set up: {})",
            names.join(", "),
            if available.is_empty() {
                "none".to_owned()
            } else {
                available
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: FnOnce(Service, web::Data<AppState>, web::Json<serde_json::Value>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every publish call allocates its handler's future. With the keyed path (its own
    /// transaction) inlined it was 8,432 bytes; boxed, the group-commit path is about 1.2 KiB.
    #[test]
    fn the_publish_handler_future_stays_small() {
        let size = future_size(publish);
        assert!(size < 2048, "publish handler future is {size} bytes");
    }
}
