//! Configuration: environment variables (`HERALD_*`) over an optional TOML file with the
//! same keys in lower case without the prefix. Everything is parsed and validated before
//! anything starts; an error names the variable. Secrets are wrapped so they never reach
//! `Debug` output or logs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_core::rate::Rate;
use secrecy::{ExposeSecret, SecretString};

use crate::edge::addr::Cidrs;
pub use crate::edge::EdgeConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {message}")]
    Invalid { var: String, message: String },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

fn invalid(var: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var: var.to_string(),
        message: message.into(),
    }
}

/// A public key for RS256/ES256 tokens, optionally bound to a `kid`.
#[derive(Debug, Clone)]
pub struct PublicKeyConfig {
    pub kid: Option<String>,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub hs256_secret: Option<SecretString>,
    pub public_keys: Vec<PublicKeyConfig>,
    /// `HERALD_JWT_JWKS_URL` and its timing: the identity provider's keys.
    pub jwks: Option<crate::jwks::JwksConfig>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub leeway_secs: u64,
}

/// Everything a node needs. `main` reads the raw values with [`Config::load_values`] and parses
/// them with [`Config::from_values`]; tests call `from_values` with their own values.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `HERALD_ADMIN_LISTEN`: the admin listener, serving `/metrics` (which the public
    /// listener does not) and the health endpoints; `None` (`off`): no admin listener.
    pub admin_listen: Option<SocketAddr>,
    pub node_id: String,
    pub database_url: SecretString,
    pub database_pool_size: usize,
    pub database_timeout: Duration,
    pub redis_url: Option<SecretString>,
    /// `HERALD_REDIS_CLUSTER_NODES`: Redis Cluster seed nodes (`host:port`, at most 64); when
    /// set the bus uses sharded pub/sub on the cluster. Exclusive with `HERALD_REDIS_URL`; no
    /// TLS, no password.
    pub redis_cluster_nodes: Vec<String>,
    /// `HERALD_REDIS_CA_FILE`: PEM CA certificates for a `rediss://` URL (default: the system
    /// store).
    pub redis_ca_file: Option<PathBuf>,
    pub redis_prefix: String,
    /// `HERALD_BUS_HMAC_KEY`: the node key every bus payload is sealed with (HMAC-SHA256);
    /// without it, bus payloads are unsealed and only their envelope is checked.
    pub bus_hmac_key: Option<SecretString>,
    /// Every service key: those of `HERALD_SERVICE_KEYS` (all scopes), then those of
    /// `HERALD_SCOPED_SERVICE_KEYS`.
    pub service_keys: Vec<SecretString>,
    /// What each key of `service_keys` (same position) may call.
    pub service_key_scopes: Vec<crate::auth::Scopes>,
    pub jwt: JwtConfig,
    /// Exact origins (`scheme://host[:port]`) allowed for CORS and WebSocket upgrades;
    /// `*` allows any (development only).
    pub allowed_origins: Vec<String>,
    pub migrate_on_start: bool,
    pub workers: usize,
    pub max_connections: usize,
    pub max_sockets_per_user: usize,
    pub max_message_bytes: usize,
    pub outbound_queue: usize,
    pub heartbeat_interval: Duration,
    pub idle_timeout: Duration,
    pub auth_timeout: Duration,
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    pub max_resume_gap: u32,
    pub batch_page_size: u32,
    pub reconcile_interval: Duration,
    pub token_expiry_warning: Duration,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub drain_grace: Duration,
    pub drain_spread: Duration,
    /// `HERALD_FANOUT_WAIT_MS`: how long a publish waits for its Redis fan-out after the
    /// commit before it is answered anyway.
    pub fanout_wait: Duration,
    pub max_publish_body_bytes: usize,
    /// How long an idle HTTP/1.1 keep-alive connection stays open. Longer than a proxy's
    /// idle timeout for its pooled upstream connections, so the proxy, not the gateway,
    /// closes them (a request racing the gateway's close fails before any response).
    pub http_keep_alive: Duration,
    /// How often first deliveries are written (`delivered_at`, the delivered watermark): one
    /// statement per interval, one mark per user that received anything in it. Longer means
    /// fewer writes when users receive bursts, and `delivered_at` up to this much later.
    pub delivery_flush_interval: Duration,
    /// How long an idempotency key is remembered; older keys are purged in the background.
    pub idempotency_ttl: Duration,
    /// How often the node reads revocations changed since the last it saw (it also reads at
    /// once when the bus announces one).
    pub revocation_refresh: Duration,
    /// How long a revocation is kept (in PostgreSQL and in every node's memory) after it was
    /// last made.
    pub revocation_retention: Duration,
    /// How long notifications are kept, per type (`HERALD_RETENTION`); off by default. Older
    /// ones are purged in the background, in batches.
    pub retention: herald_core::inbox::Retention,
    /// How often the retention purge runs (`HERALD_RETENTION_INTERVAL_MS`).
    pub retention_interval: Duration,
    /// Development endpoints (`/dev/*`: mint tokens, publish without the service key) for
    /// the local demo. Never enable in production.
    pub dev_endpoints: bool,
    pub static_dir: Option<PathBuf>,
    /// Fault injection for the fault suite: commit publishes but skip the Redis fan-out, as a
    /// crash between the commit and the publish would. Never set in production.
    pub fault_skip_fanout: bool,
    /// Fault injection: pause between a socket's subscribe and its catch-up query, to widen
    /// the race window the delivery invariant must survive. Never set in production.
    pub fault_catch_up_delay: Duration,
    /// Limits at the edge: connections, requests and handshakes per client, the client
    /// address behind a balancer ([`crate::edge`]).
    pub edge: EdgeConfig,
    /// The Socket.IO endpoint (`HERALD_SOCKETIO_*`, docs/socketio.md).
    pub socketio: SocketIoConfig,
    /// Offline fallback (`HERALD_FALLBACK_*`): per-type rules, the worker's timing, channels.
    pub fallback: crate::fallback::FallbackConfig,
}

/// `HERALD_SOCKETIO_*`: the Socket.IO v4 endpoint beside `/v1/ws`.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// `HERALD_SOCKETIO_ENABLED` (default true).
    pub enabled: bool,
    /// `HERALD_SOCKETIO_PATH` (default `/socket.io`), without its trailing slash; both forms
    /// are served.
    pub path: String,
    /// `HERALD_SOCKETIO_NAMESPACE` (default `/notifications`).
    pub namespace: String,
    /// `HERALD_SOCKETIO_EVENTS`: `notification` (default) or `notification:new`.
    pub events: herald_protocol::socketio::render::EventNames,
}

/// Raw key/value source: file values overridden by environment values.
struct Source {
    values: HashMap<String, String>,
}

impl Source {
    fn get(&self, var: &str) -> Option<&str> {
        self.values
            .get(var)
            .map(|s| s.as_str())
            .filter(|s| !s.trim().is_empty())
    }

    fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or(default).trim().to_string()
    }

    fn required(&self, var: &str) -> Result<String, ConfigError> {
        self.get(var)
            .map(|s| s.trim().to_string())
            .ok_or_else(|| invalid(var, "is required but not set"))
    }

    fn parse<T: std::str::FromStr>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<T>()
                .map_err(|e| invalid(var, format!("cannot parse {v:?}: {e}"))),
        }
    }

    fn ranged<T>(&self, var: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
        T::Err: std::fmt::Display,
    {
        let v = self.parse(var, default)?;
        if v < min || v > max {
            return Err(invalid(
                var,
                format!("must be between {min} and {max}, got {v}"),
            ));
        }
        Ok(v)
    }

    fn millis(&self, var: &str, default: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.ranged(var, default, min, max)?))
    }

    fn boolean(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(|s| s.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(invalid(var, format!("expected true or false, got {v:?}"))),
            },
        }
    }

    fn list(&self, var: &str) -> Vec<String> {
        self.get(var)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The lab features and whether this binary has them.
const DEV_ENDPOINTS: (&str, bool) = ("dev-endpoints", cfg!(feature = "dev-endpoints"));
const FAULT_INJECTION: (&str, bool) = ("fault-injection", cfg!(feature = "fault-injection"));

/// A setting that exists only in builds with a lab feature (`dev-endpoints`,
/// `fault-injection`): parsed there; in a production build, refused if set at all, so a
/// deployment never silently runs without what it asked for and the code is not in it.
fn lab_only<T: Default>(
    src: &Source,
    var: &str,
    (feature, built): (&str, bool),
    parse: impl FnOnce(&Source) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    if built {
        return parse(src);
    }
    match src.get(var) {
        None => Ok(T::default()),
        Some(_) => Err(invalid(
            var,
            format!(
                "this binary was built without the `{feature}` feature (production builds \
                 leave it off); build with `--features lab` for the local \
                 cluster and tests"
            ),
        )),
    }
}

/// The expected `aud` or `iss`: required, unless the operator opts out explicitly (tokens an
/// identity provider issued for other services would otherwise be accepted). `None` means
/// "any", which `serve` logs as a warning at start.
fn required_claim(
    src: &Source,
    var: &str,
    any_var: &str,
    claim: &str,
) -> Result<Option<String>, ConfigError> {
    let value = src.get(var).map(|s| s.trim().to_string());
    match (value, src.boolean(any_var, false)?) {
        (Some(_), true) => Err(invalid(
            any_var,
            format!("cannot be combined with {var}: either tokens must carry that `{claim}`, or any is accepted"),
        )),
        (Some(v), false) => Ok(Some(v)),
        (None, true) => Ok(None),
        (None, false) => Err(invalid(
            var,
            format!(
                "is required: the `{claim}` your identity provider puts in tokens meant for Herald \
                 (to accept tokens with any `{claim}`, which includes tokens issued for other \
                 services, set {any_var}=true instead)"
            ),
        )),
    }
}

fn load_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut out = HashMap::new();
    for (k, v) in table {
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        out.insert(format!("HERALD_{}", k.to_ascii_uppercase()), s);
    }
    Ok(out)
}

