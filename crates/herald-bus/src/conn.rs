//! Opening the subscriber connection.
//!
//! The subscriber connection is named with `CLIENT SETNAME herald-sub:<node_id>` so operators
//! (and the tests) can find it in `CLIENT LIST TYPE pubsub`. redis-rs has no client-name
//! setting, and a RESP2 connection in subscribed mode refuses `CLIENT SETNAME`, so for TCP and
//! Unix-socket addresses we open the socket ourselves, send `[AUTH] + CLIENT SETNAME` raw, and
//! only then hand the socket to [`redis::aio::PubSub::new`] (which runs the usual
//! AUTH/HELLO/SELECT setup). Other address kinds fall back to an unnamed
//! [`redis::Client::get_async_pubsub`].

use std::time::Duration;

use redis::aio::PubSub;
use redis::{Client, ConnectionAddr, RedisConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Connection name of a node's subscriber connection.
pub(crate) fn subscriber_name(node_id: &str) -> String {
    let clean: String = node_id
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("herald-sub:{clean}")
}

/// Opens a pub/sub connection named `name` (best effort), bounded by `timeout`.
pub(crate) async fn open_pubsub(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<PubSub, String> {
    match tokio::time::timeout(timeout, open_inner(client, name)).await {
        Ok(res) => res,
        Err(_) => Err(format!("connect timed out after {timeout:?}")),
    }
}

async fn open_inner(client: &Client, name: &str) -> Result<PubSub, String> {
    let info = client.get_connection_info();
    let settings = info.redis_settings();
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            let mut stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| format!("connect {host}:{port}: {e}"))?;
            let _ = stream.set_nodelay(true);
            name_connection(&mut stream, settings, name).await?;
            PubSub::new(settings, stream)
                .await
                .map_err(|e| format!("pubsub setup: {e}"))
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => {
            let mut stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("connect {}: {e}", path.display()))?;
            name_connection(&mut stream, settings, name).await?;
            PubSub::new(settings, stream)
                .await
                .map_err(|e| format!("pubsub setup: {e}"))
        }
        _ => client
            .get_async_pubsub()
            .await
            .map_err(|e| format!("pubsub connect: {e}")),
    }
}

/// Authenticates (if credentials are configured) and sends `CLIENT SETNAME` on a fresh RESP2
/// socket. A refused SETNAME is not fatal; a refused AUTH is.
async fn name_connection<S>(
    stream: &mut S,
    settings: &RedisConnectionInfo,
    name: &str,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(password) = settings.password() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = settings.username() {
            auth.arg(user);
        }
        auth.arg(password);
        let reply = roundtrip(stream, &auth.get_packed_command()).await?;
        if reply.starts_with('-') {
            return Err(format!("AUTH refused: {reply}"));
        }
    }
    let setname = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .get_packed_command();
    let reply = roundtrip(stream, &setname).await?;
    if reply.starts_with('-') {
        tracing::warn!(%reply, "CLIENT SETNAME refused on the bus subscriber connection");
    }
    Ok(())
}

/// Writes one command and reads its one-line reply (`+OK` / `-ERR ...`). Reads byte by byte so
/// nothing after the reply is consumed before the socket is handed to redis-rs.
async fn roundtrip<S>(stream: &mut S, packed: &[u8]) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(packed)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut line = Vec::with_capacity(64);
    loop {
        let b = stream.read_u8().await.map_err(|e| format!("read: {e}"))?;
        if b == b'\n' {
            break;
        }
        line.push(b);
        if line.len() > 4096 {
            return Err("reply line too long".to_owned());
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}
