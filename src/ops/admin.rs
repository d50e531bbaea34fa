//! The admin listener's HTTP: just enough HTTP/1.1 for `/metrics`, `/livez` and `/readyz`.
//! GET and HEAD only, one request per connection (`Connection: close`), the request head at
//! most [`MAX_REQUEST`] bytes, any body ignored. Parsing and formatting only: the answers are
//! decided in `server`, and the connection handling is `conn`'s.

/// The longest request head read.
pub const MAX_REQUEST: usize = 8 * 1024;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Livez,
    Readyz,
    NotFound,
    /// Not GET or HEAD.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line.
    BadRequest,
}

/// A parsed request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub route: Route,
    /// HEAD: answer with the headers only.
    pub head_only: bool,
}

/// The length of the request head (up to and including the blank line), once it is complete.
pub fn head_end(input: &[u8]) -> Option<usize> {
    let crlf = input
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = input.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads the request line of `head`.
pub fn parse(head: &[u8]) -> Parsed {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line)
        .unwrap_or_default()
        .trim_end_matches('\r');
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Parsed {
            route: Route::BadRequest,
            head_only: false,
        };
    };
    let head_only = method == "HEAD";
    let route = if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        Route::BadRequest
    } else if method != "GET" && !head_only {
        Route::MethodNotAllowed
    } else {
        match target.split('?').next().unwrap_or_default() {
            "/metrics" => Route::Metrics,
            "/livez" => Route::Livez,
            "/readyz" => Route::Readyz,
            _ => Route::NotFound,
        }
    };
    Parsed { route, head_only }
}

/// A whole response with `Connection: close`.
pub fn response(status: u16, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// A plain-text response of one line.
pub fn text(status: u16, line: &str, head_only: bool) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        &format!("{line}\n"),
        head_only,
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(head: &str) -> Route {
        parse(head.as_bytes()).route
    }

    #[test]
    fn routes_get_and_head_requests() {
        assert_eq!(
            route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(
            route("GET /readyz?verbose=1 HTTP/1.0\r\n\r\n"),
            Route::Readyz
        );
        assert_eq!(route("GET /livez HTTP/1.1\n\n"), Route::Livez);
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        let head = parse(b"HEAD /livez HTTP/1.1\r\n\r\n");
        assert_eq!(head.route, Route::Livez);
        assert!(head.head_only);
        assert_eq!(
            route("POST /livez HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        for bad in [
            "GET /livez",
            "GET /livez HTTP/2",
            "\x16\x03\x01",
            "GET livez HTTP/1.1",
        ] {
            assert_eq!(route(bad), Route::BadRequest, "{bad:?}");
        }
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[test]
    fn responses_close_and_say_their_length() {
        let r = String::from_utf8(text(503, "not ready", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        assert!(r.contains("Content-Length: 10\r\n"), "{r}");
        assert!(r.contains("Connection: close\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nnot ready\n"), "{r}");
        let r = String::from_utf8(text(405, "no", true)).unwrap();
        assert!(r.contains("Allow: GET, HEAD\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n"), "HEAD has no body: {r}");
    }
}
