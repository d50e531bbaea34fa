//! Proxy headers, the same rules on both engines (the uvicorn engine's are the runtime's
//! python/herdsman/runtime/proxy.py, which replaces uvicorn's ProxyHeadersMiddleware), so that
//! switching engines changes nothing for an app behind a proxy. When the connection comes from a
//! trusted address (`FORWARDED_ALLOW_IPS`, default `127.0.0.1,::1`; networks such as
//! `10.0.0.0/8`; `*` trusts every peer, unix sockets included):
//! - the client is the right-most address of `X-Forwarded-For` that is not itself trusted (each
//!   proxy appends the one it saw), or the left-most when all are (with `*`, the left-most);
//!   without `X-Forwarded-For`, the `for=` of the `Forwarded` element (RFC 7239) chosen by the
//!   same rule;
//! - the scheme is `X-Forwarded-Proto` (`http`, `https`, `ws`, `wss`), else the `proto=` of that
//!   `Forwarded` element;
//! - the server port (`SERVER_PORT`, ASGI `server`) is `X-Forwarded-Port`, a single number.
//!
//! Invariants: headers from an untrusted peer are never looked at; a forwarded client that is
//! not an IP address (`unknown`, an obfuscated `_name`, an element without `for=`) leaves the
//! peer's address in place, since `REMOTE_ADDR` and the access log's `%(h)s` are addresses here
//! (uvicorn passes such a string through); `Forwarded`'s `host=` and `by=` are not applied (the
//! Host header reaches the app as sent, as `X-Forwarded-Host` does).

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

    /// Whether `peer` (None: a unix socket, trusted only by `*`) is in the list.
    pub fn trusts_peer(&self, peer: Option<SocketAddr>) -> bool {
        match peer {
            Some(peer) => self.trusts_ip(peer.ip()),
            None => self.all,
        }
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

    /// The request's view of its client: `peer` with the forwarded client, scheme and server
    /// port applied when the peer is trusted.
    pub fn apply(&self, peer: Peer, headers: &HeaderMap) -> Peer {
        let trusted = match peer.hop.or(peer.remote) {
            Some(remote) => self.trusts_ip(remote.ip()),
            None => self.all, // a unix socket: only `*` trusts it (as uvicorn)
        };
        if !trusted {
            return peer;
        }
        let mut seen = peer;
        let chain: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let has_chain = !chain.iter().all(|h| h.is_empty());
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok());
        let element = if has_chain && proto.is_some() {
            None
        } else {
            self.forwarded_element(headers)
        };
        let proto = proto.or(element.as_ref().and_then(|e| e.proto.as_deref()));
        if let Some(proto) = proto {
            match proto.trim().to_ascii_lowercase().as_str() {
                "https" | "wss" => seen.scheme = "https",
                "http" | "ws" => seen.scheme = "http",
                _ => {}
            }
        }
        if let Some(port) = headers.get("x-forwarded-port") {
            if let Some(port) = port
                .to_str()
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                seen.server_port = Some(port);
            }
        }
        let client = if has_chain {
            Some(self.pick(&chain))
        } else {
            element.as_ref().and_then(|e| e.client.as_deref())
        };
        if let Some(client) = client {
            let (host, port) = host_of(client);
            if let Ok(ip) = host.parse::<IpAddr>() {
                seen.remote = Some(SocketAddr::new(ip, port));
            }
        }
        seen
    }

    /// The right-most hop that is not trusted, else the left-most (with `*`, the left-most).
    fn pick<'a>(&self, chain: &[&'a str]) -> &'a str {
        if self.all {
            return chain[0];
        }
        chain
            .iter()
            .rev()
            .find(|h| !self.trusts_host(host_of(h).0))
            .copied()
            .unwrap_or(chain[0])
    }

    /// The `Forwarded` element whose `for=` the X-Forwarded-For rule picks (an element without
    /// `for=` counts as an untrusted hop).
    fn forwarded_element(&self, headers: &HeaderMap) -> Option<Element> {
        let mut elements = Vec::new();
        for value in headers.get_all("forwarded") {
            let Ok(value) = value.to_str() else { continue };
            parse_forwarded(value, &mut elements);
        }
        if elements.is_empty() {
            return None;
        }
        let index = if self.all {
            0
        } else {
            elements
                .iter()
                .rposition(|e| match &e.client {
                    Some(client) => !self.trusts_host(host_of(client).0),
                    None => true,
                })
                .unwrap_or(0)
        };
        Some(elements.swap_remove(index))
    }
}

/// One hop of a `Forwarded` header: its `for=` and `proto=`, unquoted.
#[derive(Debug, Default)]
struct Element {
    client: Option<String>,
    proto: Option<String>,
}

