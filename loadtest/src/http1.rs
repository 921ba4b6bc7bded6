//! A lean HTTP/1.1 client for the publisher: keep-alive connections to one `http://host:port`,
//! one request at a time per connection, the request written in one `write` and the response
//! head parsed with `httparse`.
//!
//! Why not reqwest: the publisher shares the two cores with the systems it measures, and at
//! the max rate reqwest (URL and IDNA parsing, header maps, hyper-util's pool and dispatcher
//! tasks per call) cost about as much CPU per call as the Herald gateway serving it
//! (docs/performance.md, "Settings the benchmarks change"). What this client does not do: TLS,
//! redirects, proxies, HTTP/2, `Expect: 100-continue` — none of which the harness needs on
//! loopback.
//!
//! Idle policy: a connection idle for longer than [`IDLE`] is closed instead of reused, well
//! before either server's keep-alive timeout (Herald 75 s, the baselines 5–65 s), so no
//! request races a server-side close. A response with `Connection: close`, or any error,
//! drops the connection.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a kept-alive connection may sit unused before it is closed rather than reused.
const IDLE: Duration = Duration::from_secs(4);
/// Headers in a response, at most.
const MAX_HEADERS: usize = 32;
/// A response head or body larger than this is refused (publish answers are ~200 bytes).
const MAX_RESPONSE: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("timeout")]
    Timeout,
    #[error("request: {0}")]
    Io(#[from] std::io::Error),
    #[error("request: connection closed before message completed")]
    Closed,
    #[error("bad response: {0}")]
    Protocol(String),
}

impl Error {
    /// The error key the publisher counts: its kind and cause, as `http <kind>: <cause>`.
    pub fn key(&self) -> String {
        format!("http {self}")
    }
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    used: Instant,
}

/// Keep-alive connections to one origin. `post` takes an idle connection or opens one, so
/// the pool grows to the number of calls in flight.
pub struct Pool {
    addr: SocketAddr,
    host: String,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// `origin`: `http://host:port` (a name is resolved once, here).
    pub fn new(origin: &str) -> anyhow::Result<Pool> {
        let host = origin
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("{origin:?}: only http:// URLs are supported"))?;
        if host.is_empty() || host.contains('/') {
            anyhow::bail!("{origin:?}: expected http://<host>:<port>");
        }
        let addr: SocketAddr = host
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| anyhow::anyhow!("{origin:?}: expected http://<host>:<port>"))?;
        Ok(Pool {
            addr,
            host: host.to_string(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// `POST path` with a JSON body and the given extra headers; the whole call (connect
    /// included) is bounded by `timeout`.
    pub async fn post_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Response, Error> {
        let mut req = Vec::with_capacity(160 + body.len());
        req.extend_from_slice(b"POST ");
        req.extend_from_slice(path.as_bytes());
        req.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        req.extend_from_slice(self.host.as_bytes());
        req.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        req.extend_from_slice(body.len().to_string().as_bytes());
        for (k, v) in headers {
            req.extend_from_slice(b"\r\n");
            req.extend_from_slice(k.as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(v.as_bytes());
        }
        req.extend_from_slice(b"\r\n\r\n");
        req.extend_from_slice(body);
        tokio::time::timeout(timeout, self.send(&req))
            .await
            .map_err(|_| Error::Timeout)?
    }

    async fn send(&self, req: &[u8]) -> Result<Response, Error> {
        let mut conn = match self.take() {
            Some(c) => c,
            None => {
                let stream = TcpStream::connect(self.addr)
                    .await
                    .map_err(Error::Connect)?;
                let _ = stream.set_nodelay(true);
                Conn {
                    stream,
                    buf: Vec::with_capacity(1024),
                    used: Instant::now(),
                }
            }
        };
        conn.stream.write_all(req).await?;
        let (resp, keep) = read_response(&mut conn).await?;
        if keep {
            conn.used = Instant::now();
            self.idle().push(conn);
        }
        Ok(resp)
    }

    /// The idle list (a panic elsewhere cannot leave it inconsistent, so poisoning is
    /// ignored).
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&self) -> Option<Conn> {
        let mut idle = self.idle();
        while let Some(c) = idle.pop() {
            if c.used.elapsed() < IDLE {
                return Some(c);
            }
        }
        None
    }
}

/// Reads one response from `conn` (its buffer may hold nothing else: one request at a time).
/// Returns it and whether the connection may be reused.
async fn read_response(conn: &mut Conn) -> Result<(Response, bool), Error> {
    conn.buf.clear();
    let (status, head_len, framing, keep) = loop {
        read_more(conn).await?;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(&conn.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = r.code.unwrap_or(0);
                let mut framing = Framing::UntilClose;
                let mut keep = r.version == Some(1);
                for h in r.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let len = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .ok_or_else(|| Error::Protocol("bad content-length".into()))?;
                        framing = Framing::Length(len);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value.eq_ignore_ascii_case(b"chunked")
                    {
                        framing = Framing::Chunked;
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        keep = !h.value.eq_ignore_ascii_case(b"close");
                    }
                }
                break (status, n, framing, keep);
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Err(Error::Protocol(e.to_string())),
        }
    };
    let mut keep = keep;
    let body = match framing {
        Framing::Length(len) => {
            if len > MAX_RESPONSE {
                return Err(Error::Protocol(format!("body of {len} bytes")));
            }
            while conn.buf.len() < head_len + len {
                read_more(conn).await?;
            }
            conn.buf[head_len..head_len + len].to_vec()
        }
        Framing::Chunked => read_chunked(conn, head_len).await?,
        Framing::UntilClose => {
            loop {
                match read_more(conn).await {
                    Ok(()) => {}
                    Err(Error::Closed) => break,
                    Err(e) => return Err(e),
                }
            }
            keep = false;
            conn.buf[head_len..].to_vec()
        }
    };
    Ok((Response { status, body }, keep))
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Appends what the socket has to the buffer; `Closed` at EOF.
async fn read_more(conn: &mut Conn) -> Result<(), Error> {
    if conn.buf.len() >= MAX_RESPONSE {
        return Err(Error::Protocol("response too large".into()));
    }
    if conn.buf.capacity() - conn.buf.len() < 512 {
        conn.buf.reserve(conn.buf.capacity().max(1024));
    }
    let n = conn.stream.read_buf(&mut conn.buf).await?;
    if n == 0 {
        return Err(Error::Closed);
    }
    Ok(())
}

/// A chunked body starting at `at` in the buffer (trailers are skipped).
async fn read_chunked(conn: &mut Conn, mut at: usize) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    loop {
        let end = line_end(conn, at).await?;
        let line = std::str::from_utf8(&conn.buf[at..end])
            .map_err(|_| Error::Protocol("bad chunk size".into()))?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| Error::Protocol(format!("bad chunk size {size_hex:?}")))?;
        at = end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let end = line_end(conn, at).await?;
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_RESPONSE {
            return Err(Error::Protocol("response too large".into()));
        }
        while conn.buf.len() < at + size + 2 {
            read_more(conn).await?;
        }
        body.extend_from_slice(&conn.buf[at..at + size]);
        at += size + 2;
    }
}

