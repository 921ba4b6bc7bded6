//! Builds a node: store, bus, registry, background loops and the HTTP server.
//! `Application::build` binds (port 0 in tests); `run_until_stopped` serves until drained.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_http::{Extensions, HttpService};
use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use anyhow::Context;
use futures_util::future::ready;
use herald_bus::Bus;
use herald_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::delivery::DeliveryTracker;
use crate::edge::conn::EdgeStream;
use crate::metrics::Metrics;
use crate::publisher::{Fanout, Publisher};
use crate::read_coalescer::ReadCoalescer;
use crate::registry::Registry;
use crate::state::{AppState, Parts};

/// How long a client may take to send a complete request head.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The accept queue: deep enough that a reconnect storm of thousands of sockets is queued by
/// the kernel instead of dropped (a dropped SYN costs the client a 1 s retransmit).
const LISTEN_BACKLOG: i32 = 4096;

/// Binds the listening socket with an explicit backlog (`std`'s bind uses 128).
fn listen(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

pub struct Application {
    port: u16,
    admin_port: Option<u16>,
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    background: CancellationToken,
    tasks: TaskTracker,
}

/// Controls a running node (used by `main` on SIGTERM and by tests).
#[derive(Clone)]
pub struct NodeHandle {
    state: web::Data<AppState>,
    server: actix_web::dev::ServerHandle,
}

impl NodeHandle {
    /// Drains: readiness turns 503, new sockets are refused, idle kept-alive HTTP connections
    /// are closed and busy ones get `Connection: close`, every socket is told to reconnect and
    /// closed with 4105 at a random moment within the drain spread; then the server stops,
    /// waiting for requests in flight. The whole drain takes at most `HERALD_DRAIN_GRACE_MS`.
    pub async fn drain(&self) {
        tracing::info!(node = %self.state.config.node_id, sockets = self.state.open_sockets(), "draining");
        self.state.drain.cancel();
        self.state.registry.drain_all();
        let deadline = tokio::time::Instant::now() + sockets_drain(&self.state.config);
        while self.state.open_sockets() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.server.stop(true).await;
    }

    /// Stops at once without draining (tests use it to simulate a crash of the HTTP side).
    pub async fn stop_now(&self) {
        self.server.stop(false).await;
    }

    pub fn node_id(&self) -> &str {
        &self.state.config.node_id
    }

    pub fn open_sockets(&self) -> usize {
        self.state.open_sockets()
    }

    pub fn subscribed_users(&self) -> usize {
        self.state.bus.subscribed_users()
    }
}

impl Application {
    pub async fn build(mut config: Config) -> anyhow::Result<Application> {
        // `GET /v1/openapi.json` serves this rendering; no request builds it.
        crate::openapi::init().context("rendering the OpenAPI document")?;
        let fd_limit = crate::fds::raise_soft_limit();
        let reserve =
            crate::fds::reserved(config.database_pool_size, config.edge.max_http_connections);
        let cap = crate::fds::effective_max_connections(config.max_connections, fd_limit, reserve);
        if cap < config.max_connections {
            tracing::warn!(
                HERALD_MAX_CONNECTIONS = config.max_connections,
                open_file_limit = fd_limit,
                reserved = reserve,
                max_connections = cap,
                "the open-file limit is below HERALD_MAX_CONNECTIONS; sockets are capped so the node never runs out of descriptors"
            );
            config.max_connections = cap;
        }
        if config.jwt.audience.is_none() {
            tracing::warn!(
                HERALD_JWT_ALLOW_ANY_AUDIENCE = true,
                "user tokens are accepted whatever their `aud`: tokens your identity provider issued for other services will work here too"
            );
        }
        if config.jwt.issuer.is_none() {
            tracing::warn!(
                HERALD_JWT_ALLOW_ANY_ISSUER = true,
                "user tokens are accepted whatever their `iss`"
            );
        }
        // One rustls crypto provider (ring) for every TLS client in the process: PostgreSQL,
        // Redis, the JWKS fetcher.
        herald_store::tls::install_crypto_provider();
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        let mut verifier =
            TokenVerifier::from_config(&config.jwt).context("loading JWT public keys")?;
        let jwks = match &config.jwt.jwks {
            Some(c) => {
                let jwks = crate::jwks::Jwks::start(c.clone(), metrics.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("HERALD_JWT_JWKS_URL: {e}"))?;
                verifier = verifier.with_jwks(jwks.clone());
                Some(jwks)
            }
            None => None,
        };
        let store = Store::connect(&config.store())
            .await
            .context("connecting to PostgreSQL (HERALD_DATABASE_URL)")?;
        if config.migrate_on_start {
            let applied = store.migrate().await.context("applying migrations")?;
            tracing::info!(?applied, "migrations applied");
        }
        // The schema this node serves on: every migration it knows applied and unchanged;
        // newer ones (a newer build's) are fine unless marked as breaking older nodes.
        let schema = store
            .check_schema()
            .await
            .context("checking the database schema (HERALD_DATABASE_URL)")?;
        if !schema.pending.is_empty() {
            anyhow::bail!(
                "the database lacks migrations {:?} that this build needs: run `herald migrate` first (or set HERALD_MIGRATE_ON_START=true)",
                schema.pending
            );
        }
        if !schema.newer.is_empty() {
            tracing::warn!(newer = ?schema.newer,
                "the database has migrations this build does not know (a newer build applied them); running against them, as none is marked breaks-older-nodes");
        }
        let registry = Arc::new(Registry::new(config.max_sockets_per_user, metrics.clone()));
        let bus = Bus::start(config.bus()?, registry.clone())
            .await
            .context("starting the fan-out bus (HERALD_REDIS_URL)")?;
        let background = CancellationToken::new();
        // Every background task the node must let finish at shutdown (delivery marks, late
        // fan-outs, the loops): `run_until_stopped` waits for them.
        let tasks = TaskTracker::new();
        let tracker = DeliveryTracker::start(
            store.clone(),
            metrics.clone(),
            config.delivery_flush_interval,
            background.clone(),
            &tasks,
        );
        let fanout = Fanout {
            bus: bus.clone(),
            metrics: metrics.clone(),
            skip: cfg!(feature = "fault-injection") && config.fault_skip_fanout,
            wait: config.fanout_wait,
            late: Fanout::late_budget(),
            tasks: tasks.clone(),
        };
        let publisher = Publisher::start(
            store.clone(),
            fanout,
            crate::publisher::in_flight_for_pool(config.database_pool_size),
            background.clone(),
        );
        let reads = ReadCoalescer::start(store.clone(), &metrics, background.clone());
        let state = web::Data::new(AppState::new(Parts {
            config: config.clone(),
            store,
            bus,
            registry,
            verifier,
            metrics,
            tracker,
            publisher,
            reads,
        }));
        // Every revocation within the retention, before serving: a node started after a
        // revocation refuses the revoked tokens from its first request.
        let since = crate::revocation::refresh(&state, chrono::DateTime::UNIX_EPOCH)
            .await
            .context("loading session revocations from PostgreSQL")?;
        tasks.spawn(crate::revocation::refresh_loop(
            state.clone(),
            since,
            background.clone(),
        ));
        tasks.spawn(crate::reconcile::reconcile_loop(
            state.clone(),
            background.clone(),
        ));
        tasks.spawn(crate::health::check_loop(state.clone(), background.clone()));
        if let Some(jwks) = jwks {
            tasks.spawn(jwks.refresh_loop(background.clone()));
        }
        tasks.spawn(crate::purge::purge_idempotency_loop(
            state.clone(),
            background.clone(),
        ));
        tasks.spawn(crate::fallback::worker::worker_loop(
            state.clone(),
            background.clone(),
        ));
        tasks.spawn(crate::purge::purge_fallback_jobs_loop(
            state.clone(),
            background.clone(),
        ));
        tasks.spawn(crate::purge::purge_notifications_loop(
            state.clone(),
            background.clone(),
        ));

        let listener = listen(config.listen, LISTEN_BACKLOG)
            .with_context(|| format!("binding HERALD_LISTEN={}", config.listen))?;
        let addr = listener.local_addr()?;
        let port = addr.port();
        let app_state = state.clone();
        let accept = Arc::new(crate::edge::conn::Accept {
            metrics: state.metrics.clone(),
            connections: state.edge.connections.clone(),
            addrs: state.edge.addrs.clone(),
            proxy_protocol: config.edge.proxy_protocol,
            head_timeout: REQUEST_HEAD_TIMEOUT,
            drain: state.drain.clone(),
        });
        let admin = match config.admin_listen {
            Some(a) => {
                let l =
                    listen(a, 128).with_context(|| format!("binding HERALD_ADMIN_LISTEN={a}"))?;
                let port = l.local_addr()?.port();
                Some((l, port))
            }
            None => None,
        };
        let admin_port = admin.as_ref().map(|(_, p)| *p);
        let mut builder = actix_server::Server::build();
        if let Some((l, _)) = admin {
            let admin_state = state.clone();
            // The admin listener: metrics and health for scrapers and probes, never exposed
            // through the balancer. Plain actix-web: no edge limits, no WebSocket upgrade.
            builder = builder.listen("herald-admin", l, move || {
                let app = App::new()
                    .app_data(admin_state.clone())
                    .configure(crate::routes::admin)
                    .default_service(web::to(crate::routes::not_found))
                    .into_factory()
                    .map_err(|err: actix_web::Error| err.error_response());
                HttpService::build()
                    .client_request_timeout(REQUEST_HEAD_TIMEOUT)
                    .finish(map_config(app, |_| AppConfig::default()))
                    .tcp()
            })?;
        }
        let server = builder
            .workers(config.workers)
            .disable_signals()
            // What is left of the drain grace once the sockets have had theirs, less the
            // background work's share.
            .shutdown_timeout(
                config
                    .drain_grace
                    .saturating_sub(sockets_drain(&config))
                    .saturating_sub(background_finish(&config))
                    .as_secs(),
            )
            .listen("herald-http", listener, move || {
                let upgrade_state = app_state.clone().into_inner();
                let upgrade = fn_factory(move || {
                    let st = upgrade_state.clone();
                    ready(Ok::<_, ()>(fn_service(move |(req, framed)| {
                        crate::ws::on_upgrade(st.clone(), req, framed)
                    })))
                });
                let cfg = app_state.config.clone();
                let mut app = App::new()
                    .app_data(app_state.clone())
                    .wrap(crate::routes::cors(&cfg.allowed_origins))
                    // Before CORS: a Socket.IO long-polling request from a refused Origin
                    // gets 403 `origin_not_allowed`, as its WebSocket would.
                    .wrap_fn({
                        let st = app_state.clone();
                        move |req, srv| crate::ws::poll::origin_gate(req, srv, &st)
                    })
                    .wrap_fn({
                        let st = app_state.clone();
                        move |req, srv| {
                            let client = st.edge.client_ip(req.peer_addr(), req.headers());
                            let timeout = st.config.edge.request_timeout;
                            let drain = st.drain.clone();
                            let metrics = st.metrics.clone();
                            crate::edge::http::middleware(req, srv, timeout, client, drain, metrics)
                        }
                    })
                    .configure(|c| crate::routes::configure(c, &cfg));
                if cfg.socketio.enabled {
                    // Socket.IO long-polling (its WebSocket upgrades never reach actix-web),
                    // registered before the static files, which would answer a POST with 405.
                    let p = cfg.socketio.path.clone();
                    app = app
                        .service(web::resource([format!("{p}/"), p]).to(crate::ws::poll::fallback));
                }
                if let Some(dir) = &cfg.static_dir {
                    app = app.service(actix_files::Files::new("/", dir).index_file("index.html"));
                }
                let app = app
                    .default_service(web::to(crate::ws::poll::fallback))
                    .into_factory()
                    .map_err(|err: actix_web::Error| err.error_response());
                let http = HttpService::build()
                    // A client must send its whole request head within this time
                    // (slowloris, half-open handshakes).
                    .client_request_timeout(REQUEST_HEAD_TIMEOUT)
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .keep_alive(cfg.http_keep_alive)
                    // The middleware counts requests per connection, so a drain closes only
                    // idle ones.
                    .on_connect_ext(|io: &EdgeStream, ext: &mut Extensions| {
                        ext.insert(io.requests());
                    })
                    .local_addr(addr)
                    // Every `Upgrade: websocket` request leaves actix-web here, with its raw
                    // connection: see `crate::ws` for why.
                    .upgrade(upgrade)
                    .finish(map_config(app, |_| AppConfig::default()));
                // The accept step (PROXY header, connection caps) in front of HTTP.
                let accept = accept.clone();
                fn_service(move |io: tokio::net::TcpStream| {
                    let accept = accept.clone();
                    async move { accept.admit(io).await }
                })
                .and_then(http)
            })?
            .run();
        tracing::info!(node = %config.node_id, port, admin_port, redis = config.redis_url.is_some(), redis_cluster = !config.redis_cluster_nodes.is_empty(), "node listening");
        Ok(Application {
            port,
            admin_port,
            server,
            state,
            background,
            tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin listener's port (`HERALD_ADMIN_LISTEN`), if it has one.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            state: self.state.clone(),
            server: self.server.handle(),
        }
    }

    /// Serves until the server stops (a drain, or `stop_now`); then stops the background
    /// work and waits, at most [`background_finish`], for it to finish: the last delivery
    /// marks are written, late fan-outs complete, loops end between steps.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let r = self.server.await;
        self.background.cancel();
        self.tasks.close();
        let budget = background_finish(&self.state.config);
        if tokio::time::timeout(budget, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(node = %self.state.config.node_id, tasks = self.tasks.len(),
                budget_ms = budget.as_millis() as u64, "background work did not finish in time; abandoned");
        }
        self.state.bus.shutdown();
        tracing::info!(node = %self.state.config.node_id, "node stopped");
        r
    }
}

/// The share of the drain grace kept for background work after the server stops (a fifth,
/// within 200 ms .. 2 s).
fn background_finish(config: &Config) -> Duration {
    (config.drain_grace / 5).clamp(Duration::from_millis(200), Duration::from_secs(2))
}

/// How long a drain waits for its sockets to close: the drain spread and a moment for the last
/// close handshakes, within the grace.
fn sockets_drain(config: &Config) -> Duration {
    (config.drain_spread + Duration::from_millis(200)).min(config.drain_grace)
}
