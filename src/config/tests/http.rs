//! `http` and the `http2_*` keys: their values, their layering, and their refusal with the
//! uvicorn engine, which has no HTTP/2.

use super::*;
use crate::config::{Engine, HttpVersion};
use std::time::Duration;

#[test]
fn http2_settings_load_from_the_file_the_environment_and_flags() {
    let file = ConfigFile::new(
        "app = \"m:app\"\nengine = \"native\"\nhttp = 2\n\
         http2_initial_stream_window_size = \"256KiB\"\n",
    );
    let env_set = env(&[("HERDSMAN_HTTP2_MAX_CONCURRENT_STREAMS", "50")]);
    let config = load_ok(
        &file.args(&[
            "--http2-max-header-list-size",
            "16384",
            "--http2-keep-alive-interval",
            "20s",
        ]),
        &env_set,
    );
    assert_eq!(config.engine, Engine::Native);
    assert_eq!(config.http.version, HttpVersion::Two);
    assert_eq!(config.http.initial_stream_window_size, 256 << 10);
    assert_eq!(config.http.initial_connection_window_size, 1 << 20);
    assert_eq!(config.http.max_concurrent_streams, 50);
    assert_eq!(config.http.max_header_list_size, 16384);
    assert_eq!(
        config.http.keep_alive_interval,
        Some(Duration::from_secs(20))
    );
    let config = load_ok(&args(&["m:app", "--http", "1"]), &[]);
    assert_eq!(
        config.http.version,
        HttpVersion::One,
        "1 with uvicorn is what it serves"
    );
}

#[test]
fn out_of_range_http2_values_say_the_range() {
    let errors = load_err(
        &args(&[
            "m:app",
            "--engine",
            "native",
            "--http",
            "3",
            "--http2-max-concurrent-streams",
            "0",
            "--http2-initial-stream-window-size",
            "2GiB",
            "--http2-initial-connection-window-size",
            "1000",
        ]),
        &[],
    )
    .to_string();
    for expected in [
        "`http` must be \"auto\", 1 or 2, got a string \"3\"",
        "`http2_max_concurrent_streams` must be a whole number from 1 to 100000, got 0",
        "`http2_initial_stream_window_size` must be a size from 65535 to 2147483647 bytes, \
         got a string \"2GiB\"",
        "`http2_initial_connection_window_size` must be a size from 65535 to 2147483647 bytes, \
         got a string \"1000\"",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
}

#[test]
fn the_uvicorn_engine_refuses_http2_and_names_the_native_engine() {
    let errors = load_err(
        &args(&[
            "m:app",
            "--http",
            "2",
            "--http2-max-concurrent-streams",
            "100",
        ]),
        &[],
    );
    let text = errors.to_string();
    assert_eq!(errors.errors().len(), 2, "{text}");
    for expected in [
        "command line --http: `http` is 2 (HTTP/2 only), but the uvicorn engine serves HTTP/1.1 only",
        "command line --http2-max-concurrent-streams: `http2_max_concurrent_streams` is an HTTP/2 \
         setting, and the uvicorn engine serves HTTP/1.1 only",
        "--engine native",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
