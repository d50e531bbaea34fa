//! A minimal HTTP/1.1 client over loopback, enough to talk to the test apps: one request per
//! connection (`Connection: close`), chunked or sized bodies, and a streaming start for the
//! `/block` endpoint. Every socket has a read and write timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.body.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `pid` field every test app returns.
    pub fn pid(&self) -> i32 {
        self.json()["pid"].as_i64().expect("pid in body") as i32
    }
}

pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    request(connect(addr)?, "GET", path, b"")
}

pub fn get_unix(socket: &Path, path: &str) -> io::Result<Response> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    request(stream, "GET", path, b"")
}

/// Sends one request and reads the whole response.
pub fn request(
    stream: impl Read + Write,
    method: &str,
    path: &str,
    body: &[u8],
) -> io::Result<Response> {
    request_with(stream, method, path, &[], body)
}

/// `GET path` with extra request headers.
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
    request_with(connect(addr)?, "GET", path, headers, b"")
}

/// Sends one request with extra headers and reads the whole response.
pub fn request_with(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    read_response(&mut BufReader::new(stream))
}

/// One response (head and body) from `reader`; on a kept-alive connection, the next one.
pub fn read_response(reader: &mut impl BufRead) -> io::Result<Response> {
    let (status, headers) = read_head(reader)?;
    let body = read_body(reader, &headers)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn read_head(reader: &mut impl BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            return Ok((status, headers));
        }
        if let Some((k, v)) = trimmed.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> io::Result<String> {
    let mut body = Vec::new();
    if header(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while let Some(chunk) = read_chunk(reader)? {
            body.extend(chunk);
        }
    } else if let Some(len) =
        header(headers, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// One chunk of a chunked body; `None` at the last chunk.
pub fn read_chunk(reader: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let size = usize::from_str_radix(line.trim(), 16).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad chunk size {line:?}"),
        )
    })?;
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk)?;
    chunk.truncate(size);
    Ok((size > 0).then_some(chunk))
}

/// A request whose response has started but not finished (e.g. `/block`, `/slow`).
pub struct InFlight {
    reader: BufReader<TcpStream>,
    headers: Vec<(String, String)>,
    pub status: u16,
}

impl InFlight {
    /// Reads the rest of the response body.
    pub fn finish(mut self) -> io::Result<String> {
        read_body(&mut self.reader, &self.headers)
    }
}

/// Starts `GET /block?s=SECS` and returns once the worker has sent its first chunk, i.e. once its
/// event loop is blocked; also returns that worker's pid.
pub fn start_block(addr: SocketAddr, secs: f64) -> io::Result<(InFlight, i32)> {
    start_streaming(addr, &format!("/block?s={secs}"))
}

/// Sends `GET path` to an endpoint that streams a first JSON chunk with its pid (`/block`,
/// wsgi_app's `/hold`), reads that chunk, and returns the rest of the response unread.
pub fn start_streaming(addr: SocketAddr, path: &str) -> io::Result<(InFlight, i32)> {
    let mut stream = connect(addr)?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let first = read_chunk(&mut reader)?.unwrap_or_default();
    let value: Value = serde_json::from_slice(&first)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let pid = value["pid"].as_i64().unwrap_or(-1) as i32;
    Ok((
        InFlight {
            reader,
            headers,
            status,
        },
        pid,
    ))
}

/// Sends a request and returns without reading the response.
pub fn send_only(addr: SocketAddr, path: &str) -> io::Result<InFlightRaw> {
    let mut stream = connect(addr)?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    Ok(InFlightRaw { stream })
}

/// A request sent whose response has not been read yet.
pub struct InFlightRaw {
    stream: TcpStream,
}

impl InFlightRaw {
    pub fn response(self) -> io::Result<Response> {
        let mut reader = BufReader::new(self.stream);
        let (status, headers) = read_head(&mut reader)?;
        let body = read_body(&mut reader, &headers)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
