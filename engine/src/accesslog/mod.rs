//! PLACEHOLDER until the engine-accesslog branch merges (not committed).
pub const DEFAULT_FORMAT: &str =
    "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\"";
pub struct Entry<'a> {
    pub remote: Option<std::net::SocketAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub version: &'a str,
    pub request_headers: &'a hyper::HeaderMap,
    pub status: u16,
    pub response_headers: Option<&'a hyper::HeaderMap>,
    pub body_bytes: u64,
    pub duration: std::time::Duration,
}
pub struct Format;
impl Format {
    pub fn compile(_s: &str) -> Result<Format, String> {
        Ok(Format)
    }
    pub fn wants_response_headers(&self) -> bool {
        false
    }
}
pub struct AccessLog;
impl AccessLog {
    pub fn open(
        _p: &str,
        _f: Format,
        _w: Box<dyn Fn(&str) + Send + Sync>,
    ) -> std::io::Result<AccessLog> {
        Ok(AccessLog)
    }
    pub fn record(&self, _e: &Entry) {}
    pub fn dropped(&self) -> u64 {
        0
    }
    pub fn reopen(&self) {}
    pub fn close(&self, _w: std::time::Duration) {}
    pub fn wants_response_headers(&self) -> bool {
        false
    }
}