/// Where the line starting at `at` ends (its CRLF), reading more as needed.
async fn line_end(conn: &mut Conn, at: usize) -> Result<usize, Error> {
    loop {
        if let Some(i) = conn.buf[at..].windows(2).position(|w| w == b"\r\n") {
            return Ok(at + i);
        }
        read_more(conn).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-connection server that answers each request with the next canned response.
    async fn serve(responses: Vec<&'static [u8]>) -> (String, tokio::task::JoinHandle<usize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            let mut accepted = 0;
            let mut responses = responses.into_iter();
            'outer: while let Ok((mut s, _)) = l.accept().await {
                accepted += 1;
                let mut buf = Vec::new();
                loop {
                    // Read one request: head, then content-length bytes.
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        continue 'outer;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = std::str::from_utf8(&buf[..end]).unwrap().to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    assert!(head.starts_with("POST /v1/notifications HTTP/1.1\r\n"));
                    assert!(head.contains("\r\nauthorization: Bearer k"));
                    buf.drain(..end + 4 + len);
                    let Some(r) = responses.next() else {
                        break 'outer;
                    };
                    s.write_all(r).await.unwrap();
                    if r.windows(17)
                        .any(|w| w.eq_ignore_ascii_case(b"connection: close"))
                    {
                        if responses.len() == 0 {
                            break 'outer;
                        }
                        continue 'outer;
                    }
                }
            }
            accepted
        });
        (base, h)
    }

    #[tokio::test]
    async fn reuses_a_connection_and_reads_length_and_chunked_bodies() {
        let (base, server) = serve(vec![
            b"HTTP/1.1 201 Created\r\ncontent-length: 7\r\n\r\n{\"a\":1}",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"b\r\n3\r\n\":2\r\n1\r\n}\r\n0\r\n\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        ])
        .await;
        let pool = Pool::new(&base).unwrap();
        let t = Duration::from_secs(5);
        let auth = [("authorization", "Bearer k")];
        let r = pool
            .post_json("/v1/notifications", &auth, b"{}", t)
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{\"a\":1}"[..]));
        let r = pool
            .post_json("/v1/notifications", &auth, b"{\"x\":1}", t)
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{\"b\":2}"[..]));
        let r = pool
            .post_json("/v1/notifications", &auth, b"{}", t)
            .await
            .unwrap();
        assert_eq!(r.status, 503);
        assert!(pool.idle().is_empty(), "connection: close is not reused");
        drop(pool);
        assert_eq!(
            server.await.unwrap(),
            1,
            "all three calls went over one connection"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_and_a_garbled_answer_are_errors() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let pool = Pool::new(&base).unwrap();
        let t = Duration::from_secs(5);
        let e = pool
            .post_json("/v1/notifications", &[], b"{}", t)
            .await
            .err()
            .unwrap();
        assert!(e.key().starts_with("http connect: "), "{}", e.key());

        let (base, _server) = serve(vec![b"SMTP ready\r\n\r\n"]).await;
        let pool = Pool::new(&base).unwrap();
        let auth = [("authorization", "Bearer k")];
        let e = pool
            .post_json("/v1/notifications", &auth, b"{}", t)
            .await
            .err()
            .unwrap();
        assert!(e.key().starts_with("http bad response: "), "{}", e.key());

        assert!(Pool::new("https://127.0.0.1:1").is_err());
        assert!(Pool::new("http://127.0.0.1").is_err(), "a port is required");
        assert!(
            Pool::new("http://127.0.0.1:1/v1").is_err(),
            "an origin, no path"
        );
    }
}
