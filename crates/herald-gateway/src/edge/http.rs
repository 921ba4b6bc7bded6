//! The middleware every plain HTTP request passes: tokens in the URL are refused, the whole
//! request (head, body and handler) is bounded by `HERALD_REQUEST_TIMEOUT_MS`, and each
//! request is logged with its client address and, for the user API, its user.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::ConnectionType;
use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::{HttpMessage as _, ResponseError};
use herald_protocol::ErrorCode;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::ws::{has_token_param, token_in_url};

/// The user a request acted for, set by the user-token extractor for the request log.
#[derive(Debug, Clone)]
pub struct LoggedUser(pub String);

/// Paths polled by balancers and scrapers: logged at debug, not info.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// See the module doc. `client` is the client's address as [`super::Edge::client_ip`]
/// resolves it.
pub fn middleware<S, B>(
    req: ServiceRequest,
    srv: &S,
    timeout: Duration,
    client: Option<std::net::IpAddr>,
    drain: CancellationToken,
    metrics: Arc<Metrics>,
) -> impl Future<Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: 'static,
{
    let method = req.method().clone();
    let path = req.path().to_owned();
    // The route pattern (`/v1/notifications/{id}`), not the path: a bounded label set.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let client = super::addr::ClientLog(client);
    let in_flight = req
        .conn_data::<super::conn::Requests>()
        .map(super::conn::Requests::enter);
    let step = if has_token_param(req.query_string()) {
        tracing::warn!(%method, %path, %client, "refused a token in the URL");
        Err(req
            .into_response(token_in_url().error_response())
            .map_into_right_body())
    } else {
        Ok(srv.call(req))
    };
    async move {
        let fut = match step {
            Err(refused) => return Ok(refused),
            Ok(call) => call,
        };
        let started = Instant::now();
        let _in_flight = in_flight;
        let mut res = match tokio::time::timeout(timeout, fut).await {
            Ok(res) => res?.map_into_left_body(),
            Err(_) => {
                // The request is no longer at hand to build a response around: the error is
                // rendered by the server (`ApiError::error_response` closes the connection).
                tracing::info!(%method, %path, status = 408, ms = timeout.as_millis() as f64,
                    %client, user = "-", "request");
                metrics.observe_http(&route, &method, 408, timeout.as_secs_f64());
                return Err(ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "the request was not complete within {} ms",
                        timeout.as_millis()
                    ),
                )
                .into());
            }
        };
        if drain.is_cancelled() {
            // Draining: this connection takes no further request.
            res.response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
        let status = res.status().as_u16();
        let secs = started.elapsed().as_secs_f64();
        metrics.observe_http(&route, &method, status, secs);
        let ms = secs * 1000.0;
        let user = res
            .request()
            .extensions()
            .get::<LoggedUser>()
            .map(|u| u.0.clone());
        let user = user.as_deref().unwrap_or("-");
        if is_probe(&path) {
            tracing::debug!(%method, %path, status, ms, %client, "request");
        } else {
            tracing::info!(%method, %path, status, ms, %client, user, "request");
        }
        Ok(res)
    }
}