/// RFC 7239: elements separated by commas, `name=value` pairs by semicolons, names in any case,
/// values tokens or quoted strings (a comma or semicolon inside quotes is part of the value).
/// A pair that is not `name=value` is skipped; an empty element is no hop.
fn parse_forwarded(value: &str, into: &mut Vec<Element>) {
    let mut element = Element::default();
    let mut pairs = 0;
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| !matches!(c, '=' | ';' | ',')) {
            name.push(c);
        }
        let mut text = String::new();
        let has_value = chars.next_if_eq(&'=').is_some();
        if has_value {
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => text.extend(chars.next()),
                        c => text.push(c),
                    }
                }
                while chars.next_if(|c| !matches!(c, ';' | ',')).is_some() {}
            } else {
                while let Some(c) = chars.next_if(|c| !matches!(c, ';' | ',')) {
                    text.push(c);
                }
            }
        }
        if has_value {
            let text = text.trim().to_string();
            match name.trim().to_ascii_lowercase().as_str() {
                "for" => element.client = Some(text),
                "proto" => element.proto = Some(text),
                _ => {}
            }
            pairs += 1;
        }
        match chars.next() {
            Some(';') => {}
            Some(',') | None => {
                if pairs > 0 {
                    into.push(std::mem::take(&mut element));
                }
                pairs = 0;
                if chars.peek().is_none() {
                    return;
                }
            }
            Some(_) => {}
        }
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

/// The same cases as python/tests/test_proxy.py's, so the two engines agree. Run with
/// `cargo test -p herdsman-engine --lib`.
#[cfg(test)]
mod tests {
    use super::*;

    fn seen(
        spec: &str,
        headers: &[(&str, &str)],
        remote: &str,
    ) -> (Option<SocketAddr>, &'static str, Option<u16>) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let peer = Peer {
            remote: Some(remote.parse().unwrap()),
            local: None,
            scheme: "http",
            server_port: None,
            hop: None,
        };
        let p = Trusted::parse(spec).apply(peer, &map);
        (p.remote, p.scheme, p.server_port)
    }

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    /// (`for=`, `proto=`) of each element.
    type Hops<'a> = Vec<(Option<&'a str>, Option<&'a str>)>;

    #[test]
    fn forwarded_elements() {
        let cases: [(&str, Hops); 7] = [
            (
                "for=192.0.2.60;proto=http;by=203.0.113.43",
                vec![(Some("192.0.2.60"), Some("http"))],
            ),
            (
                "for=\"[2001:db8:cafe::17]:4711\"",
                vec![(Some("[2001:db8:cafe::17]:4711"), None)],
            ),
            (
                "For=\"_gazonk\", for=198.51.100.17",
                vec![(Some("_gazonk"), None), (Some("198.51.100.17"), None)],
            ),
            ("proto=https", vec![(None, Some("https"))]),
            (
                "for=\"a;b,c\";proto=https",
                vec![(Some("a;b,c"), Some("https"))],
            ),
            ("for=\"esc\\\"aped\"", vec![(Some("esc\"aped"), None)]),
            (" , ;, for=1.2.3.4,", vec![(Some("1.2.3.4"), None)]),
        ];
        for (value, want) in cases {
            let mut got = Vec::new();
            parse_forwarded(value, &mut got);
            let got: Vec<_> = got
                .iter()
                .map(|e| (e.client.as_deref(), e.proto.as_deref()))
                .collect();
            assert_eq!(got, want, "{value}");
        }
    }

    #[test]
    fn the_rules() {
        let fwd = (
            "forwarded",
            "for=\"[2001:db8::17]:4711\";proto=https, for=127.0.0.1;proto=http",
        );
        assert_eq!(
            seen(
                "127.0.0.0/8",
                &[fwd, ("x-forwarded-port", "8443")],
                "127.0.0.1:5000"
            ),
            (addr("[2001:db8::17]:4711"), "https", Some(8443))
        );
        let hops = [("forwarded", "for=10.0.0.1, for=10.0.0.2")];
        assert_eq!(seen("*", &hops, "127.0.0.1:5000").0, addr("10.0.0.1:0"));
        assert_eq!(
            seen("127.0.0.1,10.0.0.0/8", &hops, "127.0.0.1:5000").0,
            addr("10.0.0.1:0")
        );
        assert_eq!(
            seen(
                "127.0.0.1",
                &[("forwarded", "for=_hidden;proto=https")],
                "127.0.0.1:5000"
            ),
            (addr("127.0.0.1:5000"), "https", None)
        );
        let both = [
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=198.51.100.1;proto=https"),
        ];
        assert_eq!(
            seen("127.0.0.1", &both, "127.0.0.1:5000"),
            (addr("203.0.113.9:0"), "https", None)
        );
        assert_eq!(
            seen(
                "127.0.0.1",
                &[("x-forwarded-port", "443, 80")],
                "127.0.0.1:5000"
            )
            .2,
            None
        );
        assert_eq!(
            seen("10.0.0.0/8", &both, "127.0.0.1:5000"),
            (addr("127.0.0.1:5000"), "http", None)
        );
        assert_eq!(
            seen("127.0.0.1", &both, "[::ffff:127.0.0.1]:1").0,
            addr("203.0.113.9:0")
        );
    }
}
