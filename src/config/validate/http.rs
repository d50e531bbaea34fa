//! The `http` key and the `http2_*` keys into one `Http`: which HTTP versions the native engine
//! serves and the HTTP/2 settings it advertises. The windows stay within what RFC 9113 allows
//! (65535 to 2^31 - 1 bytes), so the engine never gets a value its HTTP/2 library refuses; and
//! since the uvicorn engine serves HTTP/1.1 only, with it `http = 2` or any `http2_*` key is an
//! error that names `engine = "native"`, not a setting silently ignored.

use super::Validator;
use crate::config::error::{Fix, Invalid};
use crate::config::keys::Key;
use crate::config::layer::Raw;
use crate::config::values;
use crate::config::{defaults, Engine, Http, HttpVersion};

/// The HTTP/2 settings, which only the native engine has.
const HTTP2_KEYS: [Key; 5] = [
    Key::Http2MaxConcurrentStreams,
    Key::Http2InitialStreamWindowSize,
    Key::Http2InitialConnectionWindowSize,
    Key::Http2MaxHeaderListSize,
    Key::Http2KeepAliveInterval,
];
/// Most streams at once on one connection: each is a request the app serves at the same time,
/// so more is a typo.
const MAX_STREAMS: u32 = 100_000;
/// RFC 9113, 6.5.2 and 6.9.1: a flow-control window starts at 65535 and cannot pass 2^31 - 1.
const MIN_WINDOW: u64 = 65_535;
const MAX_WINDOW: u64 = (1 << 31) - 1;
/// A request head smaller than this cannot hold an ordinary browser request.
const MIN_HEADER_LIST: u64 = 4 << 10;
const MAX_HEADER_LIST: u64 = 16 << 20;

impl Validator<'_> {
    pub(super) fn http(&mut self, engine: Engine) -> Http {
        let http = Http {
            version: self.value(Key::Http, defaults::HTTP, version),
            max_concurrent_streams: self.value(
                Key::Http2MaxConcurrentStreams,
                defaults::HTTP2_MAX_CONCURRENT_STREAMS,
                |raw| values::count_from_to(raw, 1..=MAX_STREAMS, "200"),
            ),
            initial_stream_window_size: self.value(
                Key::Http2InitialStreamWindowSize,
                defaults::HTTP2_INITIAL_STREAM_WINDOW_SIZE,
                |raw| bytes(raw, MIN_WINDOW, MAX_WINDOW, "\"1MiB\""),
            ),
            initial_connection_window_size: self.value(
                Key::Http2InitialConnectionWindowSize,
                defaults::HTTP2_INITIAL_CONNECTION_WINDOW_SIZE,
                |raw| bytes(raw, MIN_WINDOW, MAX_WINDOW, "\"1MiB\""),
            ),
            max_header_list_size: self.value(
                Key::Http2MaxHeaderListSize,
                defaults::HTTP2_MAX_HEADER_LIST_SIZE,
                |raw| bytes(raw, MIN_HEADER_LIST, MAX_HEADER_LIST, "\"64KiB\""),
            ),
            keep_alive_interval: self.value(
                Key::Http2KeepAliveInterval,
                defaults::HTTP2_KEEP_ALIVE_INTERVAL,
                values::optional_duration,
            ),
        };
        if engine == Engine::Uvicorn {
            self.no_http2_with_uvicorn(http.version);
        }
        http
    }

    /// The uvicorn engine has no HTTP/2: a setting that asks for it is refused.
    fn no_http2_with_uvicorn(&mut self, version: HttpVersion) {
        let fix = "serve the app with the native engine (engine = \"native\", --engine native), \
                   which has HTTP/2, or drop the setting";
        if version == HttpVersion::Two && self.layer.get(Key::Http).is_some() {
            let problem = "is 2 (HTTP/2 only), but the uvicorn engine serves HTTP/1.1 only";
            self.reject_key(Key::Http, Invalid::advice(problem, fix));
        }
        for key in HTTP2_KEYS {
            if self.layer.get(key).is_some() {
                let problem = "is an HTTP/2 setting, and the uvicorn engine serves HTTP/1.1 only";
                self.reject_key(key, Invalid::advice(problem, fix));
            }
        }
    }
}

/// `"auto"`, `1` or `2` (as a TOML integer or as text: the environment and flags are text).
fn version(raw: &Raw) -> Result<HttpVersion, Invalid> {
    let text = match raw {
        Raw::Int(n) => n.to_string(),
        Raw::Text(text) => text.trim().to_ascii_lowercase(),
        _ => String::new(),
    };
    match text.as_str() {
        "auto" => Ok(HttpVersion::Auto),
        "1" | "1.1" => Ok(HttpVersion::One),
        "2" => Ok(HttpVersion::Two),
        _ => Err(Invalid::new(
            format!("must be \"auto\", 1 or 2, got {}", raw.describe()),
            Fix::Examples(vec!["\"auto\"".into(), "1".into(), "2".into()]),
        )),
    }
}

/// A size in bytes (an integer, or text such as "1MiB") from `min` to `max`.
fn bytes(raw: &Raw, min: u64, max: u64, example: &str) -> Result<u32, Invalid> {
    let range = || {
        format!(
            "must be a size from {} to {} bytes",
            crate::config::size::format(min),
            max
        )
    };
    match values::size(raw, 1)? {
        Some(n) if (min..=max).contains(&n) => Ok(u32::try_from(n).expect("max fits in a u32")),
        _ => Err(Invalid::examples(
            format!("{}, got {}", range(), raw.describe()),
            &[example],
        )),
    }
}
