//! `herald-loadtest`: load-test harness for Herald (see loadtest/README.md).
//!
//! The coordinator (this process) spawns `--workers` copies of itself (`herald-loadtest
//! worker`), each holding a shard of the sockets, drives them over a JSON-lines protocol on
//! stdin/stdout (`ctl`), publishes over HTTP itself, and merges their results.

mod coord;
mod ctl;
mod http1;
mod sio;
mod sys;
mod worker;

use clap::{Args, Parser, Subcommand};

/// The load generator shares the two cores with the system under test, so what it spends is
/// taken from the servers: glibc's malloc was ~10 % of a storm worker's samples
/// (`_int_malloc`, `_int_free`, `malloc_consolidate`), mimalloc is the gateway's allocator
/// too (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "herald-loadtest",
    version,
    about = "Load-test harness for the Herald gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connect N users and hold them idle: connect rate, RSS per connection, socket memory.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Seconds to hold the connections (answering pings) after they are all up.
        #[arg(long, default_value_t = 10.0)]
        hold: f64,
    },
    /// Publish per-user notifications at a rate; end-to-end latency, loss, duplicates.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        publish: PublishArgs,
        /// Publishes per second, or `max` (as fast as `--publish-concurrency` allows).
        #[arg(long, default_value = "1000")]
        rate: String,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Stop after this many publish calls (whichever of duration/count comes first).
        #[arg(long)]
        count: Option<u64>,
        /// Seconds to wait after the last publish for every notification to arrive.
        #[arg(long, default_value_t = 10.0)]
        grace: f64,
    },
    /// One (or --count) POST /v1/broadcasts to everyone connected; time until the last socket has it.
    Broadcast {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        publish: PublishArgs,
        /// Number of broadcasts, sent one after another (each waits for full delivery or grace).
        #[arg(long, default_value_t = 3)]
        count: u32,
        #[arg(long, default_value_t = 10.0)]
        grace: f64,
    },
    /// Drop every connection at once, publish while they are down, reconnect all with resume.
    Storm {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        publish: PublishArgs,
        /// Notifications published (round robin over users) while the sockets are down.
        #[arg(long, default_value_t = 1000)]
        publish_while_down: u64,
        /// Extra seconds to stay down after publishing.
        #[arg(long, default_value_t = 0.5)]
        down: f64,
        /// Number of drop/resume rounds.
        #[arg(long, default_value_t = 1)]
        rounds: u32,
        #[arg(long, default_value_t = 15.0)]
        grace: f64,
    },
    /// Internal: a worker process driven over stdin/stdout by the coordinator.
    #[command(hide = true)]
    Worker,
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct Common {
    /// Wire protocol: `herald` (Herald's /v1/ws) or `socketio` (Socket.IO v4 over a websocket,
    /// e.g. the baseline in loadtest/baselines/socketio; targets `ws://host:port` get
    /// `/socket.io/?EIO=4&transport=websocket` appended). Not every scenario applies: storm
    /// with socketio measures reconnects only (Socket.IO has no resume: use
    /// --publish-while-down 0). `herald-sio`: Herald's own Socket.IO endpoint (targets
    /// `ws://host:port`), publishing through Herald's API; storm recovers with `pid` + `offset`.
    #[arg(long, value_enum, default_value_t = crate::ctl::Protocol::Herald)]
    pub protocol: crate::ctl::Protocol,
    /// Socket.IO namespace (with --protocol socketio); the seed design uses /notifications.
    #[arg(long, default_value = "/notifications")]
    pub sio_namespace: String,
    /// Number of users (each with --sockets-per-user sockets).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub users: usize,
    #[arg(long, default_value_t = 1)]
    pub sockets_per_user: usize,
    /// Comma-separated WebSocket endpoints; users are spread round robin.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8081/v1/ws"
    )]
    pub targets: Vec<String>,
    /// Worker processes (each holds at most ~19,000 sockets). Default: one per 15,000 sockets.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Loopback source addresses per worker (127.0.<10+worker>.<1..=N>), bound before connect.
    #[arg(long, default_value_t = 4)]
    pub ips_per_worker: usize,
    /// Concurrent handshakes in flight per worker.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Per-socket WebSocket read buffer (bytes).
    #[arg(long, default_value_t = 4096)]
    pub read_buffer: usize,
    /// HS256 secret for user tokens (the gateway's HERALD_JWT_HS256_SECRET).
    #[arg(long, env = "HERALD_JWT_HS256_SECRET", hide_env_values = true)]
    #[serde(skip)]
    pub jwt_secret: String,
    /// `aud` claim for user tokens, when the gateways require one (their HERALD_JWT_AUDIENCE;
    /// `source .cluster/env` sets it for the local cluster).
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// `iss` claim for user tokens (the gateways' HERALD_JWT_ISSUER).
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// User id prefix; default: `lt<random>` so every run starts from fresh users.
    #[arg(long)]
    pub user_prefix: Option<String>,
    /// Gateway pids to measure RSS for (same order as --targets); default: found from the
    /// targets' listening ports through /proc.
    #[arg(long, value_delimiter = ',')]
    pub gateway_pids: Vec<u32>,
    /// Seconds allowed for all sockets to connect (per connect/resume phase).
    #[arg(long, default_value_t = 120.0)]
    pub connect_deadline: f64,
    /// Hard limit on the whole run, seconds.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Result file; default `<results-dir>/<scenario>-<timestamp>.json`.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    #[arg(long, default_value = "loadtest/results")]
    pub results_dir: std::path::PathBuf,
    /// Exit with status 3 when anything was lost, duplicated, out of order, or failed to connect.
    #[arg(long)]
    pub check: bool,
    /// Progress line interval, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub progress: f64,
}

#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct PublishArgs {
    /// Base HTTP URL of the node that receives publishes (`POST /v1/notifications`,
    /// `/v1/broadcasts`); several, comma-separated, spread publish calls round robin over
    /// them, as a load balancer would (broadcasts go to the first).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub publish_url: String,
    /// Service API key (the gateway's HERALD_SERVICE_KEYS).
    #[arg(long, env = "HERALD_SERVICE_KEY", hide_env_values = true)]
    #[serde(skip)]
    pub service_key: String,
    /// Publish calls in flight at once.
    #[arg(long, default_value_t = 64)]
    pub publish_concurrency: usize,
    /// Recipients per publish call (`recipients` array; 1 = one notification per call).
    #[arg(long, default_value_t = 1)]
    pub recipients_per_publish: usize,
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Command::Worker => worker::run().map(|_| 0),
        other => coord::run(other),
    };
    match res {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("herald-loadtest: error: {e:#}");
            std::process::exit(2);
        }
    }
}
