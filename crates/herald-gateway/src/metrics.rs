//! Prometheus metrics for what an operator watches: sockets, deliveries, publish latency,
//! store and bus errors.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for the publish call and its stages: fine between 1 and 30 ms, where a commit's
/// WAL flush and the latency target live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5,
];

/// Group-commit publish time by stage (`herald_publish_stage_seconds{stage}`): `queue`
/// (waiting for a batch slot), `commit` (the batch's statement and WAL flush), `fanout` (the
/// batch's Redis pipeline), `reply` (from the answer until the caller's task runs again:
/// scheduling delay). Resolved at start, so a publish does no label lookup.
/// The Engine.IO transports, the `transport` label of the Socket.IO metrics.
pub const SOCKETIO_TRANSPORTS: [&str; 2] = ["websocket", "polling"];

pub struct PublishStages {
    pub queue: Histogram,
    pub commit: Histogram,
    pub fanout: Histogram,
    pub reply: Histogram,
}

pub struct Metrics {
    registry: Registry,
    pub connections: IntGauge,
    pub connections_total: IntCounter,
    /// The Socket.IO part of `connections` / `connections_total`, by Engine.IO transport
    /// (`websocket`, `polling`): a session that upgrades moves from `polling` to `websocket`
    /// in the gauge; the counter counts it once, under the transport it connected on.
    pub socketio_connections: IntGaugeVec,
    pub socketio_connections_total: IntCounterVec,
    /// Long-polling sessions that upgraded to WebSocket.
    pub socketio_upgrades: IntCounter,
    pub closes: IntCounterVec,
    pub handshake_refusals: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub duplicates_dropped: IntCounter,
    pub gap_fills: IntCounter,
    pub syncs: IntCounter,
    pub publish_requests: IntCounterVec,
    pub published: IntCounter,
    pub publish_seconds: Histogram,
    /// `herald_publish_stage_seconds{stage}`, each stage resolved once.
    pub publish_stages: PublishStages,
    /// Recipients (rows) per group-commit batch.
    pub publish_batch_rows: Histogram,
    /// Sockets served per batched connect-time read (`read` = `user_states`, `after_seqs`).
    pub read_batch_keys: HistogramVec,
    pub store_errors: IntCounterVec,
    pub bus_publish_errors: IntCounter,
    /// `herald_fanout_late_total{outcome}`: notifications answered before their fan-out.
    pub fanout_late: IntCounterVec,
    /// `herald_bus_frames_rejected_total{reason}`: payloads from the bus that were dropped.
    pub bus_frames_rejected: IntCounterVec,
    pub delivery_marks_dropped: IntCounter,
    /// Interval flushes of the delivery tracker (tests wait on it instead of sleeping).
    pub delivery_flushes: IntCounter,
    pub idempotency_purged: IntCounter,
    /// `herald_fallback_sends_total{channel,outcome}`: fallback attempts by how they ended
    /// (sent, failed, dead, cancelled, deferred).
    pub fallback_sends: IntCounterVec,
    /// `herald_email_messages_total{outcome}`: digest emails by how the SMTP send ended
    /// (sent, bounced, rejected, failed); one email may cover several fallback jobs.
    pub email_messages: IntCounterVec,
    /// `herald_fallback_jobs_planned_total`: fallback jobs created (one per notification and
    /// channel that fell due unseen).
    pub fallback_jobs_planned: IntCounter,
    /// `herald_fallback_jobs_purged_total`: finished fallback jobs deleted after
    /// `HERALD_FALLBACK_JOB_RETENTION_HOURS`.
    pub fallback_jobs_purged: IntCounter,
    /// `herald_inbox_changes_total{action}`: notifications changed by inbox actions.
    pub inbox_changes: IntCounterVec,
    /// `herald_notifications_purged_total`: notifications deleted by the retention purge.
    pub notifications_purged: IntCounter,
    pub bus_subscribed_users: IntGauge,
    pub revocations_known: IntGauge,
    pub bus_connected: IntGauge,
    pub bus_reconnects: IntCounter,
    pub bus_resyncs: IntCounter,
    pub bus_probe_failures: IntCounter,
    pub bus_messages_received: IntCounter,
    pub bus_decode_errors: IntCounter,
    /// Size of one socket's task future: the largest part of an idle socket's memory.
    pub socket_task_bytes: IntGauge,
    /// [`crate::ws::RELEASE_TASK_BUDGET`], for checks against a running node.
    pub socket_task_budget: IntGauge,
    /// Open plain HTTP connections (set at scrape).
    pub http_connections: IntGauge,
    /// Sockets waiting to authenticate (set at scrape).
    pub preauth_sockets: IntGauge,
    pub preauth_evictions: IntCounter,
    /// Requests and handshakes refused by a rate or count limit, by limit.
    pub limited: IntCounterVec,
    pub max_connections: IntGauge,
    pub accept_errors: IntCounter,
    /// `herald_http_request_duration_seconds{route, method, status}`: every plain HTTP request
    /// by its route pattern (`unmatched` for none).
    pub http_request_seconds: HistogramVec,
    pub jwks_fetches: IntCounterVec,
    pub jwks_keys: IntGauge,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    // Registration only fails on duplicate names, which is a programming error caught by tests.
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(r, IntCounter::new(name, help).expect_ok())
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(r, IntGauge::new(name, help).expect_ok())
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect_ok(),
    )
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect_ok(),
    )
}

