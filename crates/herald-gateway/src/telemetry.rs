//! Logging: `HERALD_LOG` is the tracing filter (default `info`), `HERALD_LOG_FORMAT` is
//! `text` (default) or `json`.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter};

use crate::fds::AcceptErrors;

pub fn init() {
    let filter = EnvFilter::try_from_env("HERALD_LOG")
        // actix-http logs a client's fragmented control frame at ERROR: any client could fill
        // the log with it, so that target is off by default (the socket is still closed).
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn,actix_http::ws::codec=off"));
    let json = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // Colours only on a terminal, so log files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    // `AcceptErrors` counts accept-loop failures (descriptors exhausted) for the metrics.
    let _ = if json {
        builder.json().finish().with(AcceptErrors).try_init()
    } else {
        builder.finish().with(AcceptErrors).try_init()
    };
}
