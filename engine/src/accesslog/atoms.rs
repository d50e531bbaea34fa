//! gunicorn's atoms: which fact of an `Entry` each one names, and its value, computed exactly as
//! accessformat.py's EXPRESSIONS and ENVIRON compute it on the ASGI scope. Text values are
//! written as `str()` gives them (latin-1 decoded where Python decodes latin-1); numbers are
//! kept as numbers, because the conversion (`%s`, `%5d`, `%f`) decides their text. Request
//! headers read as Python's `dict(scope["headers"])` does: the last value of a repeated name.

use std::io::Write as _; // into a Vec<u8>, which never fails

use http::header::{AUTHORIZATION, REFERER, USER_AGENT};
use http::{HeaderMap, HeaderName};

use super::entry::{Entry, Local};
use super::pytext::push_latin1;

#[derive(Clone, Debug)]
pub enum Atom {
    /// `h`, `{remote_addr}e`
    RemoteHost,
    /// `l`, an unknown `{variable}e`
    Dash,
    /// `u`: the user name of HTTP Basic authorization
    User,
    /// `t`
    Time,
    /// `r`
    RequestLine,
    /// `m`, `{request_method}e`
    Method,
    /// `U`, `{path_info}e`: the path percent-decoded
    Path,
    /// `q`, `{query_string}e`
    Query,
    /// `H`, `{server_protocol}e`
    Protocol,
    /// `{script_name}e`: the root path, always empty (herdsman has no root-path setting)
    Empty,
    /// `{server_name}e`, `{server_port}e`
    ServerName,
    ServerPort,
    /// `{wsgi.url_scheme}e`
    Scheme,
    /// `p`: `<pid>`, fixed when the format is compiled (in the worker, as Python does)
    Pid(String),
    /// `L`: the duration as `%.6f` seconds
    DecimalSeconds,
    /// `f`, `a`, `{name}i`, `{http_name}e`; `None` for a name no header can have
    RequestHeader(Option<HeaderName>),
    /// `{name}o`
    ResponseHeader(Option<HeaderName>),
    /// `s`, `B` and `b`, `T`, `M`, `D`: the atoms whose value is a number
    Status,
    Length,
    Seconds,
    Millis,
    Micros,
}

/// The atom a one-letter name stands for, `None` if it is not one of gunicorn's letters.
pub fn letter(name: &str, pid: &str) -> Option<Atom> {
    Some(match name {
        "h" => Atom::RemoteHost,
        "l" => Atom::Dash,
        "u" => Atom::User,
        "t" => Atom::Time,
        "r" => Atom::RequestLine,
        "m" => Atom::Method,
        "U" => Atom::Path,
        "q" => Atom::Query,
        "H" => Atom::Protocol,
        "s" => Atom::Status,
        "B" | "b" => Atom::Length,
        "f" => Atom::RequestHeader(Some(REFERER)),
        "a" => Atom::RequestHeader(Some(USER_AGENT)),
        "T" => Atom::Seconds,
        "M" => Atom::Millis,
        "D" => Atom::Micros,
        "L" => Atom::DecimalSeconds,
        "p" => Atom::Pid(pid.to_string()),
        _ => return None,
    })
}

/// `{variable}e` for a lowercased variable name (accessformat.py's ENVIRON, then `http_*`).
pub fn environ(key: &str) -> Result<Atom, String> {
    Ok(match key {
        "remote_addr" => Atom::RemoteHost,
        "request_method" => Atom::Method,
        "path_info" => Atom::Path,
        "query_string" => Atom::Query,
        "server_protocol" => Atom::Protocol,
        "script_name" => Atom::Empty,
        "server_name" => Atom::ServerName,
        "server_port" => Atom::ServerPort,
        "wsgi.url_scheme" => Atom::Scheme,
        _ => match key.strip_prefix("http_") {
            Some(rest) => Atom::RequestHeader(header_name(&rest.replace('_', "-"))?),
            None => Atom::Dash,
        },
    })
}

/// The header a lowercased key names. Python encodes the key as latin-1 (an error past U+00FF)
/// and looks it up among the received names, which are lowercase tokens: a key that is no such
/// token matches nothing.
pub fn header_name(key: &str) -> Result<Option<HeaderName>, String> {
    if key.chars().any(|c| c as u32 > 0xFF) {
        return Err(format!(
            "the header name {key:?} has characters outside latin-1: no header can have it"
        ));
    }
    Ok(HeaderName::from_lowercase(key.as_bytes()).ok())
}

impl Atom {
    /// The atoms whose value is a number; the others are text.
    pub fn number(&self, entry: &Entry) -> Option<u64> {
        let seconds = || entry.duration.as_secs_f64();
        Some(match self {
            Atom::Status => u64::from(entry.status),
            Atom::Length => entry.body_bytes,
            // int(duration * 1000) and the like, on the float Python would have
            Atom::Seconds => seconds() as u64,
            Atom::Millis => (seconds() * 1000.0) as u64,
            Atom::Micros => (seconds() * 1_000_000.0) as u64,
            _ => return None,
        })
    }

    pub fn is_number(&self) -> bool {
        matches!(
            self,
            Atom::Status | Atom::Length | Atom::Seconds | Atom::Millis | Atom::Micros
        )
    }