/// Metric constructors only fail on invalid names; ours are constants checked by a test.
trait ExpectOk<T> {
    fn expect_ok(self) -> T;
}
impl<T, E: std::fmt::Debug> ExpectOk<T> for Result<T, E> {
    #[allow(clippy::expect_used)]
    fn expect_ok(self) -> T {
        self.expect("constant metric definition")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let publish_seconds = reg(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "herald_publish_duration_seconds",
                    "Publish API latency: validation, commit and fan-out",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect_ok(),
        );
        let publish_stage_seconds = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "herald_publish_stage_seconds",
                    "Group-commit publish time by stage: queue, commit, fanout, reply",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["stage"],
            )
            .expect_ok(),
        );
        let stage = |name: &str| publish_stage_seconds.with_label_values(&[name]);
        let publish_stages = PublishStages {
            queue: stage("queue"),
            commit: stage("commit"),
            fanout: stage("fanout"),
            reply: stage("reply"),
        };
        let publish_batch_rows = reg(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "herald_publish_batch_rows",
                    "Rows (recipients) committed per group-commit batch",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
                ]),
            )
            .expect_ok(),
        );
        let read_batch_keys = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "herald_read_batch_keys",
                    "Sockets served per batched store read (counters, catch-up pages)",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ]),
                &["read"],
            )
            .expect_ok(),
        );
        let http_request_seconds = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "herald_http_request_duration_seconds",
                    "Plain HTTP requests by route pattern, method and status (WebSocket upgrades are not included)",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["route", "method", "status"],
            )
            .expect_ok(),
        );
        // The process's own resident memory, CPU seconds, open and maximum descriptors
        // (`process_*`), from /proc.
        #[cfg(target_os = "linux")]
        if let Err(e) = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::error!(error = %e, "process metrics not registered");
        }
        Metrics {
            connections: gauge(
                &r,
                "herald_connections",
                "Open authenticated WebSocket connections",
            ),
            connections_total: counter(
                &r,
                "herald_connections_total",
                "Authenticated WebSocket connections accepted",
            ),
            socketio_connections: {
                let v = gauge_vec(
                    &r,
                    "herald_socketio_connections",
                    "Open authenticated Socket.IO connections by transport (included in herald_connections)",
                    &["transport"],
                );
                for t in SOCKETIO_TRANSPORTS {
                    v.with_label_values(&[t]);
                }
                v
            },
            socketio_connections_total: {
                let v = counter_vec(
                    &r,
                    "herald_socketio_connections_total",
                    "Authenticated Socket.IO connections accepted, by the transport they connected on (included in herald_connections_total)",
                    &["transport"],
                );
                for t in SOCKETIO_TRANSPORTS {
                    v.with_label_values(&[t]);
                }
                v
            },
            socketio_upgrades: counter(
                &r,
                "herald_socketio_upgrades_total",
                "Socket.IO long-polling sessions upgraded to WebSocket",
            ),
            closes: counter_vec(
                &r,
                "herald_connection_closes_total",
                "WebSocket closes by reason",
                &["reason"],
            ),
            handshake_refusals: counter_vec(
                &r,
                "herald_handshake_refusals_total",
                "WebSocket upgrades refused before the socket opened",
                &["code"],
            ),
            deliveries: counter_vec(
                &r,
                "herald_deliveries_total",
                "Events written to sockets",
                &["kind"],
            ),
            duplicates_dropped: counter(
                &r,
                "herald_duplicates_dropped_total",
                "Live notifications dropped because the socket already had them",
            ),
            gap_fills: counter(
                &r,
                "herald_gap_fills_total",
                "Seq gaps filled from PostgreSQL",
            ),
            syncs: counter(
                &r,
                "herald_syncs_total",
                "Socket catch-ups triggered by reconcile or bus resync",
            ),
            publish_requests: counter_vec(
                &r,
                "herald_publish_requests_total",
                "Publish API calls by outcome",
                &["outcome"],
            ),
            published: counter(
                &r,
                "herald_published_notifications_total",
                "Notifications committed by this node",
            ),
            publish_seconds,
            publish_stages,
            publish_batch_rows,
            read_batch_keys,
            store_errors: counter_vec(
                &r,
                "herald_store_errors_total",
                "PostgreSQL errors by operation",
                &["op"],
            ),
            bus_publish_errors: counter(
                &r,
                "herald_bus_publish_errors_total",
                "Redis publish failures (delivery falls back to catch-up)",
            ),
            fanout_late: {
                let v = counter_vec(
                    &r,
                    "herald_fanout_late_total",
                    "Published notifications answered before their Redis fan-out finished (HERALD_FANOUT_WAIT_MS): continued in the background, or abandoned to reconcile when too many were late",
                    &["outcome"],
                );
                for o in ["continued", "abandoned"] {
                    v.with_label_values(&[o]);
                }
                v
            },
            bus_frames_rejected: {
                let v = counter_vec(
                    &r,
                    "herald_bus_frames_rejected_total",
                    "Payloads received from the bus and dropped, by reason (malformed, wrong_user, missing_tag, bad_tag, seq_not_committed)",
                    &["reason"],
                );
                // Every reason is exported from the start, at 0.
                for reason in herald_protocol::bus::Reject::ALL {
                    v.with_label_values(&[reason.label()]);
                }
                v
            },
            delivery_flushes: counter(
                &r,
                "herald_delivery_flushes_total",
                "Interval passes of the delivery tracker (each writes the marks due)",
            ),
            delivery_marks_dropped: counter(
                &r,
                "herald_delivery_marks_dropped_total",
                "delivered_at updates dropped because the tracker queue was full",
            ),
            idempotency_purged: counter(
                &r,
                "herald_idempotency_keys_purged_total",
                "Idempotency keys forgotten after HERALD_IDEMPOTENCY_TTL_HOURS",
            ),
            fallback_sends: counter_vec(
                &r,
                "herald_fallback_sends_total",
                "Offline fallback attempts by channel and outcome (sent, failed, dead, cancelled, deferred)",
                &["channel", "outcome"],
            ),
            email_messages: counter_vec(
                &r,
                "herald_email_messages_total",
                "Digest emails by how the SMTP send ended (sent, bounced, rejected, failed)",
                &["outcome"],
            ),
            fallback_jobs_purged: counter(
                &r,
                "herald_fallback_jobs_purged_total",
                "Finished fallback jobs deleted after HERALD_FALLBACK_JOB_RETENTION_HOURS",
            ),
            fallback_jobs_planned: counter(
                &r,
                "herald_fallback_jobs_planned_total",
                "Offline fallback jobs created: a notification and channel that fell due unseen",
            ),
            inbox_changes: counter_vec(
                &r,
                "herald_inbox_changes_total",
                "Notifications changed by inbox actions (archive, unarchive, read, unread, delete)",
                &["action"],
            ),
            notifications_purged: counter(
                &r,
                "herald_notifications_purged_total",
                "Notifications deleted by the retention purge (HERALD_RETENTION)",
            ),
            revocations_known: gauge(
                &r,
                "herald_revocations_known",
                "Users with a session revocation this node holds in memory (within the retention)",
            ),
            bus_subscribed_users: gauge(
                &r,
                "herald_bus_subscribed_users",
                "Users this node is subscribed to",
            ),
            bus_connected: gauge(
                &r,
                "herald_bus_connected",
                "1 when the Redis subscriber connection is up",
            ),
            bus_reconnects: counter(
                &r,
                "herald_bus_reconnects_total",
                "Redis subscriber reconnects since start",
            ),
            bus_resyncs: counter(
                &r,
                "herald_bus_resyncs_total",
                "Bus-triggered resyncs since start",
            ),
            bus_probe_failures: counter(
                &r,
                "herald_bus_probe_failures_total",
                "Redis subscriber probes that did not come back",
            ),
            bus_messages_received: counter(
                &r,
                "herald_bus_messages_received_total",
                "Messages received from Redis",
            ),
            bus_decode_errors: counter(
                &r,
                "herald_bus_decode_errors_total",
                "Messages received from Redis that could not be decoded, or came on the wrong channel (dropped; the sockets catch up at the next reconcile)",
            ),
            socket_task_bytes: gauge(
                &r,
                "herald_socket_task_bytes",
                "Bytes of one WebSocket session's task future (its idle memory floor)",
            ),
            socket_task_budget: {
                let g = gauge(
                    &r,
                    "herald_socket_task_budget_bytes",
                    "The most herald_socket_task_bytes may be in a release build",
                );
                g.set(crate::ws::RELEASE_TASK_BUDGET);
                g
            },
            http_connections: gauge(
                &r,
                "herald_http_connections",
                "Open plain HTTP connections (WebSockets not included)",
            ),
            preauth_sockets: gauge(
                &r,
                "herald_preauth_sockets",
                "WebSocket connections that have not authenticated yet",
            ),
            preauth_evictions: counter(
                &r,
                "herald_preauth_evictions_total",
                "Unauthenticated sockets closed (4102) to make room",
            ),
            limited: counter_vec(
                &r,
                "herald_limited_total",
                "Requests, connections and handshakes refused by an edge limit",
                &["limit"],
            ),
            max_connections: gauge(
                &r,
                "herald_max_connections",
                "The socket cap in force (HERALD_MAX_CONNECTIONS, clamped to the open-file limit)",
            ),
            accept_errors: counter(
                &r,
                "herald_accept_errors_total",
                "Accept failures (e.g. descriptors exhausted); each pauses accepting for 500 ms",
            ),
            http_request_seconds,
            jwks_fetches: {
                let v = counter_vec(
                    &r,
                    "herald_jwks_fetches_total",
                    "Fetches of HERALD_JWT_JWKS_URL by outcome (ok, error: the held keys stay in use)",
                    &["outcome"],
                );
                for o in ["ok", "error"] {
                    v.with_label_values(&[o]);
                }
                v
            },
            jwks_keys: gauge(
                &r,
                "herald_jwks_keys",
                "Signing keys held from HERALD_JWT_JWKS_URL",
            ),
            registry: r,
        }
    }

    /// Records one plain HTTP request. `route` is the matched pattern, so the label set stays
    /// small; methods outside the usual few are counted as `other`.
    pub fn observe_http(
        &self,
        route: &str,
        method: &actix_web::http::Method,
        status: u16,
        secs: f64,
    ) {
        let method = match method.as_str() {
            m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "HEAD") => m,
            _ => "other",
        };
        self.http_request_seconds
            .with_label_values(&[route, method, status_label(status)])
            .observe(secs);
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The status codes Herald answers with, as labels without allocating; any other is counted
/// by its class.
fn status_label(status: u16) -> &'static str {
    const KNOWN: &[(u16, &str)] = &[
        (101, "101"),
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
    ];
    if let Some((_, label)) = KNOWN.iter().find(|(code, _)| *code == status) {
        return label;
    }
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Raises a counter to `total` (a cumulative count kept elsewhere, e.g. by the bus); a counter
/// never goes down, so a smaller `total` leaves it as it is.
pub fn raise_to(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_metrics_register() {
        let m = super::Metrics::new();
        m.connections.inc();
        m.closes.with_label_values(&["normal"]).inc();
        m.publish_stages.commit.observe(0.003);
        m.publish_batch_rows.observe(5.0);
        m.read_batch_keys
            .with_label_values(&["user_states"])
            .observe(3.0);
        let text = m.render();
        assert!(text.contains("herald_connections 1"));
        assert!(
            text.contains("herald_publish_stage_seconds_bucket{stage=\"commit\",le=\"0.004\"} 1")
        );
        assert!(text.contains("herald_publish_batch_rows_sum 5"));
        assert!(text.contains("herald_read_batch_keys_sum{read=\"user_states\"} 3"));
    }
}