/// The settings that may instead be read from a file, `<NAME>_FILE=/path` (a Kubernetes or
/// Docker secret mounted as a file): the file's content with one trailing newline removed.
pub const SECRET_FILE_SETTINGS: &[&str] = &[
    "HERALD_DATABASE_URL",
    "HERALD_REDIS_URL",
    "HERALD_JWT_HS256_SECRET",
    "HERALD_SERVICE_KEYS",
    "HERALD_SCOPED_SERVICE_KEYS",
    "HERALD_BUS_HMAC_KEY",
    "HERALD_FALLBACK_WEBHOOK_SECRET",
    "HERALD_VAPID_PRIVATE_KEY",
    "HERALD_SMTP_URL",
    "HERALD_EMAIL_UNSUBSCRIBE_SECRET",
];

/// Replaces every `<NAME>_FILE` of [`SECRET_FILE_SETTINGS`] by `<NAME>` with the file's
/// content. Giving both is refused, as is a file that cannot be read or is empty.
pub fn resolve_secret_files(values: &mut HashMap<String, String>) -> Result<(), ConfigError> {
    for name in SECRET_FILE_SETTINGS {
        let file_var = format!("{name}_FILE");
        let Some(path) = values.remove(&file_var) else {
            continue;
        };
        if values.contains_key(*name) {
            return Err(invalid(
                &file_var,
                format!("set either {name} or {file_var}, not both"),
            ));
        }
        let content = std::fs::read_to_string(path.trim())
            .map_err(|e| invalid(&file_var, format!("{}: cannot read: {e}", path.trim())))?;
        let content = content
            .strip_suffix("\r\n")
            .or_else(|| content.strip_suffix('\n'))
            .unwrap_or(&content)
            .to_string();
        if content.is_empty() {
            return Err(invalid(&file_var, format!("{}: is empty", path.trim())));
        }
        values.insert(name.to_string(), content);
    }
    Ok(())
}

fn validate_origin(var: &str, o: &str) -> Result<(), ConfigError> {
    if o == "*" {
        return Ok(());
    }
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or_else(|| {
            invalid(
                var,
                format!("origin {o:?} must start with http:// or https://"),
            )
        })?;
    if rest.is_empty() || rest.contains('/') || o.ends_with('/') {
        return Err(invalid(
            var,
            format!("origin {o:?} must be scheme://host[:port] with no path or trailing slash"),
        ));
    }
    Ok(())
}

impl Config {
    /// The raw `HERALD_*` values: the file's, overridden by the environment's.
    pub fn load_values(file: Option<&Path>) -> Result<HashMap<String, String>, ConfigError> {
        let mut values = match file {
            Some(p) => load_file(p)?,
            None => HashMap::new(),
        };
        for (k, v) in std::env::vars() {
            if k.starts_with("HERALD_") {
                values.insert(k, v);
            }
        }
        resolve_secret_files(&mut values)?;
        Ok(values)
    }

