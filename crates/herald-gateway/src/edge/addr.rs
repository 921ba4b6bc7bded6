//! Who the client is: its IP address as the load balancer saw it.
//!
//! A node learns it in one of three ways, in this order of trust:
//! - the PROXY protocol v2 header a balancer sends first on the connection (opt-in per
//!   listener, see [`super::proxy`]): the connection's address is the one in the header;
//! - otherwise the TCP peer's address;
//! - and when that address is a configured trusted proxy, the right-most address of
//!   `X-Forwarded-For` that is not itself a trusted proxy (every proxy appends the address it
//!   received from, so everything left of the first untrusted hop may be forged).

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// A list of addresses and networks (`10.0.0.0/8`, `127.0.0.1`, `::1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cidrs(Vec<IpNet>);

impl Cidrs {
    /// Parses a list of addresses or CIDR networks; the error names the bad entry.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Cidrs, String> {
        items
            .iter()
            .map(|s| {
                let s = s.as_ref().trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Cidrs)
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        let ip = canonical(*ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack listener reports) as the
/// IPv4 address they are, so limits and lists see one client as one address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address for a request that arrived from `peer` (the connection's address:
/// the PROXY header's source, or the TCP peer) with these headers.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &Cidrs) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !trusted.contains(&peer) {
        return peer;
    }
    // Every X-Forwarded-For header, in order, as one list of hops (left = first).
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| parse_hop(h.trim()))
        .collect::<Option<Vec<_>>>()
        // A garbled list is not trusted at all: the peer (a trusted proxy) is the client.
        .unwrap_or_default();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = canonical(hop);
        if !trusted.contains(&client) {
            break;
        }
    }
    client
}

/// A client address for logs: the address, or `-` when there is none. Formats without
/// allocating.
pub struct ClientLog(pub Option<IpAddr>);

impl std::fmt::Display for ClientLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:80`).
fn parse_hop(h: &str) -> Option<IpAddr> {
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = h.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = Cidrs::parse(&["10.0.0.0/8", "127.0.0.1"]).expect("cidrs");
        let h = headers(&["203.0.113.7"]);
        // From an untrusted peer the header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
        // From a trusted one, the right-most untrusted hop.
        assert_eq!(client_ip(ip("10.1.2.3"), &h, &trusted), ip("203.0.113.7"));
        // A forged left part is skipped: the client put "1.1.1.1" in, our proxy appended.
        let h = headers(&["1.1.1.1, 203.0.113.7"]);
        assert_eq!(client_ip(ip("10.1.2.3"), &h, &trusted), ip("203.0.113.7"));
        // Chains of trusted proxies are walked through, across several headers.
        let h = headers(&["203.0.113.7, 10.9.9.9", "127.0.0.1"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted), ip("203.0.113.7"));
        // Ports and IPv6.
        let h = headers(&["[2001:db8::1]:4711"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::1"));
        // Garbage: the trusted peer itself.
        let h = headers(&["not-an-address"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
        // No trusted proxies: never believed.
        let h = headers(&["203.0.113.7"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &Cidrs::default()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_address() {
        let list = Cidrs::parse(&["127.0.0.0/8"]).expect("cidrs");
        assert!(list.contains(&ip("::ffff:127.0.0.5")));
        assert!(!list.contains(&ip("::1")));
        assert!(Cidrs::parse(&["nope"]).is_err());
        assert!(Cidrs::parse(&["10.0.0.0/33"]).is_err());
    }
}
