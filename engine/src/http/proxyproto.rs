//! The PROXY protocol (HAProxy's v1 text and v2 binary headers), gunicorn's `--proxy-protocol`:
//! a connection from a `--proxy-allow-from` peer must begin with a header, read here before
//! hyper sees the stream; its source address becomes the connection's client. The uvicorn
//! engine does the same in python/herdsman/runtime/proxyproto.py.
//!
//! Invariants: at most one header is read, within `HEADER_TIMEOUT`, and never more than the
//! header's own bound (107 bytes for v1, 16 + its length for v2) plus what one read brought
//! beyond it, which is handed to hyper first (`Prefixed`); a malformed header, none in time, or
//! end of file closes the connection with a debug line (so does a drain, after its idle window,
//! or a quick stop, at once); v2 `LOCAL`, v1 `UNKNOWN` and the
//! unspecified and unix families keep the socket's peer as the client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::conn::Counted;
use super::prefixed::Prefixed;
use super::Peer;
use crate::shared::Phase;

/// How long a connection may take to send its PROXY header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest v1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Reads the header off `stream`, then serves the connection with its client applied.
pub async fn serve(counted: Counted, mut stream: tokio::net::TcpStream, mut peer: Peer) {
    let shared = counted.shared().clone();
    let mut phase = shared.phase.subscribe();
    // A drain gives a header still coming the drain's idle window (as an idle connection gets);
    // a quick stop none.
    let stop = async {
        let _ = phase.wait_for(|p| *p != Phase::Serving).await;
        if *phase.borrow() != Phase::Aborted {
            tokio::select! {
                _ = tokio::time::sleep(shared.settings.drain_idle) => {}
                _ = phase.wait_for(|p| *p == Phase::Aborted) => {}
            }
        }
    };
    let read = async {
        tokio::select! {
            read = tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)) => Some(read),
            _ = stop => None,
        }
    };
    let from = peer.remote.map_or_else(String::new, |r| r.to_string());
    match read.await {
        None => {}
        Some(Err(_)) => shared.log(
            "debug",
            format!("PROXY protocol: no header from {from} within {HEADER_TIMEOUT:?}: connection closed"),
        ),
        Some(Ok(Err(why))) => shared.log(
            "debug",
            format!("PROXY protocol: {why} (from {from}): connection closed"),
        ),
        Some(Ok(Ok((source, rest)))) => {
            if let Some(source) = source {
                peer.hop = peer.remote;
                peer.remote = Some(source);
            }
            let io = Prefixed::new(rest, stream);
            super::listen::serve_stream(counted, io, peer).await;
        }
    }
}

/// The source address the header carries (None: keep the socket's peer), and the bytes read
/// past it.
async fn read_header<IO: AsyncRead + Unpin>(
    io: &mut IO,
) -> Result<(Option<SocketAddr>, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(256);
    loop {
        if let Some(parsed) = parse(&buf)? {
            let (source, used) = parsed;
            buf.drain(..used);
            return Ok((source, buf));
        }
        let have = buf.len();
        buf.resize(have + needed(&buf).max(1), 0);
        let n = io
            .read(&mut buf[have..])
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        buf.truncate(have + n);
        if n == 0 {
            return Err("the connection closed before its header ended".into());
        }
    }
}

/// How many more bytes to ask for: never past the end of the header.
fn needed(buf: &[u8]) -> usize {
    if buf.len() >= 16 && buf.starts_with(V2_SIGNATURE) {
        16 + usize::from(u16::from_be_bytes([buf[14], buf[15]])) - buf.len()
    } else if buf.starts_with(b"PROXY") {
        V1_MAX - buf.len()
    } else {
        16 - buf.len().min(15)
    }
}

/// `Ok(None)`: not complete yet; `Ok(Some((source, length)))`: a whole header.
fn parse(buf: &[u8]) -> Result<Option<(Option<SocketAddr>, usize)>, String> {
    let v1 = b"PROXY ";
    let n = buf.len();
    if n >= 12 && buf[..12] == V2_SIGNATURE[..] {
        return parse_v2(buf);
    }
    if buf[..n.min(6)] == v1[..n.min(6)] && n > 0 {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return parse_v1(&buf[..end]).map(|source| Some((source, end + 2)));
        }
        if n >= V1_MAX {
            return Err("a v1 header longer than 107 bytes".into());
        }
        return Ok(None);
    }
    if buf[..n.min(12)] == V2_SIGNATURE[..n.min(12)] {
        return Ok(None);
    }
    Err("not a PROXY protocol header".into())
}

fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, String> {
    let line = std::str::from_utf8(line).map_err(|_| "a v1 header that is not ASCII")?;
    let bad = || format!("a malformed v1 header {line:?}");
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.get(1).copied() {
        Some("UNKNOWN") => return Ok(None),
        Some("TCP4") | Some("TCP6") if fields.len() == 6 => {}
        _ => return Err(bad()),
    }
    let v6 = fields[1] == "TCP6";
    let source: IpAddr = fields[2].parse().map_err(|_| bad())?;
    let dest: IpAddr = fields[3].parse().map_err(|_| bad())?;
    if source.is_ipv6() != v6 || dest.is_ipv6() != v6 {
        return Err(bad());
    }
    let port = |p: &str| -> Result<u16, String> {
        if p.is_empty() || (p.len() > 1 && p.starts_with('0')) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let source_port = port(fields[4])?;
    port(fields[5])?;
    Ok(Some(SocketAddr::new(source, source_port)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Option<SocketAddr>, usize)>, String> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if buf.len() < 16 + length {
        return Ok(None);
    }
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    if version != 2 {
        return Err(format!("a v2 header of version {version}"));
    }
    let body = &buf[16..16 + length];
    let used = 16 + length;
    match command {
        0 => return Ok(Some((None, used))), // LOCAL: the proxy's own connection (health check)
        1 => {}
        other => return Err(format!("a v2 header with command {other}")),
    }
    let source = match buf[13] >> 4 {
        1 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        2 if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        1 | 2 => return Err("a v2 header too short for its addresses".into()),
        0 | 3 => None, // unspecified, unix: keep the socket's peer
        other => return Err(format!("a v2 header with address family {other}")),
    };
    Ok(Some((source, used)))
}

/// The same cases as python/tests/test_proxy.py's, so the two parsers agree. Run with
/// `cargo test -p herdsman-engine --lib`.
#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x20 | command, family]);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn source(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn headers() {
        let mut inet = vec![9, 8, 7, 6, 1, 1, 1, 1];
        inet.extend_from_slice(&4242u16.to_be_bytes());
        inet.extend_from_slice(&80u16.to_be_bytes());
        let mut inet6 = vec![0; 15];
        inet6.push(1);
        inet6.extend_from_slice(&[0; 16]);
        inet6.extend_from_slice(&7u16.to_be_bytes());
        inet6.extend_from_slice(&80u16.to_be_bytes());
        inet6.extend_from_slice(b"tlv");
        let cases: Vec<(Vec<u8>, Option<SocketAddr>, usize)> = vec![
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET".to_vec(),
                source("1.2.3.4:1"),
                32,
            ),
            (
                b"PROXY TCP6 ::1 ::2 65535 2\r\n".to_vec(),
                source("[::1]:65535"),
                28,
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), None, 15),
            (b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n".to_vec(), None, 31),
            (v2(1, 0x11, &inet), source("9.8.7.6:4242"), 28),
            (v2(1, 0x21, &inet6), source("[::1]:7"), 55),
            (v2(0, 0x00, b""), None, 16),
            (v2(1, 0x31, &[0; 216]), None, 232),
        ];
        for (data, want, used) in cases {
            assert_eq!(parse(&data), Ok(Some((want, used))), "{data:?}");
        }
    }

    #[test]
    fn bad_and_incomplete_headers() {
        let long = [&b"PROXY TCP4 "[..], &[b'1'; 120]].concat();
        let mut bad_version = V2_SIGNATURE.to_vec();
        bad_version.extend_from_slice(&[0x11, 0x11, 0, 0]);
        for data in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            &long,
            &v2(2, 0x11, b""),
            &v2(1, 0x11, b"short"),
            &bad_version,
        ] {
            assert!(parse(data).is_err(), "{data:?}");
        }
        let partial = v2(1, 0x11, &[0; 12]);
        for data in [
            &b""[..],
            b"PRO",
            b"PROXY TCP4 1.2",
            &V2_SIGNATURE[..5],
            &partial[..20],
        ] {
            assert_eq!(parse(data), Ok(None), "{data:?}");
        }
    }
}