    /// Just the database URL (for `herald migrate`).
    pub fn database_url_from(values: &HashMap<String, String>) -> Result<String, ConfigError> {
        let src = Source {
            values: values.clone(),
        };
        let url = src.required("HERALD_DATABASE_URL")?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "HERALD_DATABASE_URL",
                "must be a postgres:// or postgresql:// URL",
            ));
        }
        // sslmode/sslrootcert: a mode this build cannot do, or a CA file that cannot be
        // read, is refused now rather than at the first connection.
        herald_store::tls::PgTls::split(&url).map_err(|e| invalid("HERALD_DATABASE_URL", e))?;
        Ok(url)
    }

    /// Just the token settings (for `herald token`).
    pub fn jwt_from(values: &HashMap<String, String>) -> Result<JwtConfig, ConfigError> {
        let src = Source {
            values: values.clone(),
        };
        let hs256_secret = src.get("HERALD_JWT_HS256_SECRET").map(|s| s.to_string());
        if let Some(s) = &hs256_secret {
            if s.len() < 32 {
                return Err(invalid(
                    "HERALD_JWT_HS256_SECRET",
                    "must be at least 32 bytes",
                ));
            }
        }
        let mut public_keys = Vec::new();
        for entry in src.list("HERALD_JWT_PUBLIC_KEYS") {
            let (kid, path) = match entry.split_once('=') {
                Some((k, p)) => (Some(k.trim().to_string()), PathBuf::from(p.trim())),
                None => (None, PathBuf::from(entry)),
            };
            if !path.is_file() {
                return Err(invalid(
                    "HERALD_JWT_PUBLIC_KEYS",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            public_keys.push(PublicKeyConfig { kid, path });
        }
        let default_max_age =
            Duration::from_secs(src.ranged("HERALD_JWT_JWKS_MAX_AGE_SECS", 300, 1, 86_400)?);
        let min_refetch = src.millis("HERALD_JWT_JWKS_MIN_REFETCH_MS", 30_000, 100, 3_600_000)?;
        let jwks = match src.get("HERALD_JWT_JWKS_URL").map(str::trim) {
            None | Some("") => None,
            Some(url) => {
                crate::jwks::check_url(url).map_err(|e| invalid("HERALD_JWT_JWKS_URL", e))?;
                Some(crate::jwks::JwksConfig {
                    url: url.to_string(),
                    default_max_age,
                    min_refetch,
                })
            }
        };
        if hs256_secret.is_none() && public_keys.is_empty() && jwks.is_none() {
            return Err(invalid(
                "HERALD_JWT_HS256_SECRET",
                "set HERALD_JWT_HS256_SECRET, HERALD_JWT_PUBLIC_KEYS and/or HERALD_JWT_JWKS_URL so user tokens can be verified",
            ));
        }
        Ok(JwtConfig {
            hs256_secret: hs256_secret.map(SecretString::from),
            public_keys,
            jwks,
            audience: required_claim(
                &src,
                "HERALD_JWT_AUDIENCE",
                "HERALD_JWT_ALLOW_ANY_AUDIENCE",
                "aud",
            )?,
            issuer: required_claim(
                &src,
                "HERALD_JWT_ISSUER",
                "HERALD_JWT_ALLOW_ANY_ISSUER",
                "iss",
            )?,
            leeway_secs: src.ranged("HERALD_JWT_LEEWAY_SECS", 30, 0, 600)?,
        })
    }

    /// Parses and validates a map of `HERALD_*` variables.
    pub fn from_values(values: HashMap<String, String>) -> Result<Config, ConfigError> {
        let src = Source { values };
        let listen: SocketAddr =
            src.parse("HERALD_LISTEN", SocketAddr::from(([127, 0, 0, 1], 8080)))?;
        let admin_listen = match src.get("HERALD_ADMIN_LISTEN").map(str::trim) {
            Some("off") => None,
            _ => Some(src.parse(
                "HERALD_ADMIN_LISTEN",
                SocketAddr::from(([127, 0, 0, 1], DEFAULT_ADMIN_PORT)),
            )?),
        };
        if let Some(admin) = admin_listen {
            let overlaps = admin.port() == listen.port()
                && admin.port() != 0
                && (admin.ip() == listen.ip()
                    || admin.ip().is_unspecified()
                    || listen.ip().is_unspecified());
            if overlaps {
                return Err(invalid(
                    "HERALD_ADMIN_LISTEN",
                    format!("{admin} overlaps HERALD_LISTEN={listen}: the admin listener needs a port of its own (or `off`)"),
                ));
            }
        }
        let node_id = match src.get("HERALD_NODE_ID") {
            Some(n) => n.trim().to_string(),
            None => format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        };
        if node_id.is_empty()
            || node_id.len() > 64
            || !node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "HERALD_NODE_ID",
                "must be 1 to 64 characters from [A-Za-z0-9-_.]",
            ));
        }
        let database_url = Config::database_url_from(&src.values)?;
        let redis_url = src.get("HERALD_REDIS_URL").map(|s| s.trim().to_string());
        if let Some(u) = &redis_url {
            if !(u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("unix://"))
            {
                return Err(invalid(
                    "HERALD_REDIS_URL",
                    "must be a redis://, rediss:// or unix:// URL",
                ));
            }
        }
        let redis_cluster_nodes = src.list("HERALD_REDIS_CLUSTER_NODES");
        if !redis_cluster_nodes.is_empty() {
            if redis_url.is_some() {
                return Err(invalid(
                    "HERALD_REDIS_CLUSTER_NODES",
                    "is set together with HERALD_REDIS_URL: choose one (a single Redis, or the cluster's seed nodes)",
                ));
            }
            if src.get("HERALD_REDIS_CA_FILE").is_some() {
                return Err(invalid(
                    "HERALD_REDIS_CLUSTER_NODES",
                    "TLS (HERALD_REDIS_CA_FILE) is not supported in cluster mode",
                ));
            }
            if redis_cluster_nodes.len() > herald_bus::MAX_CLUSTER_SEEDS {
                return Err(invalid(
                    "HERALD_REDIS_CLUSTER_NODES",
                    format!("at most {} seed nodes", herald_bus::MAX_CLUSTER_SEEDS),
                ));
            }
            for n in &redis_cluster_nodes {
                if n.starts_with("rediss://") || n.contains('@') {
                    return Err(invalid(
                        "HERALD_REDIS_CLUSTER_NODES",
                        "TLS and passwords are not supported in cluster mode: give plain host:port seeds",
                    ));
                }
                if !herald_bus::valid_seed(n) {
                    return Err(invalid(
                        "HERALD_REDIS_CLUSTER_NODES",
                        format!("{n:?} is not host:port"),
                    ));
                }
            }
        }
        let redis_ca_file = src.get("HERALD_REDIS_CA_FILE").map(PathBuf::from);
        match (&redis_url, &redis_ca_file) {
            (Some(u), Some(path)) if u.starts_with("rediss://") => {
                herald_bus::tls::read_ca(path).map_err(|e| invalid("HERALD_REDIS_CA_FILE", e))?;
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "HERALD_REDIS_CA_FILE",
                    "is set but HERALD_REDIS_URL is not a rediss:// URL",
                ))
            }
            _ => {}
        }
        if let Some(u) = &redis_url {
            if u.starts_with("rediss://") && u.contains("#insecure") {
                return Err(invalid(
                    "HERALD_REDIS_URL",
                    "#insecure (no certificate check) is not supported: give the server's CA in HERALD_REDIS_CA_FILE",
                ));
            }
        }
        let redis_prefix = src.string("HERALD_REDIS_PREFIX", "herald:");
        if redis_prefix.len() > 64 || redis_prefix.chars().any(|c| c.is_whitespace()) {
            return Err(invalid(
                "HERALD_REDIS_PREFIX",
                "must be at most 64 characters without whitespace",
            ));
        }
        let bus_hmac_key = src.get("HERALD_BUS_HMAC_KEY").map(|s| s.to_string());
        if bus_hmac_key
            .as_ref()
            .is_some_and(|k| k.len() < herald_protocol::bus::BusKey::MIN_LEN)
        {
            return Err(invalid(
                "HERALD_BUS_HMAC_KEY",
                format!(
                    "must be at least {} bytes",
                    herald_protocol::bus::BusKey::MIN_LEN
                ),
            ));
        }
        let mut service_keys = src.list("HERALD_SERVICE_KEYS");
        let mut service_key_scopes = vec![crate::auth::Scopes::ALL; service_keys.len()];
        if let Some(short) = service_keys.iter().position(|k| k.len() < 16) {
            return Err(invalid(
                "HERALD_SERVICE_KEYS",
                format!("key #{} is shorter than 16 characters", short + 1),
            ));
        }
        const SCOPED: &str = "HERALD_SCOPED_SERVICE_KEYS";
        for (i, entry) in src.list(SCOPED).into_iter().enumerate() {
            let n = i + 1;
            let (scopes, key) = entry.split_once(':').ok_or_else(|| {
                invalid(
                    SCOPED,
                    format!("entry #{n} is not <scope>[+<scope>…]:<key>"),
                )
            })?;
            let scopes = crate::auth::Scopes::parse(scopes)
                .map_err(|e| invalid(SCOPED, format!("entry #{n}: {e}")))?;
            if key.len() < 16 {
                return Err(invalid(
                    SCOPED,
                    format!("entry #{n}: the key is shorter than 16 characters"),
                ));
            }
            if service_keys.iter().any(|k| k == key) {
                return Err(invalid(
                    SCOPED,
                    format!("entry #{n}: the key is already configured (each key once, with one set of scopes)"),
                ));
            }
            service_keys.push(key.to_string());
            service_key_scopes.push(scopes);
        }
        if service_keys.is_empty() {
            return Err(invalid(
                "HERALD_SERVICE_KEYS",
                "is required: a comma-separated list of service API keys (or scoped keys in HERALD_SCOPED_SERVICE_KEYS)",
            ));
        }
        let jwt = Config::jwt_from(&src.values)?;
        let allowed_origins = src.list("HERALD_ALLOWED_ORIGINS");
        for o in &allowed_origins {
            validate_origin("HERALD_ALLOWED_ORIGINS", o)?;
        }
        let heartbeat_interval =
            src.millis("HERALD_HEARTBEAT_INTERVAL_MS", 25_000, 100, 600_000)?;
        let idle_timeout = src.millis("HERALD_IDLE_TIMEOUT_MS", 60_000, 200, 3_600_000)?;
        if idle_timeout <= heartbeat_interval {
            return Err(invalid(
                "HERALD_IDLE_TIMEOUT_MS",
                "must be longer than HERALD_HEARTBEAT_INTERVAL_MS",
            ));
        }
        let probe_interval = src.millis("HERALD_PROBE_INTERVAL_MS", 2_000, 50, 60_000)?;
        let probe_timeout = src.millis("HERALD_PROBE_TIMEOUT_MS", 6_000, 100, 300_000)?;
        if probe_timeout <= probe_interval {
            return Err(invalid(
                "HERALD_PROBE_TIMEOUT_MS",
                "must be longer than HERALD_PROBE_INTERVAL_MS",
            ));
        }
        let static_dir = src.get("HERALD_STATIC_DIR").map(PathBuf::from);
        if let Some(d) = &static_dir {
            if !d.is_dir() {
                return Err(invalid(
                    "HERALD_STATIC_DIR",
                    format!("{} is not a directory", d.display()),
                ));
            }
        }
        let default_workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Ok(Config {
            listen,
            admin_listen,
            node_id,
            database_url: SecretString::from(database_url),
            database_pool_size: src.ranged("HERALD_DATABASE_POOL_SIZE", 16, 1, 1000)?,
            database_timeout: src.millis("HERALD_DATABASE_TIMEOUT_MS", 3_000, 50, 120_000)?,
            redis_url: redis_url.map(SecretString::from),
            redis_cluster_nodes,
            redis_ca_file,
            redis_prefix,
            bus_hmac_key: bus_hmac_key.map(SecretString::from),
            service_keys: service_keys.into_iter().map(SecretString::from).collect(),
            service_key_scopes,
            jwt,
            allowed_origins,
            migrate_on_start: src.boolean("HERALD_MIGRATE_ON_START", false)?,
            workers: src.ranged("HERALD_WORKERS", default_workers, 1, 256)?,
            max_connections: src.ranged("HERALD_MAX_CONNECTIONS", 10_000, 1, 10_000_000)?,
            max_sockets_per_user: src.ranged("HERALD_MAX_SOCKETS_PER_USER", 16, 1, 10_000)?,
            max_message_bytes: src.ranged(
                "HERALD_MAX_MESSAGE_BYTES",
                16 * 1024,
                256,
                1024 * 1024,
            )?,
            outbound_queue: src.ranged("HERALD_OUTBOUND_QUEUE", 256, 4, 1_000_000)?,
            heartbeat_interval,
            idle_timeout,
            auth_timeout: src.millis("HERALD_AUTH_TIMEOUT_MS", 5_000, 50, 120_000)?,
            rate_limit_per_sec: src.ranged("HERALD_RATE_LIMIT_PER_SEC", 20, 1, 100_000)?,
            rate_limit_burst: src.ranged("HERALD_RATE_LIMIT_BURST", 40, 1, 100_000)?,
            max_resume_gap: src.ranged("HERALD_MAX_RESUME_GAP", 1_000, 1, 1_000_000)?,
            batch_page_size: src.ranged("HERALD_BATCH_PAGE_SIZE", 100, 1, 1_000)?,
            reconcile_interval: src.millis("HERALD_RECONCILE_INTERVAL_MS", 5_000, 50, 3_600_000)?,
            token_expiry_warning: src.millis(
                "HERALD_TOKEN_EXPIRY_WARNING_MS",
                60_000,
                0,
                3_600_000,
            )?,
            probe_interval,
            probe_timeout,
            drain_grace: src.millis("HERALD_DRAIN_GRACE_MS", 10_000, 0, 600_000)?,
            drain_spread: src.millis("HERALD_DRAIN_SPREAD_MS", 3_000, 0, 600_000)?,
            fanout_wait: src.millis("HERALD_FANOUT_WAIT_MS", 50, 1, 10_000)?,
            max_publish_body_bytes: src.ranged(
                "HERALD_MAX_PUBLISH_BODY_BYTES",
                1024 * 1024,
                1024,
                64 * 1024 * 1024,
            )?,
            http_keep_alive: src.millis("HERALD_HTTP_KEEP_ALIVE_MS", 75_000, 1_000, 3_600_000)?,
            delivery_flush_interval: src.millis("HERALD_DELIVERY_FLUSH_MS", 200, 10, 10_000)?,
            idempotency_ttl: Duration::from_secs(
                3600 * src.ranged::<u64>("HERALD_IDEMPOTENCY_TTL_HOURS", 24, 1, 8760)?,
            ),
            revocation_refresh: src.millis("HERALD_REVOCATION_REFRESH_MS", 5_000, 50, 600_000)?,
            revocation_retention: Duration::from_secs(
                3600 * src.ranged::<u64>("HERALD_REVOCATION_RETENTION_HOURS", 720, 1, 87_600)?,
            ),
            retention: herald_core::inbox::parse_retention(&src.string("HERALD_RETENTION", ""))
                .map_err(|e| invalid("HERALD_RETENTION", e))?,
            retention_interval: src.millis(
                "HERALD_RETENTION_INTERVAL_MS",
                60_000,
                100,
                86_400_000,
            )?,
            dev_endpoints: lab_only(&src, "HERALD_DEV_ENDPOINTS", DEV_ENDPOINTS, |s| {
                s.boolean("HERALD_DEV_ENDPOINTS", false)
            })?,
            static_dir,
            fault_skip_fanout: lab_only(&src, "HERALD_FAULT_SKIP_FANOUT", FAULT_INJECTION, |s| {
                s.boolean("HERALD_FAULT_SKIP_FANOUT", false)
            })?,
            fault_catch_up_delay: lab_only(
                &src,
                "HERALD_FAULT_CATCH_UP_DELAY_MS",
                FAULT_INJECTION,
                |s| s.millis("HERALD_FAULT_CATCH_UP_DELAY_MS", 0, 0, 60_000),
            )?,
            edge: Config::edge_from(&src)?,
            socketio: Config::socketio_from(&src)?,
            fallback: Config::fallback_from(&src)?,
        })
    }

    fn socketio_from(src: &Source) -> Result<SocketIoConfig, ConfigError> {
        use herald_protocol::socketio::{render::EventNames, MAX_NAMESPACE_LEN};
        let path = src.string("HERALD_SOCKETIO_PATH", "/socket.io");
        let path = path.trim_end_matches('/').to_string();
        let plain = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-~".contains(&b))
        };
        if !path.starts_with('/') || path.len() < 2 || path.len() > 128 || !plain(&path) {
            return Err(invalid(
                "HERALD_SOCKETIO_PATH",
                "must be a path such as /socket.io (letters, digits, / . _ - ~)",
            ));
        }
        if path == "/v1" || path.starts_with("/v1/") || path.starts_with("/dev/") {
            return Err(invalid(
                "HERALD_SOCKETIO_PATH",
                "must not lie under /v1/ or /dev/, which Herald's own API uses",
            ));
        }
        let namespace = src.string("HERALD_SOCKETIO_NAMESPACE", "/notifications");
        if !namespace.starts_with('/') || namespace.len() > MAX_NAMESPACE_LEN || !plain(&namespace)
        {
            return Err(invalid(
                "HERALD_SOCKETIO_NAMESPACE",
                format!("must start with / and have at most {MAX_NAMESPACE_LEN} letters, digits, / . _ - ~"),
            ));
        }
        let events_raw = src.string("HERALD_SOCKETIO_EVENTS", "notification");
        let events = EventNames::parse(&events_raw).ok_or_else(|| {
            invalid(
                "HERALD_SOCKETIO_EVENTS",
                "must be `notification` (one `notification` event each) or `notification:new` (`notification:new`, and `notifications:batch` at connect)",
            )
        })?;
        Ok(SocketIoConfig {
            enabled: src.boolean("HERALD_SOCKETIO_ENABLED", true)?,
            path,
            namespace,
            events,
        })
    }

    /// `HERALD_FALLBACK_*` (see docs/channels.md). A rule naming a channel that is not set
    /// up is refused, so a deployment never silently drops a fallback it asked for.
    fn fallback_from(src: &Source) -> Result<crate::fallback::FallbackConfig, ConfigError> {
        use herald_core::fallback::{Channel, RetryPolicy, Rules};
        const TYPES: &str = "HERALD_FALLBACK_TYPES";
        let rules = Rules::parse(&src.list(TYPES)).map_err(|e| invalid(TYPES, e))?;
        const URL: &str = "HERALD_FALLBACK_WEBHOOK_URL";
        const SECRET: &str = "HERALD_FALLBACK_WEBHOOK_SECRET";
        let webhook = match (src.get(URL).map(str::trim), src.get(SECRET)) {
            (None, None) => None,
            (Some(_), None) => return Err(invalid(SECRET, format!("is required with {URL}"))),
            (None, Some(_)) => return Err(invalid(URL, format!("is required with {SECRET}"))),
            (Some(url), Some(secret)) => {
                let parsed = url::Url::parse(url).map_err(|e| invalid(URL, e.to_string()))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(invalid(URL, "must be an http:// or https:// URL"));
                }
                let key = crate::fallback::webhook::decode_secret(secret.trim())
                    .map_err(|e| invalid(SECRET, e))?;
                Some(crate::fallback::webhook::WebhookConfig {
                    url: url.to_owned(),
                    key: std::sync::Arc::new(secrecy::SecretSlice::from(key)),
                    timeout: src.millis(
                        "HERALD_FALLBACK_WEBHOOK_TIMEOUT_MS",
                        10_000,
                        100,
                        120_000,
                    )?,
                })
            }
        };
        let push = Config::push_from(src)?;
        let email = Config::email_from(src)?;
        for ch in rules.channels() {
            let ready = match ch {
                Channel::Webhook => webhook.is_some(),
                Channel::Push => push.is_some(),
                Channel::Email => email.is_some(),
            };
            if !ready {
                let how = match ch {
                    Channel::Webhook => {
                        "set HERALD_FALLBACK_WEBHOOK_URL and HERALD_FALLBACK_WEBHOOK_SECRET"
                    }
                    Channel::Push => "set HERALD_VAPID_PRIVATE_KEY and HERALD_VAPID_SUBJECT",
                    Channel::Email => {
                        "set HERALD_SMTP_URL, HERALD_EMAIL_FROM, HERALD_PUBLIC_URL and HERALD_EMAIL_UNSUBSCRIBE_SECRET"
                    }
                };
                return Err(invalid(
                    TYPES,
                    format!("a rule uses the {ch} channel, which is not set up: {how}"),
                ));
            }
        }
        let base = src.millis("HERALD_FALLBACK_RETRY_BASE_MS", 1_000, 10, 3_600_000)?;
        let cap = src.millis("HERALD_FALLBACK_RETRY_CAP_MS", 300_000, 10, 86_400_000)?;
        if cap < base {
            return Err(invalid(
                "HERALD_FALLBACK_RETRY_CAP_MS",
                "must be at least HERALD_FALLBACK_RETRY_BASE_MS",
            ));
        }
        let lease = src.millis("HERALD_FALLBACK_LEASE_MS", 60_000, 100, 3_600_000)?;
        // A send that outlives its lease is claimed and sent again by another node while the
        // first is still waiting: the lease must outlast the longest request.
        if let Some(w) = &webhook {
            if lease <= w.timeout {
                return Err(invalid(
                    "HERALD_FALLBACK_LEASE_MS",
                    "must be greater than HERALD_FALLBACK_WEBHOOK_TIMEOUT_MS",
                ));
            }
        }
        if let Some(p) = &push {
            if lease <= p.timeout {
                return Err(invalid(
                    "HERALD_FALLBACK_LEASE_MS",
                    "must be greater than HERALD_PUSH_TIMEOUT_MS",
                ));
            }
        }
        // An SMTP send is a handful of commands, each bounded by the timeout.
        if let Some(e) = &email {
            if lease <= e.timeout * 4 {
                return Err(invalid(
                    "HERALD_FALLBACK_LEASE_MS",
                    "must be greater than 4 × HERALD_SMTP_TIMEOUT_MS (an SMTP send is several commands)",
                ));
            }
        }
        Ok(crate::fallback::FallbackConfig {
            rules,
            poll: src.millis("HERALD_FALLBACK_POLL_MS", 1_000, 10, 60_000)?,
            lease,
            batch: src.ranged("HERALD_FALLBACK_BATCH", 64, 1, 1_000)?,
            max_age: Duration::from_secs(src.ranged(
                "HERALD_FALLBACK_MAX_AGE_SECS",
                3_600,
                1,
                604_800,
            )?),
            retry: RetryPolicy {
                base,
                cap,
                max_attempts: src.ranged("HERALD_FALLBACK_MAX_ATTEMPTS", 8, 1, 100)?,
            },
            job_retention: Duration::from_secs(
                3_600 * src.ranged::<u64>("HERALD_FALLBACK_JOB_RETENTION_HOURS", 168, 1, 87_600)?,
            ),
            webhook,
            push,
            email,
        })
    }

    /// `HERALD_VAPID_*` and `HERALD_PUSH_*` (docs/channels.md, Web Push): the push channel
    /// exists when the VAPID key pair is configured.
    fn push_from(src: &Source) -> Result<Option<crate::fallback::push::PushConfig>, ConfigError> {
        use crate::fallback::push::{check_subject, PushConfig, VapidKey};
        const KEY: &str = "HERALD_VAPID_PRIVATE_KEY";
        const SUBJECT: &str = "HERALD_VAPID_SUBJECT";
        let (key, subject) = match (src.get(KEY), src.get(SUBJECT).map(str::trim)) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(invalid(SUBJECT, format!("is required with {KEY}"))),
            (None, Some(_)) => return Err(invalid(KEY, format!("is required with {SUBJECT}"))),
            (Some(k), Some(s)) => (k, s),
        };
        let vapid = VapidKey::parse(key).map_err(|e| invalid(KEY, e))?;
        check_subject(subject).map_err(|e| invalid(SUBJECT, e))?;
        Ok(Some(PushConfig {
            vapid: std::sync::Arc::new(vapid),
            subject: subject.to_owned(),
            ttl: Duration::from_secs(src.ranged("HERALD_PUSH_TTL_SECS", 86_400, 0, 2_419_200)?),
            timeout: src.millis("HERALD_PUSH_TIMEOUT_MS", 10_000, 100, 120_000)?,
            max_subscriptions: src.ranged("HERALD_PUSH_MAX_SUBSCRIPTIONS", 10, 1, 100)?,
            allow_http_loopback: lab_only(
                src,
                "HERALD_PUSH_ALLOW_HTTP_LOOPBACK",
                DEV_ENDPOINTS,
                |s| s.boolean("HERALD_PUSH_ALLOW_HTTP_LOOPBACK", false),
            )?,
        }))
    }

    /// `HERALD_SMTP_*` and `HERALD_EMAIL_*`: the email channel, set up when `HERALD_SMTP_URL`
    /// is given (then the others it needs are required).
    fn email_from(
        src: &Source,
    ) -> Result<Option<crate::fallback::email::EmailConfig>, ConfigError> {
        use crate::fallback::email::{check_smtp_url, load_templates, EmailConfig};
        const URL: &str = "HERALD_SMTP_URL";
        const FROM: &str = "HERALD_EMAIL_FROM";
        const PUBLIC: &str = "HERALD_PUBLIC_URL";
        const SECRET: &str = "HERALD_EMAIL_UNSUBSCRIBE_SECRET";
        const TEMPLATES: &str = "HERALD_EMAIL_TEMPLATES";
        let Some(url) = src.get(URL).map(str::trim) else {
            for var in [FROM, SECRET, TEMPLATES] {
                if src.get(var).is_some() {
                    return Err(invalid(var, format!("needs {URL} (the email channel)")));
                }
            }
            return Ok(None);
        };
        // The error never repeats the URL: it may hold the SMTP password.
        check_smtp_url(url).map_err(|e| invalid(URL, e))?;
        let from_raw = src.required(FROM)?;
        let from: lettre::message::Mailbox = from_raw.parse().map_err(|e| {
            invalid(
                FROM,
                format!("must be an address such as Herald <no-reply@example.com>: {e}"),
            )
        })?;
        let message_id_host = from.email.domain().to_owned();
        let public = src.required(PUBLIC)?;
        let parsed = url::Url::parse(&public).map_err(|e| invalid(PUBLIC, e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none()
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(invalid(
                PUBLIC,
                "must be an http:// or https:// URL without query or fragment, e.g. https://herald.example.com",
            ));
        }
        const LINK_BASE: &str = "HERALD_EMAIL_LINK_BASE";
        let link_base = match src.get(LINK_BASE).map(str::trim) {
            None => public.trim_end_matches('/').to_owned(),
            Some(b) => {
                let u = url::Url::parse(b).map_err(|e| invalid(LINK_BASE, e.to_string()))?;
                if !matches!(u.scheme(), "http" | "https")
                    || u.host_str().is_none()
                    || u.query().is_some()
                    || u.fragment().is_some()
                {
                    return Err(invalid(
                        LINK_BASE,
                        "must be an http:// or https:// URL without query or fragment, e.g. https://app.example.com",
                    ));
                }
                b.trim_end_matches('/').to_owned()
            }
        };
        let secret = src.required(SECRET)?;
        if secret.len() < 32 {
            return Err(invalid(SECRET, "must be at least 32 characters"));
        }
        let templates = match src.get(TEMPLATES) {
            None => herald_core::fallback::template::Templates::builtin(),
            Some(dir) => load_templates(std::path::Path::new(dir.trim()))
                .map_err(|e| invalid(TEMPLATES, e))?,
        };
        Ok(Some(EmailConfig {
            smtp_url: secrecy::SecretString::from(url.to_owned()),
            timeout: src.millis("HERALD_SMTP_TIMEOUT_MS", 10_000, 100, 120_000)?,
            from,
            message_id_host,
            public_url: public.trim_end_matches('/').to_owned(),
            link_base,
            unsubscribe_key: std::sync::Arc::new(secrecy::SecretSlice::from(secret.into_bytes())),
            digest_window: Duration::from_secs(src.ranged(
                "HERALD_EMAIL_DIGEST_WINDOW_SECS",
                900,
                1,
                86_400,
            )?),
            templates: std::sync::Arc::new(templates),
        }))
    }

    fn edge_from(src: &Source) -> Result<EdgeConfig, ConfigError> {
        let cidrs = |var: &str| Cidrs::parse(&src.list(var)).map_err(|e| invalid(var, e));
        let rate = |per_sec: &str, burst: &str, d_rate: u32, d_burst: u32| {
            Ok::<_, ConfigError>(Rate::new(
                src.ranged(per_sec, d_rate, 1, 10_000_000)?,
                src.ranged(burst, d_burst, 1, 10_000_000)?,
            ))
        };
        Ok(EdgeConfig {
            proxy_protocol: src.boolean("HERALD_PROXY_PROTOCOL", false)?,
            trusted_proxies: cidrs("HERALD_TRUSTED_PROXIES")?,
            limit_exempt: cidrs("HERALD_LIMIT_EXEMPT")?,
            max_http_connections: src.ranged("HERALD_MAX_HTTP_CONNECTIONS", 1_024, 1, 1_000_000)?,
            max_http_connections_per_addr: src.ranged(
                "HERALD_MAX_HTTP_CONNECTIONS_PER_ADDR",
                256,
                1,
                1_000_000,
            )?,
            request_timeout: src.millis("HERALD_REQUEST_TIMEOUT_MS", 30_000, 100, 3_600_000)?,
            max_sockets_per_addr: src.ranged(
                "HERALD_MAX_SOCKETS_PER_ADDR",
                1_000,
                1,
                10_000_000,
            )?,
            handshakes_per_addr: rate(
                "HERALD_HANDSHAKES_PER_ADDR_PER_SEC",
                "HERALD_HANDSHAKES_PER_ADDR_BURST",
                50,
                200,
            )?,
            // Room for a reconnect herd (every browser sends `auth` right after its 101) while
            // still small next to the socket cap.
            max_preauth_sockets: src.ranged("HERALD_MAX_PREAUTH_SOCKETS", 1_024, 1, 1_000_000)?,
            max_tracked_addrs: src.ranged("HERALD_MAX_TRACKED_ADDRS", 100_000, 16, 100_000_000)?,
            user_api: rate(
                "HERALD_USER_API_RATE_PER_SEC",
                "HERALD_USER_API_RATE_BURST",
                20,
                60,
            )?,
            publish: rate(
                "HERALD_PUBLISH_RATE_PER_SEC",
                "HERALD_PUBLISH_RATE_BURST",
                20_000,
                40_000,
            )?,
            broadcast: rate(
                "HERALD_BROADCAST_RATE_PER_SEC",
                "HERALD_BROADCAST_RATE_BURST",
                1,
                10,
            )?,
        })
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }

    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_ref().map(|s| s.expose_secret())
    }

    /// The store's settings: the pool, and the timeouts the node runs with.
    pub fn store(&self) -> herald_store::StoreConfig {
        herald_store::StoreConfig {
            url: self.database_url().to_string(),
            pool_size: self.database_pool_size,
            statement_timeout_ms: STATEMENT_TIMEOUT_MS,
            connect_timeout_ms: self.database_timeout.as_millis() as u64,
        }
    }

    /// The bus's settings. Fails only on an unusable `HERALD_BUS_HMAC_KEY`.
    pub fn bus(&self) -> Result<herald_bus::BusConfig, ConfigError> {
        let key = self
            .bus_hmac_key
            .as_ref()
            .map(|k| herald_protocol::bus::BusKey::new(k.expose_secret().as_bytes()))
            .transpose()
            .map_err(|e| invalid("HERALD_BUS_HMAC_KEY", e.to_string()))?;
        Ok(herald_bus::BusConfig {
            redis_url: self.redis_url().map(str::to_string),
            cluster_nodes: self.redis_cluster_nodes.clone(),
            tls_ca_file: self.redis_ca_file.clone(),
            prefix: self.redis_prefix.clone(),
            node_id: self.node_id.clone(),
            probe_interval: self.probe_interval,
            probe_timeout: self.probe_timeout,
            publish_pool_size: BUS_PUBLISH_POOL,
            key,
        })
    }
}

