//! HTTP routes: one module per area, each with its handlers; `configure` wires them.

#[cfg(feature = "dev-endpoints")]
pub mod dev;
pub mod email;
pub mod extract;
pub mod inbox;
pub mod ops;
pub mod preferences;
pub mod publish;
pub mod push;
pub mod revoke;
pub mod user;

use actix_cors::Cors;
use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use herald_protocol::ErrorCode;

use crate::config::Config;
use crate::error::{json_error, path_error, query_error, ApiError};

/// CORS for the configured origins (`HERALD_ALLOWED_ORIGINS`; `*` allows any).
pub fn cors(allowed: &[String]) -> Cors {
    let origins = allowed.to_vec();
    Cors::default()
        .allowed_origin_fn(move |origin, _| {
            let o = origin.to_str().unwrap_or("");
            origins.iter().any(|a| a == "*" || a == o)
        })
        .allowed_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allowed_headers(["authorization", "content-type"])
        .expose_headers(["idempotent-replayed"])
        .max_age(3600)
}

/// Every route, and the extractors' limits and JSON errors. A route added here must be
/// documented in `crate::openapi::OPERATIONS` (a unit test there parses this file).
pub fn configure(cfg: &mut web::ServiceConfig, config: &Config) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(config.max_publish_body_bytes)
            .error_handler(json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .app_data(web::PathConfig::default().error_handler(path_error));
    routes(cfg, config.dev_endpoints);
}

/// The admin listener's routes (`HERALD_ADMIN_LISTEN`): metrics, and the health endpoints
/// again so a probe can use either listener.
pub fn admin(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(ops::metrics))
        .route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz));
}

fn routes(cfg: &mut web::ServiceConfig, dev_endpoints: bool) {
    cfg.route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/v1/ws", web::get().to(crate::ws::plain_get))
        .route("/v1/openapi.json", web::get().to(ops::openapi))
        .service(
            web::resource("/v1/notifications")
                .route(web::post().to(publish::publish))
                .route(web::get().to(user::list))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/notifications/unread-count")
                .route(web::get().to(user::unread_count))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/notifications/read-all")
                .route(web::post().to(user::read_all))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/notifications/seen")
                .route(web::post().to(inbox::seen))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/notifications/bulk")
                .route(web::post().to(inbox::bulk))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/notifications/counts")
                .route(web::get().to(inbox::counts))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/notifications/{id}/archive")
                .route(web::post().to(inbox::archive))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/notifications/{id}/unarchive")
                .route(web::post().to(inbox::unarchive))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/notifications/{id}/unread")
                .route(web::post().to(inbox::unread))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/notifications/{id}/read")
                .route(web::post().to(user::mark_read))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/notifications/{id}")
                .route(web::get().to(user::get_one))
                .route(web::delete().to(inbox::delete))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/users/{user_id}/revoke")
                .route(web::post().to(revoke::revoke))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/users/{user_id}/contact")
                .route(web::put().to(preferences::put_contact))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/me/preferences")
                .route(web::get().to(preferences::get))
                .route(web::put().to(preferences::put))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/email/unsubscribe")
                .route(web::get().to(email::unsubscribe_page))
                .route(web::post().to(email::unsubscribe))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/email/suppressions")
                .route(web::get().to(email::list))
                .route(web::post().to(email::add))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/email/suppressions/{email}")
                .route(web::delete().to(email::remove))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/me/preferences/schema")
                .route(web::get().to(preferences::schema))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/me/push-subscriptions")
                .route(web::post().to(push::subscribe))
                .route(web::get().to(push::list))
                .route(web::delete().to(push::unsubscribe))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/push/vapid-public-key")
                .route(web::get().to(push::vapid_public_key))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/broadcasts")
                .route(web::post().to(publish::broadcast))
                .default_service(web::to(method_not_allowed)),
        );
    #[cfg(feature = "dev-endpoints")]
    if dev_endpoints {
        cfg.route("/dev/token", web::post().to(dev::token))
            .route("/dev/publish", web::post().to(dev::publish));
        // `/dev/echo` is WebSocket-only: served by the upgrade hook (`crate::ws::on_upgrade`).
    }
    // Without the feature the setting is refused at start, so it is always false here.
    #[cfg(not(feature = "dev-endpoints"))]
    let _ = dev_endpoints;
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this path",
    ))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "no such endpoint"))
}
