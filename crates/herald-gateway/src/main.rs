//! `herald serve | migrate | token | openapi`: parse the command line, load config, call the
//! library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald_gateway::config::{Config, JwtConfig};
use herald_gateway::{telemetry, Application};
use herald_store::{Store, StoreConfig};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald real-time notification gateway"
)]
struct Cli {
    /// Optional TOML config file; environment variables (HERALD_*) override it.
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway node.
    Serve,
    /// Apply database migrations and exit (needs only HERALD_DATABASE_URL).
    Migrate,
    /// Print a development token for a user (needs HERALD_JWT_HS256_SECRET).
    Token {
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: i64,
    },
    /// Print the HTTP API's OpenAPI 3.1 document (docs/openapi.json); needs no config.
    Openapi,
}

/// mimalloc instead of glibc's malloc: the per-notification and per-handshake paths allocate
/// and free many small, short-lived buffers across threads, and glibc spent that time in
/// `malloc_consolidate` and `unlink_chunk`. Its `no_thp` feature (Cargo.toml) matters: with
/// transparent huge pages mimalloc's arenas make every idle socket larger. Measurements:
/// docs/performance.md, "Measured choices in the code".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    herald_store::tls::install_crypto_provider();
    let values = Config::load_values(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            let config = Config::from_values(values)?;
            actix_web::rt::System::new().block_on(serve(config))
        }
        Command::Migrate => {
            let url = Config::database_url_from(&values)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let store = Store::connect(&StoreConfig {
                    url,
                    pool_size: 1,
                    statement_timeout_ms: 600_000,
                    connect_timeout_ms: 10_000,
                })
                .await
                .context("connecting to PostgreSQL")?;
                let applied = store.migrate().await.context("applying migrations")?;
                println!("migrations applied: {applied:?}");
                Ok(())
            })
        }
        Command::Openapi => {
            print!("{}", herald_gateway::openapi::render()?);
            Ok(())
        }
        Command::Token { user, ttl_secs } => {
            let jwt: JwtConfig = Config::jwt_from(&values)?;
            let (token, _) = herald_gateway::auth::mint_dev_token(&jwt, &user, ttl_secs)?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let handle = app.handle();
    actix_web::rt::spawn(async move {
        wait_for_signal().await;
        handle.drain().await;
    });
    app.run_until_stopped().await.context("server error")
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