/// The admin listener's default port (on 127.0.0.1).
pub const DEFAULT_ADMIN_PORT: u16 = 9090;

/// Longest a store statement may run on the request and socket paths.
const STATEMENT_TIMEOUT_MS: u64 = 10_000;
/// Redis connections for publishing (the subscriber has its own).
const BUS_PUBLISH_POOL: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        [
            (
                "HERALD_DATABASE_URL",
                "postgres://postgres@127.0.0.1/herald",
            ),
            ("HERALD_SERVICE_KEYS", "0123456789abcdef0123"),
            (
                "HERALD_JWT_HS256_SECRET",
                "0123456789abcdef0123456789abcdef",
            ),
            ("HERALD_JWT_AUDIENCE", "herald"),
            ("HERALD_JWT_ISSUER", "https://id.example"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn with(k: &str, v: &str) -> Result<Config, ConfigError> {
        let mut m = base();
        m.insert(k.to_string(), v.to_string());
        Config::from_values(m)
    }

    fn var_of(r: Result<Config, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { var, .. }) => var,
            other => panic!("expected an invalid-config error, got {other:?}"),
        }
    }

    #[test]
    fn socketio_settings_are_checked() {
        let c = Config::from_values(base()).unwrap();
        assert!(c.socketio.enabled);
        assert_eq!(c.socketio.path, "/socket.io");
        assert_eq!(c.socketio.namespace, "/notifications");
        assert_eq!(
            with("HERALD_SOCKETIO_PATH", "/rt/").unwrap().socketio.path,
            "/rt"
        );
        for (k, v) in [
            ("HERALD_SOCKETIO_PATH", "rt"),
            ("HERALD_SOCKETIO_PATH", "/v1/ws"),
            ("HERALD_SOCKETIO_PATH", "/a?b"),
            ("HERALD_SOCKETIO_NAMESPACE", "bell"),
            ("HERALD_SOCKETIO_NAMESPACE", "/a,b"),
            ("HERALD_SOCKETIO_EVENTS", "notifications"),
            ("HERALD_SOCKETIO_ENABLED", "maybe"),
        ] {
            assert_eq!(var_of(with(k, v)), k, "{k}={v}");
        }
    }

    #[test]
    fn email_settings_are_checked() {
        const SECRET: &str = "unsubscribe-secret-0123456789abcdef";
        let fb = |pairs: &[(&str, &str)]| {
            let mut m = base();
            for (k, v) in pairs {
                m.insert(k.to_string(), v.to_string());
            }
            Config::from_values(m)
        };
        let good: Vec<(&str, &str)> = vec![
            ("HERALD_FALLBACK_TYPES", "dm:email:30s"),
            (
                "HERALD_SMTP_URL",
                "smtp://user:pw@mail.example:587?tls=required",
            ),
            ("HERALD_EMAIL_FROM", "Herald <no-reply@herald.example>"),
            ("HERALD_PUBLIC_URL", "https://herald.example/"),
            ("HERALD_EMAIL_UNSUBSCRIBE_SECRET", SECRET),
        ];
        let ok = fb(&good).unwrap();
        let e = ok.fallback.email.as_ref().unwrap();
        assert_eq!(e.message_id_host, "herald.example");
        assert_eq!(e.public_url, "https://herald.example");
        assert_eq!(e.digest_window, Duration::from_secs(900));
        // The SMTP URL (it may hold a password) never shows in Debug.
        assert!(!format!("{ok:?}").contains("pw@"));
        let dir = std::env::temp_dir().join(format!("herald-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dm.html"), "<b>{{title}}</b>").unwrap();
        std::fs::write(dir.join("dm.txt"), "{{title}}").unwrap();
        let with = |extra: &[(&'static str, String)]| {
            let mut p: Vec<(&str, String)> =
                good.iter().map(|(k, v)| (*k, v.to_string())).collect();
            p.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
            p.extend(extra.iter().cloned());
            p
        };
        let tpl = dir.display().to_string();
        let loaded = with(&[("HERALD_EMAIL_TEMPLATES", tpl.clone())]);
        let loaded: Vec<(&str, &str)> = loaded.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(fb(&loaded)
            .unwrap()
            .fallback
            .email
            .unwrap()
            .templates
            .by_type
            .contains_key("dm"));
        let bad_dir = std::env::temp_dir().join(format!("herald-tpl-bad-{}", std::process::id()));
        std::fs::create_dir_all(&bad_dir).unwrap();
        std::fs::write(bad_dir.join("dm.html"), "{{titel}}").unwrap();
        std::fs::write(bad_dir.join("dm.txt"), "{{title}}").unwrap();
        let half_dir = std::env::temp_dir().join(format!("herald-tpl-half-{}", std::process::id()));
        std::fs::create_dir_all(&half_dir).unwrap();
        std::fs::write(half_dir.join("dm.html"), "{{title}}").unwrap();
        for (extra, var, words) in [
            (
                vec![("HERALD_SMTP_URL", "http://mail.example".to_owned())],
                "HERALD_SMTP_URL",
                "smtp://",
            ),
            (
                vec![(
                    "HERALD_SMTP_URL",
                    "smtp://mail.example?tls=maybe".to_owned(),
                )],
                "HERALD_SMTP_URL",
                "tls=",
            ),
            (
                vec![("HERALD_EMAIL_FROM", "not an address".to_owned())],
                "HERALD_EMAIL_FROM",
                "address",
            ),
            (
                vec![("HERALD_EMAIL_LINK_BASE", "javascript:alert(1)".to_owned())],
                "HERALD_EMAIL_LINK_BASE",
                "http",
            ),
            (
                vec![("HERALD_PUBLIC_URL", "ftp://herald.example".to_owned())],
                "HERALD_PUBLIC_URL",
                "http",
            ),
            (
                vec![(
                    "HERALD_PUBLIC_URL",
                    "https://herald.example/?a=1".to_owned(),
                )],
                "HERALD_PUBLIC_URL",
                "query",
            ),
            (
                vec![("HERALD_EMAIL_UNSUBSCRIBE_SECRET", "short".to_owned())],
                "HERALD_EMAIL_UNSUBSCRIBE_SECRET",
                "32",
            ),
            (
                vec![("HERALD_EMAIL_DIGEST_WINDOW_SECS", "0".to_owned())],
                "HERALD_EMAIL_DIGEST_WINDOW_SECS",
                "between",
            ),
            (
                vec![("HERALD_EMAIL_TEMPLATES", bad_dir.display().to_string())],
                "HERALD_EMAIL_TEMPLATES",
                "unknown placeholder {{titel}}",
            ),
            (
                vec![("HERALD_EMAIL_TEMPLATES", half_dir.display().to_string())],
                "HERALD_EMAIL_TEMPLATES",
                "dm.txt",
            ),
            (
                vec![("HERALD_EMAIL_TEMPLATES", "/nonexistent/herald".to_owned())],
                "HERALD_EMAIL_TEMPLATES",
                "nonexistent",
            ),
            (
                vec![
                    ("HERALD_SMTP_TIMEOUT_MS", "30000".to_owned()),
                    ("HERALD_FALLBACK_LEASE_MS", "60000".to_owned()),
                ],
                "HERALD_FALLBACK_LEASE_MS",
                "HERALD_SMTP_TIMEOUT_MS",
            ),
        ] {
            let pairs = with(&extra);
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match fb(&pairs) {
                Err(ConfigError::Invalid { var: v, message }) => {
                    assert_eq!(v, var, "{extra:?}: {message}");
                    assert!(message.contains(words), "{extra:?}: {message}");
                    assert!(
                        !message.contains("pw@"),
                        "the SMTP password leaked: {message}"
                    );
                }
                other => panic!("{extra:?}: expected a refusal, got {other:?}"),
            }
        }
        // Without HERALD_SMTP_URL the others are refused, not ignored.
        for (var, value) in [
            ("HERALD_EMAIL_FROM", "a@b.co"),
            ("HERALD_EMAIL_UNSUBSCRIBE_SECRET", SECRET),
        ] {
            match fb(&[(var, value)]) {
                Err(ConfigError::Invalid { var: v, message }) => {
                    assert_eq!(v, var);
                    assert!(message.contains("HERALD_SMTP_URL"), "{message}");
                }
                other => panic!("{var}: expected a refusal, got {other:?}"),
            }
        }
        // Each required setting, missing.
        for var in [
            "HERALD_EMAIL_FROM",
            "HERALD_PUBLIC_URL",
            "HERALD_EMAIL_UNSUBSCRIBE_SECRET",
        ] {
            let pairs: Vec<(&str, &str)> =
                good.iter().copied().filter(|(k, _)| *k != var).collect();
            match fb(&pairs) {
                Err(ConfigError::Invalid { var: v, message }) => {
                    assert_eq!(v, var);
                    assert!(message.contains("required"), "{message}");
                }
                other => panic!("{var}: expected a refusal, got {other:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(bad_dir);
        let _ = std::fs::remove_dir_all(half_dir);
    }

    #[test]
    fn fallback_settings_are_checked() {
        const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        const VAPID: &str = "RS0WdYWWo1HajXg3NZR1olzCf31i-ZBGDkFyCs7j1jw";
        let fb = |pairs: &[(&str, &str)]| {
            let mut m = base();
            for (k, v) in pairs {
                m.insert(k.to_string(), v.to_string());
            }
            Config::from_values(m)
        };
        let ok = fb(&[
            ("HERALD_FALLBACK_TYPES", "dm:webhook:30s"),
            (
                "HERALD_FALLBACK_WEBHOOK_URL",
                "https://hooks.example/herald",
            ),
            ("HERALD_FALLBACK_WEBHOOK_SECRET", SECRET),
        ])
        .unwrap();
        assert_eq!(
            ok.fallback.rules.rule("dm").unwrap().after,
            Duration::from_secs(30)
        );
        assert!(Config::from_values(base())
            .unwrap()
            .fallback
            .rules
            .is_empty());
        let push = fb(&[
            ("HERALD_FALLBACK_TYPES", "dm:push:30s"),
            ("HERALD_VAPID_PRIVATE_KEY", VAPID),
            ("HERALD_VAPID_SUBJECT", "mailto:ops@example.com"),
        ])
        .unwrap();
        let p = push.fallback.push.unwrap();
        assert_eq!(
            (p.ttl, p.max_subscriptions),
            (Duration::from_secs(86_400), 10)
        );
        assert!(!format!("{p:?}").contains(VAPID));
        for (pairs, var, words) in [
            (
                vec![("HERALD_FALLBACK_TYPES", "dm:webhook:30s")],
                "HERALD_FALLBACK_TYPES",
                "not set up",
            ),
            (
                vec![("HERALD_FALLBACK_TYPES", "dm:email:30s")],
                "HERALD_FALLBACK_TYPES",
                "set HERALD_SMTP_URL",
            ),
            (
                vec![("HERALD_FALLBACK_TYPES", "dm:push:30s")],
                "HERALD_FALLBACK_TYPES",
                "HERALD_VAPID_PRIVATE_KEY",
            ),
            (
                vec![("HERALD_VAPID_PRIVATE_KEY", VAPID)],
                "HERALD_VAPID_SUBJECT",
                "required",
            ),
            (
                vec![("HERALD_VAPID_SUBJECT", "mailto:ops@example.com")],
                "HERALD_VAPID_PRIVATE_KEY",
                "required",
            ),
            (
                vec![
                    ("HERALD_VAPID_PRIVATE_KEY", "c2hvcnQ"),
                    ("HERALD_VAPID_SUBJECT", "mailto:ops@example.com"),
                ],
                "HERALD_VAPID_PRIVATE_KEY",
                "32 bytes",
            ),
            (
                vec![
                    ("HERALD_VAPID_PRIVATE_KEY", VAPID),
                    ("HERALD_VAPID_SUBJECT", "ops@example.com"),
                ],
                "HERALD_VAPID_SUBJECT",
                "mailto",
            ),
            (
                vec![
                    ("HERALD_VAPID_PRIVATE_KEY", VAPID),
                    ("HERALD_VAPID_SUBJECT", "mailto:ops@example.com"),
                    ("HERALD_PUSH_TTL_SECS", "99999999"),
                ],
                "HERALD_PUSH_TTL_SECS",
                "between",
            ),
            (
                vec![
                    ("HERALD_VAPID_PRIVATE_KEY", VAPID),
                    ("HERALD_VAPID_SUBJECT", "mailto:ops@example.com"),
                    ("HERALD_PUSH_MAX_SUBSCRIPTIONS", "0"),
                ],
                "HERALD_PUSH_MAX_SUBSCRIPTIONS",
                "between",
            ),
            (
                vec![
                    ("HERALD_VAPID_PRIVATE_KEY", VAPID),
                    ("HERALD_VAPID_SUBJECT", "mailto:ops@example.com"),
                    ("HERALD_PUSH_TIMEOUT_MS", "5000"),
                    ("HERALD_FALLBACK_LEASE_MS", "5000"),
                ],
                "HERALD_FALLBACK_LEASE_MS",
                "greater than HERALD_PUSH_TIMEOUT_MS",
            ),
            (
                vec![("HERALD_FALLBACK_TYPES", "dm:webhook")],
                "HERALD_FALLBACK_TYPES",
                "entry #1",
            ),
            (
                vec![("HERALD_FALLBACK_WEBHOOK_URL", "https://h.example")],
                "HERALD_FALLBACK_WEBHOOK_SECRET",
                "required",
            ),
            (
                vec![
                    ("HERALD_FALLBACK_WEBHOOK_URL", "https://h.example"),
                    (
                        "HERALD_FALLBACK_WEBHOOK_SECRET",
                        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    ),
                ],
                "HERALD_FALLBACK_WEBHOOK_SECRET",
                "whsec_",
            ),
            (
                vec![
                    ("HERALD_FALLBACK_WEBHOOK_URL", "ftp://h.example"),
                    ("HERALD_FALLBACK_WEBHOOK_SECRET", SECRET),
                ],
                "HERALD_FALLBACK_WEBHOOK_URL",
                "http",
            ),
            (
                vec![
                    ("HERALD_FALLBACK_WEBHOOK_URL", "https://h.example"),
                    ("HERALD_FALLBACK_WEBHOOK_SECRET", SECRET),
                    ("HERALD_FALLBACK_WEBHOOK_TIMEOUT_MS", "5000"),
                    ("HERALD_FALLBACK_LEASE_MS", "5000"),
                ],
                "HERALD_FALLBACK_LEASE_MS",
                "greater than HERALD_FALLBACK_WEBHOOK_TIMEOUT_MS",
            ),
            (
                vec![("HERALD_FALLBACK_JOB_RETENTION_HOURS", "0")],
                "HERALD_FALLBACK_JOB_RETENTION_HOURS",
                "between 1 and 87600",
            ),
        ] {
            match fb(&pairs) {
                Err(ConfigError::Invalid { var: v, message }) => {
                    assert_eq!(v, var, "{pairs:?}: {message}");
                    assert!(message.contains(words), "{pairs:?}: {message}");
                }
                other => panic!("{pairs:?}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_values(base()).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(
            c.admin_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9090)))
        );
        assert_eq!(
            with("HERALD_ADMIN_LISTEN", "off").unwrap().admin_listen,
            None
        );
        assert!(c.redis_url.is_none());
        assert_eq!(c.redis_prefix, "herald:");
        assert_eq!(c.http_keep_alive, Duration::from_secs(75));
        assert_eq!(c.delivery_flush_interval, Duration::from_millis(200));
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases = [
            ("HERALD_LISTEN", "not-an-address"),
            ("HERALD_ADMIN_LISTEN", "9090"),
            ("HERALD_JWT_JWKS_URL", "http://id.example.com/jwks"),
            ("HERALD_JWT_JWKS_URL", "not a url"),
            ("HERALD_JWT_JWKS_MAX_AGE_SECS", "0"),
            ("HERALD_JWT_JWKS_MIN_REFETCH_MS", "10"),
            ("HERALD_ADMIN_LISTEN", "127.0.0.1:8080"),
            ("HERALD_ADMIN_LISTEN", "0.0.0.0:8080"),
            ("HERALD_DATABASE_URL", "mysql://x"),
            ("HERALD_REDIS_URL", "http://x"),
            ("HERALD_BUS_HMAC_KEY", "shorter-than-32-bytes"),
            ("HERALD_SERVICE_KEYS", "short"),
            ("HERALD_JWT_HS256_SECRET", "too-short"),
            ("HERALD_JWT_PUBLIC_KEYS", "/nonexistent/key.pem"),
            ("HERALD_ALLOWED_ORIGINS", "https://app.example.com/"),
            ("HERALD_ALLOWED_ORIGINS", "app.example.com"),
            ("HERALD_MAX_SOCKETS_PER_USER", "0"),
            ("HERALD_OUTBOUND_QUEUE", "lots"),
            ("HERALD_IDLE_TIMEOUT_MS", "1000"),
            ("HERALD_MIGRATE_ON_START", "maybe"),
            ("HERALD_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("HERALD_LIMIT_EXEMPT", "loopback"),
            ("HERALD_PROXY_PROTOCOL", "v2"),
            ("HERALD_MAX_HTTP_CONNECTIONS", "0"),
            ("HERALD_MAX_HTTP_CONNECTIONS_PER_ADDR", "0"),
            ("HERALD_REQUEST_TIMEOUT_MS", "5"),
            ("HERALD_MAX_SOCKETS_PER_ADDR", "0"),
            ("HERALD_HANDSHAKES_PER_ADDR_PER_SEC", "0"),
            ("HERALD_MAX_PREAUTH_SOCKETS", "0"),
            ("HERALD_USER_API_RATE_BURST", "-1"),
            ("HERALD_PUBLISH_RATE_PER_SEC", "fast"),
            ("HERALD_BROADCAST_RATE_PER_SEC", "0"),
            ("HERALD_NODE_ID", "has space"),
            ("HERALD_STATIC_DIR", "/nonexistent-dir"),
            ("HERALD_IDEMPOTENCY_TTL_HOURS", "0"),
            ("HERALD_HTTP_KEEP_ALIVE_MS", "999"),
            ("HERALD_HTTP_KEEP_ALIVE_MS", "soon"),
            ("HERALD_DELIVERY_FLUSH_MS", "9"),
            ("HERALD_DELIVERY_FLUSH_MS", "10001"),
            ("HERALD_SCOPED_SERVICE_KEYS", "0123456789abcdef-scoped"),
            (
                "HERALD_SCOPED_SERVICE_KEYS",
                "admin:0123456789abcdef-scoped",
            ),
            ("HERALD_SCOPED_SERVICE_KEYS", "publish:short"),
            ("HERALD_SCOPED_SERVICE_KEYS", "revoke:0123456789abcdef0123"),
            ("HERALD_REVOCATION_REFRESH_MS", "10"),
            ("HERALD_REVOCATION_RETENTION_HOURS", "0"),
            (
                "HERALD_DATABASE_URL",
                "postgres://db/h?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            ),
            ("HERALD_DATABASE_URL", "postgres://db/h?sslmode=verify"),
            ("HERALD_DATABASE_URL", "postgres://db/h?sslcert=/c.pem"),
            ("HERALD_REDIS_CA_FILE", "/nonexistent/ca.pem"),
            ("HERALD_REDIS_URL", "rediss://cache:6380/#insecure"),
            ("HERALD_REDIS_CLUSTER_NODES", "127.0.0.1"),
        ];
        for (var, value) in cases {
            assert_eq!(var_of(with(var, value)), var, "{var}={value}");
        }
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = std::env::temp_dir().join(format!("herald-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url_file = dir.join("database-url");
        std::fs::write(&url_file, "postgres://from-file@db/herald\n").unwrap();
        let mut m = base();
        m.remove("HERALD_DATABASE_URL");
        m.insert(
            "HERALD_DATABASE_URL_FILE".into(),
            url_file.display().to_string(),
        );
        resolve_secret_files(&mut m).unwrap();
        let c = Config::from_values(m).unwrap();
        assert_eq!(c.database_url(), "postgres://from-file@db/herald");

        // Both at once, an unreadable file and an empty one are refused by name.
        let mut both = base();
        both.insert(
            "HERALD_DATABASE_URL_FILE".into(),
            url_file.display().to_string(),
        );
        let missing = [(
            "HERALD_SERVICE_KEYS_FILE".to_string(),
            "/nonexistent/keys".to_string(),
        )];
        let empty_file = dir.join("empty");
        std::fs::write(&empty_file, "\n").unwrap();
        let empty = [(
            "HERALD_BUS_HMAC_KEY_FILE".to_string(),
            empty_file.display().to_string(),
        )];
        for (mut m, var, needle) in [
            (both, "HERALD_DATABASE_URL_FILE", "not both"),
            (
                missing.into_iter().collect(),
                "HERALD_SERVICE_KEYS_FILE",
                "cannot read",
            ),
            (
                empty.into_iter().collect(),
                "HERALD_BUS_HMAC_KEY_FILE",
                "is empty",
            ),
        ] {
            match resolve_secret_files(&mut m) {
                Err(ConfigError::Invalid {
                    var: v,
                    message: reason,
                }) => {
                    assert_eq!(v, var);
                    assert!(reason.contains(needle), "{reason}");
                }
                other => panic!("{var}: expected an error, got {other:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_redis_ca_file_that_cannot_be_read_is_refused_by_name() {
        let mut m = base();
        m.insert("HERALD_REDIS_URL".into(), "rediss://cache:6380".into());
        m.insert("HERALD_REDIS_CA_FILE".into(), "/nonexistent/ca.pem".into());
        assert_eq!(var_of(Config::from_values(m)), "HERALD_REDIS_CA_FILE");
        let c = with("HERALD_REDIS_URL", "rediss://cache:6380").unwrap();
        assert!(c.redis_ca_file.is_none(), "no CA file: the system store");
    }

    #[test]
    fn redis_cluster_nodes_are_checked_and_exclusive() {
        let c = with(
            "HERALD_REDIS_CLUSTER_NODES",
            "127.0.0.1:7001, 127.0.0.1:7002,redis-0.redis:6379",
        )
        .unwrap();
        assert_eq!(c.redis_cluster_nodes.len(), 3);
        assert_eq!(c.bus().unwrap().cluster_nodes, c.redis_cluster_nodes);
        let refused = |extra: &[(&str, &str)], needle: &str| {
            let mut m = base();
            for (k, v) in extra {
                m.insert(k.to_string(), v.to_string());
            }
            match Config::from_values(m) {
                Err(ConfigError::Invalid { var, message }) => {
                    assert_eq!(var, "HERALD_REDIS_CLUSTER_NODES", "{extra:?}");
                    assert!(message.contains(needle), "{message}");
                }
                other => panic!("{extra:?}: expected a refusal, got {other:?}"),
            }
        };
        // Both settings: refused, naming both.
        refused(
            &[
                ("HERALD_REDIS_CLUSTER_NODES", "127.0.0.1:7001"),
                ("HERALD_REDIS_URL", "redis://127.0.0.1:6379"),
            ],
            "HERALD_REDIS_URL",
        );
        // TLS and passwords are not supported in cluster mode.
        refused(
            &[("HERALD_REDIS_CLUSTER_NODES", "rediss://127.0.0.1:7001")],
            "not supported in cluster mode",
        );
        refused(
            &[("HERALD_REDIS_CLUSTER_NODES", "user:secret@127.0.0.1:7001")],
            "not supported in cluster mode",
        );
        let ca = std::env::temp_dir().join(format!("herald-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&ca, "not used").unwrap();
        refused(
            &[
                ("HERALD_REDIS_CLUSTER_NODES", "127.0.0.1:7001"),
                ("HERALD_REDIS_CA_FILE", ca.to_str().unwrap()),
            ],
            "not supported in cluster mode",
        );
        let _ = std::fs::remove_file(&ca);
        refused(&[("HERALD_REDIS_CLUSTER_NODES", "127.0.0.1")], "host:port");
        refused(
            &[("HERALD_REDIS_CLUSTER_NODES", "127.0.0.1:0")],
            "host:port",
        );
        let many: Vec<String> = (0..65).map(|i| format!("10.0.0.{i}:6379")).collect();
        refused(
            &[("HERALD_REDIS_CLUSTER_NODES", many.join(",").as_str())],
            "at most 64",
        );
    }

    /// Audience and issuer are required; "any" only by an explicit opt-out, which cannot be
    /// combined with a value.
    #[test]
    fn audience_and_issuer_are_required_unless_any_is_chosen_explicitly() {
        for (var, any) in [
            ("HERALD_JWT_AUDIENCE", "HERALD_JWT_ALLOW_ANY_AUDIENCE"),
            ("HERALD_JWT_ISSUER", "HERALD_JWT_ALLOW_ANY_ISSUER"),
        ] {
            let mut m = base();
            m.remove(var);
            assert_eq!(var_of(Config::from_values(m.clone())), var);
            m.insert(any.into(), "true".into());
            assert!(Config::from_values(m).is_ok(), "{any}=true accepts any");
            assert_eq!(var_of(with(any, "true")), any, "{any} with {var} set");
        }
        let c = Config::from_values(base()).unwrap();
        assert_eq!(c.jwt.audience.as_deref(), Some("herald"));
        assert_eq!(c.jwt.issuer.as_deref(), Some("https://id.example"));
    }

    #[test]
    fn scoped_keys_follow_the_all_scope_keys() {
        use crate::auth::{Scope, Scopes};
        let c = with(
            "HERALD_SCOPED_SERVICE_KEYS",
            "publish+broadcast:pub-key-0123456789, revoke:rev:key:0123456789",
        )
        .unwrap();
        assert_eq!(c.service_keys.len(), 3);
        assert_eq!(c.service_keys[2].expose_secret(), "rev:key:0123456789");
        assert_eq!(c.service_key_scopes[0], Scopes::ALL);
        assert!(c.service_key_scopes[1].allows(Scope::Broadcast));
        assert!(!c.service_key_scopes[1].allows(Scope::Revoke));
        assert!(c.service_key_scopes[2].allows(Scope::Revoke));
        assert!(!c.service_key_scopes[2].allows(Scope::Publish));
        // Scoped keys alone are enough.
        let mut m = base();
        m.remove("HERALD_SERVICE_KEYS");
        m.insert(
            "HERALD_SCOPED_SERVICE_KEYS".into(),
            "revoke:0123456789abcdef".into(),
        );
        assert_eq!(Config::from_values(m).unwrap().service_keys.len(), 1);
    }

    #[test]
    fn missing_required_values_are_named() {
        for var in [
            "HERALD_DATABASE_URL",
            "HERALD_SERVICE_KEYS",
            "HERALD_JWT_HS256_SECRET",
            "HERALD_JWT_AUDIENCE",
            "HERALD_JWT_ISSUER",
        ] {
            let mut m = base();
            m.remove(var);
            assert_eq!(var_of(Config::from_values(m)), var);
        }
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let mut values = base();
        values.insert(
            "HERALD_BUS_HMAC_KEY".into(),
            "bus-key-bus-key-bus-key-bus-key-bus-key".into(),
        );
        let c = Config::from_values(values).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("bus-key-bus-key"));
        assert!(!dbg.contains("0123456789abcdef0123456789abcdef"));
        assert!(!dbg.contains("0123456789abcdef0123"));
    }
}