    /// Writes a text atom's value; `time` is the formatted `t` for this line.
    pub fn write_text(&self, entry: &Entry, time: &str, out: &mut Vec<u8>) {
        match self {
            Atom::RemoteHost => remote_host(entry, out),
            Atom::Dash => out.push(b'-'),
            Atom::User => user(entry.request_headers, out),
            Atom::Time => out.extend_from_slice(time.as_bytes()),
            Atom::RequestLine => request_line(entry, out),
            Atom::Method => out.extend_from_slice(entry.method.as_bytes()),
            Atom::Path => decoded_path(entry.path, out),
            Atom::Query => push_latin1(out, entry.query.as_bytes()),
            Atom::Protocol => out.extend_from_slice(entry.version.as_bytes()),
            Atom::Empty => {}
            Atom::ServerName => match entry.local {
                Local::Tcp(addr) => _ = write!(out, "{}", addr.ip()),
                Local::Unix(path) => out.extend_from_slice(path.as_bytes()),
                Local::Unknown => out.push(b'-'),
            },
            Atom::ServerPort => match entry.local {
                Local::Tcp(addr) => _ = write!(out, "{}", addr.port()),
                Local::Unix(_) | Local::Unknown => out.push(b'-'),
            },
            Atom::Scheme => out.extend_from_slice(entry.scheme.as_bytes()),
            Atom::Pid(pid) => out.extend_from_slice(pid.as_bytes()),
            Atom::DecimalSeconds => _ = write!(out, "{:.6}", entry.duration.as_secs_f64()),
            Atom::RequestHeader(name) => header(Some(entry.request_headers), name, out),
            Atom::ResponseHeader(name) => header(entry.response_headers, name, out),
            Atom::Status | Atom::Length | Atom::Seconds | Atom::Millis | Atom::Micros => {
                _ = write!(out, "{}", self.number(entry).unwrap_or(0));
            }
        }
    }
}

/// The value Python's `dict(headers).get(name)` finds: the last one under that name.
pub fn last<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h [u8]> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .map(|v| v.as_bytes())
}

/// A header's value decoded as latin-1, `-` when there is none.
pub fn header(headers: Option<&HeaderMap>, name: &Option<HeaderName>, out: &mut Vec<u8>) {
    match (headers, name) {
        (Some(headers), Some(name)) => match last(headers, name) {
            Some(value) => push_latin1(out, value),
            None => out.push(b'-'),
        },
        _ => out.push(b'-'),
    }
}

pub fn remote_host(entry: &Entry, out: &mut Vec<u8>) {
    match entry.remote {
        Some(addr) => _ = write!(out, "{}", addr.ip()),
        None => out.push(b'-'),
    }
}

/// `r`: the method, the path as received and the query, decoded as latin-1, and the protocol.
fn request_line(entry: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(entry.method.as_bytes());
    out.push(b' ');
    push_latin1(out, entry.path.as_bytes());
    if !entry.query.is_empty() {
        out.push(b'?');
        push_latin1(out, entry.query.as_bytes());
    }
    out.push(b' ');
    out.extend_from_slice(entry.version.as_bytes());
}

/// The path as uvicorn puts it in the scope: `urllib.parse.unquote` (`%XX` to a byte, then
/// UTF-8 with U+FFFD for what does not decode; a `%` without two hex digits stays).
pub fn decoded_path(raw: &str, out: &mut Vec<u8>) {
    if !raw.contains('%') {
        out.extend_from_slice(raw.as_bytes());
        return;
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    out.extend_from_slice(String::from_utf8_lossy(&decoded).as_bytes());
}

/// `u`: the user of `Authorization: Basic <base64 of user:password>`, `-` when there is none
/// or it does not decode as Python 3.11's `base64.b64decode(value, validate=True)` accepts.
fn user(headers: &HeaderMap, out: &mut Vec<u8>) {
    let decoded = last(headers, &AUTHORIZATION).and_then(|value| {
        let scheme = value.get(..6)?;
        if !scheme.eq_ignore_ascii_case(b"basic ") {
            return None;
        }
        b64decode_strict(strip(&value[6..]))
    });
    let name = decoded
        .as_deref()
        .map(|d| d.split(|b| *b == b':').next().unwrap_or(d));
    match name {
        Some(name) if !name.is_empty() => push_latin1(out, name),
        _ => out.push(b'-'),
    }
}

/// `bytes.strip()`: ASCII whitespace as Python counts it (vertical tab included).
fn strip(mut b: &[u8]) -> &[u8] {
    let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c');
    while let Some((_, rest)) = b.split_first().filter(|(c, _)| space(c)) {
        b = rest;
    }
    while let Some((_, rest)) = b.split_last().filter(|(c, _)| space(c)) {
        b = rest;
    }
    b
}

/// `binascii.a2b_base64(text, strict_mode=True)` of CPython 3.11 to 3.12.3: data characters,
/// then only `=`; the padding must complete the last group (`xx==`, `xxx=`), and after a whole
/// group any `=` is ignored. `None` where Python raises `binascii.Error`.
fn b64decode_strict(text: &[u8]) -> Option<Vec<u8>> {
    let data_len = text.iter().position(|b| *b == b'=').unwrap_or(text.len());
    let (data, pads) = text.split_at(data_len);
    if !pads.iter().all(|b| *b == b'=') || (data.is_empty() && !pads.is_empty()) {
        return None;
    }
    let complete = match data.len() % 4 {
        0 => true,
        2 => pads.len() == 2,
        3 => pads.len() == 1,
        _ => false,
    };
    if !complete {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in data {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
