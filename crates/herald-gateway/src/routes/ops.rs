use actix_web::http::header::CACHE_CONTROL;
use actix_web::{web, HttpResponse};
use herald_protocol::http::Health;
use herald_protocol::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
        node_id: state.config.node_id.clone(),
        postgres: None,
        redis: None,
    })
}

/// Ready (200) when PostgreSQL answers and the node is not draining. Redis is only the fast
/// path: without it the node still commits publishes and catches sockets up, so it stays in
/// the load balancer and reports `degraded` with `redis: false`. (Every node shares one
/// Redis; failing readiness on it would take the whole cluster out of the balancer.)
/// Answered from the last background check (`crate::health`), never from a round trip.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let pg_ok = state.health.postgres();
    let redis_ok = state.health.redis();
    let draining = state.is_draining();
    let status = if draining {
        "draining"
    } else if !pg_ok {
        "unavailable"
    } else if !redis_ok {
        "degraded"
    } else {
        "ready"
    };
    let body = Health {
        status: status.into(),
        node_id: state.config.node_id.clone(),
        postgres: Some(pg_ok),
        redis: Some(redis_ok),
    };
    if status == "ready" || status == "degraded" {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /v1/openapi.json`: the OpenAPI document, rendered once at start (`crate::openapi`).
pub async fn openapi() -> Result<HttpResponse, ApiError> {
    let doc = crate::openapi::rendered()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the OpenAPI document is not built"))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((CACHE_CONTROL, crate::openapi::CACHE_CONTROL))
        .body(doc))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    use crate::metrics::raise_to;
    let m = &state.metrics;
    let b = state.bus.metrics();
    m.bus_subscribed_users
        .set(state.bus.subscribed_users() as i64);
    m.bus_connected.set(i64::from(state.bus.is_connected()));
    raise_to(&m.bus_reconnects, b.reconnects);
    raise_to(&m.bus_resyncs, b.resyncs);
    raise_to(&m.bus_probe_failures, b.probe_failures);
    raise_to(&m.bus_messages_received, b.messages_received);
    raise_to(&m.bus_decode_errors, b.decode_errors);
    m.http_connections.set(state.edge.connections.open() as i64);
    m.preauth_sockets.set(state.edge.preauth.waiting() as i64);
    m.max_connections.set(state.config.max_connections as i64);
    raise_to(&m.accept_errors, crate::fds::AcceptErrors::total());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(m.render())
}
