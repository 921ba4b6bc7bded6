//! PROXY protocol version 2 (the binary form haproxy sends with `send-proxy-v2`): the real
//! client address of a connection that a load balancer forwards, before any HTTP byte.
//!
//! Opt-in per listener (`HERALD_PROXY_PROTOCOL`): when on, every connection must start with
//! a valid header within the request-head timeout or it is closed, so a client that reaches
//! the node directly cannot claim an address. A `LOCAL` header (the balancer's own health
//! checks, `check-send-proxy`) keeps the TCP peer's address.
//!
//! The header is read with exact-length reads (16 bytes, then the length it declares, at most
//! [`MAX_BODY`]), so nothing after it is consumed and no buffer grows past the bound.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest address block plus TLVs accepted (haproxy sends well under this).
pub const MAX_BODY: usize = 1024;

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    /// The balancer's own connection (health check): use the TCP peer.
    Local,
    /// A forwarded client, from this address.
    Client(SocketAddr),
    /// A forwarded connection of a family without an IP address (UNIX, unspecified).
    Unknown,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("not a PROXY protocol v2 header")]
    Signature,
    #[error("unsupported PROXY protocol version or command")]
    Version,
    #[error("PROXY header declares {0} bytes, more than the limit")]
    TooLong(usize),
    #[error("PROXY header address block is too short for its family")]
    Short,
}

/// Checks the fixed 16-byte part; returns the command byte's meaning and the body length.
pub fn parse_fixed(h: &[u8; 16]) -> Result<(bool, u8, usize), ProxyError> {
    if h[..12] != SIGNATURE {
        return Err(ProxyError::Signature);
    }
    let (version, command) = (h[12] >> 4, h[12] & 0x0f);
    if version != 2 || command > 1 {
        return Err(ProxyError::Version);
    }
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    if len > MAX_BODY {
        return Err(ProxyError::TooLong(len));
    }
    Ok((command == 1, h[13], len))
}

/// The source address from the body, given the family/transport byte.
pub fn parse_body(proxy: bool, family: u8, body: &[u8]) -> Result<Proxied, ProxyError> {
    if !proxy {
        return Ok(Proxied::Local);
    }
    match family >> 4 {
        1 => {
            let b: &[u8; 12] = body
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyError::Short)?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            let port = u16::from_be_bytes([b[8], b[9]]);
            Ok(Proxied::Client(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 => {
            let b: &[u8; 36] = body
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyError::Short)?;
            let mut src = [0u8; 16];
            src.copy_from_slice(&b[..16]);
            let port = u16::from_be_bytes([b[32], b[33]]);
            Ok(Proxied::Client(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(src)),
                port,
            )))
        }
        _ => Ok(Proxied::Unknown),
    }
}

/// Reads the header from the start of `io` within `timeout`.
pub async fn read_header(io: &mut TcpStream, timeout: Duration) -> Result<Proxied, String> {
    let read = async {
        let mut fixed = [0u8; 16];
        io.read_exact(&mut fixed).await.map_err(|e| e.to_string())?;
        let (proxy, family, len) = parse_fixed(&fixed).map_err(|e| e.to_string())?;
        let mut body = vec![0u8; len];
        io.read_exact(&mut body).await.map_err(|e| e.to_string())?;
        parse_body(proxy, family, &body).map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| "no PROXY header within the request-head timeout".to_string())?
}

/// Encodes a v2 header (for tests and the load-test harness's direct connections).
pub fn encode(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.push(0x21);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(src).octets());
            h.extend_from_slice(&v6(dst).octets());
            h.extend_from_slice(&src.port().to_be_bytes());
            h.extend_from_slice(&dst.port().to_be_bytes());
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Proxied, ProxyError> {
        let fixed: [u8; 16] = bytes[..16].try_into().expect("16 bytes");
        let (proxy, family, len) = parse_fixed(&fixed)?;
        parse_body(
            proxy,
            family,
            bytes.get(16..16 + len).ok_or(ProxyError::Short)?,
        )
    }

    #[test]
    fn round_trips_v4_and_v6_and_refuses_bad_headers() {
        let src: SocketAddr = "203.0.113.7:4711".parse().expect("addr");
        let dst: SocketAddr = "10.0.0.1:8080".parse().expect("addr");
        assert_eq!(parse(&encode(src, dst)), Ok(Proxied::Client(src)));
        let src6: SocketAddr = "[2001:db8::7]:4711".parse().expect("addr");
        let dst6: SocketAddr = "[2001:db8::1]:8080".parse().expect("addr");
        assert_eq!(parse(&encode(src6, dst6)), Ok(Proxied::Client(src6)));

        let mut local = encode(src, dst);
        local[12] = 0x20;
        assert_eq!(parse(&local), Ok(Proxied::Local));

        let mut v1 = encode(src, dst);
        v1[12] = 0x11;
        assert_eq!(parse(&v1), Err(ProxyError::Version));
        let mut sig = encode(src, dst);
        sig[0] = b'G';
        assert_eq!(parse(&sig), Err(ProxyError::Signature));
        let mut long = encode(src, dst);
        long[14..16].copy_from_slice(&4000u16.to_be_bytes());
        assert_eq!(parse(&long), Err(ProxyError::TooLong(4000)));
        let mut short = encode(src, dst);
        short[14..16].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(parse(&short), Err(ProxyError::Short));
        // HTTP where a header was required.
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(ProxyError::Signature));
    }
}
