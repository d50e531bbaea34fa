//! Proxy headers, as the uvicorn engine applies them (uvicorn's ProxyHeadersMiddleware), so that
//! switching engines changes nothing for an app behind nginx: when the connection comes from a
//! trusted address (`FORWARDED_ALLOW_IPS`, default `127.0.0.1,::1`; `*` trusts every peer, unix
//! sockets included), `X-Forwarded-Proto` (`http`, `https`, `ws`, `wss`) sets the scheme and
//! `X-Forwarded-For` the client: the right-most address of the chain that is not itself trusted
//! (each proxy appends the one it saw), or the left-most when all are.
//!
//! Invariants: headers from an untrusted peer are never looked at; a forwarded client that is
//! not an IP address (`unknown`, an obfuscated name) leaves the peer's address in place, since
//! `REMOTE_ADDR` and the access log's `%(h)s` are addresses here (uvicorn passes such a string
//! through).

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;

use super::Peer;

/// The addresses whose proxy headers are believed.
#[derive(Clone, Debug, Default)]
pub struct Trusted {
    all: bool,
    hosts: Vec<IpAddr>,
    /// Networks as (address, prefix length).
    networks: Vec<(IpAddr, u8)>,
    /// Entries that are neither addresses nor networks, compared as written.
    literals: Vec<String>,
}

impl Trusted {
    /// A comma-separated list as uvicorn's `--forwarded-allow-ips`: addresses, networks
    /// (`10.0.0.0/8`), `*`; anything else is kept as a literal (as uvicorn does).
    pub fn parse(spec: &str) -> Trusted {
        let mut trusted = Trusted::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                trusted.all = true;
            } else if let Some((addr, bits)) = item.split_once('/') {
                match (addr.parse::<IpAddr>(), bits.parse::<u8>()) {
                    (Ok(ip), Ok(bits)) if bits <= max_prefix(ip) => {
                        trusted.networks.push((ip, bits))
                    }
                    _ => trusted.literals.push(item.to_string()),
                }
            } else {
                match item.parse::<IpAddr>() {
                    Ok(ip) => trusted.hosts.push(ip),
                    Err(_) => trusted.literals.push(item.to_string()),
                }
            }
        }
        trusted
    }

    fn trusts_ip(&self, raw: IpAddr) -> bool {
        let ip = canonical(raw);
        self.all
            || self.hosts.iter().any(|h| canonical(*h) == ip)
            || self
                .networks
                .iter()
                .any(|(net, bits)| in_network(ip, *net, *bits) || in_network(raw, *net, *bits))
    }

    fn trusts_host(&self, host: &str) -> bool {
        match host.parse::<IpAddr>() {
            Ok(ip) => self.trusts_ip(ip),
            Err(_) => self.all || self.literals.iter().any(|l| l == host),
        }
    }

    /// The request's view of its client: `peer` with the forwarded client and scheme applied
    /// when the peer is trusted.
    pub fn apply(&self, peer: Peer, headers: &HeaderMap) -> Peer {
        let trusted = match peer.remote {
            Some(remote) => self.trusts_ip(remote.ip()),
            None => self.all, // a unix socket: only `*` trusts it (as uvicorn)
        };
        if !trusted {
            return peer;
        }
        let mut seen = peer;
        if let Some(proto) = headers.get("x-forwarded-proto") {
            match proto.to_str().map(str::trim) {
                Ok("https") | Ok("wss") => seen.scheme = "https",
                Ok("http") | Ok("ws") => seen.scheme = "http",
                _ => {}
            }
        }
        let chain: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if chain.is_empty() || chain.iter().all(|h| h.is_empty()) {
            return seen;
        }
        let client = if self.all {
            chain[0]
        } else {
            chain
                .iter()
                .rev()
                .find(|h| !self.trusts_host(host_of(h).0))
                .copied()
                .unwrap_or(chain[0])
        };
        let (host, port) = host_of(client);
        if let Ok(ip) = host.parse::<IpAddr>() {
            seen.remote = Some(SocketAddr::new(ip, port));
        }
        seen
    }
}

/// `host`, `host:port` or `[v6]:port` -> (host, port or 0), as uvicorn reads them.
fn host_of(value: &str) -> (&str, u16) {
    if let Some(rest) = value.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            return (host, port);
        }
        return (value, 0);
    }
    if value.matches(':').count() == 1 {
        if let Some((host, port)) = value.rsplit_once(':') {
            if let Ok(port) = port.parse() {
                return (host, port);
            }
        }
    }
    (value, 0)
}

/// An IPv4-mapped IPv6 address as the IPv4 one, so `::ffff:127.0.0.1` matches `127.0.0.1`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}
