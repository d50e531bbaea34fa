//! The worker-to-master side of the channel protocol (docs/protocol.md): one JSON object per
//! line. Unknown message types and fields are tolerated so that either side can be newer.

use serde::Deserialize;

/// Why a worker could not become ready, as it reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootErrorKind {
    /// The app failed to import, or its attribute or factory failed.
    Import,
    /// uvicorn or a2wsgi is missing from the interpreter.
    Dependency,
    /// ASGI lifespan startup failed.
    Lifespan,
    /// The object is neither ASGI nor WSGI, or detection could not tell.
    Interface,
    /// The `ready_path` probe did not answer 2xx or 3xx.
    Readiness,
    /// The worker could not set TLS up from the configured files.
    Tls,
    #[serde(other)]
    Other,
}

impl BootErrorKind {
    /// The kind implied by a worker's exit code, when the message itself was lost.
    pub fn from_exit_code(code: i32) -> Option<BootErrorKind> {
        match code {
            10 => Some(BootErrorKind::Import),
            11 => Some(BootErrorKind::Dependency),
            12 => Some(BootErrorKind::Lifespan),
            13 => Some(BootErrorKind::Interface),
            14 => Some(BootErrorKind::Readiness),
            15 => Some(BootErrorKind::Tls),
            _ => None,
        }
    }
}

/// A message from a worker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// `engine` is null when uvicorn is missing (a `boot_error` follows).
    Hello {
        #[serde(default)]
        python: Option<String>,
        #[serde(default)]
        engine: Option<String>,
    },
    Ready {
        #[serde(default)]
        interface: String,
    },
    Heartbeat {
        #[serde(default)]
        requests: u64,
        #[serde(default)]
        in_flight: u64,
        /// Access log lines the worker dropped so far (its destination failed or lagged).
        #[serde(default)]
        access_log_dropped: u64,
    },
    BootError {
        kind: BootErrorKind,
        #[serde(default)]
        message: String,
        /// The app's traceback, when there is one (several lines).
        #[serde(default)]
        traceback: Option<String>,
    },
    Stopping {
        #[serde(default)]
        reason: String,
    },
    /// From the worker's watchdog thread: the event loop has been silent for `silent` seconds
    /// while the process itself is alive. Not a heartbeat.
    Stalled {
        #[serde(default)]
        silent: f64,
        #[serde(default)]
        in_flight: Vec<InFlightRequest>,
    },
    #[serde(other)]
    Unknown,
}

/// A request being handled, as the worker's in-flight registry saw it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InFlightRequest {
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub path: String,
    /// Seconds since the request started.
    #[serde(default)]
    pub age: f64,
    /// This request's handler is the one running on the blocked event loop.
    #[serde(default)]
    pub blocking: bool,
}

impl std::fmt::Display for InFlightRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let blocking = if self.blocking {
            ", blocking the loop"
        } else {
            ""
        };
        write!(
            f,
            "{} {} ({:.1}s{blocking})",
            self.method, self.path, self.age
        )
    }
}

/// Longest line accepted from a worker; a longer one is a protocol violation and is dropped.
const MAX_LINE: usize = 64 * 1024;

/// Splits a byte stream into messages. Malformed lines are returned as errors with the line text
/// so the caller can log them; they never stop the stream.
#[derive(Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
    discarding: bool,
}

impl LineBuffer {
    /// Appends `bytes` and returns every complete line parsed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<WorkerMessage, String>> {
        let mut out = Vec::new();
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            let complete = chunk.ends_with(b"\n");
            if !self.discarding {
                self.pending.extend_from_slice(chunk);
            }
            if complete {
                if !self.discarding {
                    out.push(parse(&self.pending));
                }
                self.pending.clear();
                self.discarding = false;
            } else if self.pending.len() > MAX_LINE {
                self.pending.clear();
                self.discarding = true;
                out.push(Err(format!("line longer than {MAX_LINE} bytes dropped")));
            }
        }
        out
    }
}

fn parse(line: &[u8]) -> Result<WorkerMessage, String> {
    let text = String::from_utf8_lossy(line);
    serde_json::from_str(text.trim_end()).map_err(|_| text.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_and_joined_lines() {
        let mut buf = LineBuffer::default();
        assert!(buf.push(b"{\"type\":\"rea").is_empty());
        let got = buf.push(b"dy\",\"interface\":\"asgi\"}\n{\"type\":\"heartbeat\",\"requests\":3,\"in_flight\":1}\n");
        assert_eq!(
            got,
            vec![
                Ok(WorkerMessage::Ready {
                    interface: "asgi".into()
                }),
                Ok(WorkerMessage::Heartbeat {
                    requests: 3,
                    in_flight: 1,
                    access_log_dropped: 0,
                }),
            ]
        );
    }

    #[test]
    fn tolerates_unknown_types_and_fields() {
        let mut buf = LineBuffer::default();
        let got = buf.push(b"{\"type\":\"future\",\"x\":1}\n{\"type\":\"stopping\",\"reason\":\"signal\",\"extra\":true}\n");
        assert_eq!(
            got,
            vec![
                Ok(WorkerMessage::Unknown),
                Ok(WorkerMessage::Stopping {
                    reason: "signal".into()
                }),
            ]
        );
    }

    #[test]
    fn reports_garbage_and_unknown_boot_error_kinds() {
        let mut buf = LineBuffer::default();
        let got =
            buf.push(b"not json\n{\"type\":\"boot_error\",\"kind\":\"weird\",\"message\":\"m\"}\n");
        assert_eq!(got[0], Err("not json".to_string()));
        assert_eq!(
            got[1],
            Ok(WorkerMessage::BootError {
                kind: BootErrorKind::Other,
                message: "m".into(),
                traceback: None,
            })
        );
    }

    #[test]
    fn drops_overlong_lines_and_recovers() {
        let mut buf = LineBuffer::default();
        let long = vec![b'x'; MAX_LINE + 10];
        let got = buf.push(&long);
        assert!(matches!(got.as_slice(), [Err(_)]));
        let got = buf.push(b"yyy\n{\"type\":\"ready\"}\n");
        assert_eq!(
            got,
            vec![Ok(WorkerMessage::Ready {
                interface: String::new()
            })]
        );
    }

    #[test]
    fn parses_stalled_reports() {
        let mut buf = LineBuffer::default();
        let got = buf.push(b"{\"type\":\"stalled\",\"silent\":3.5,\"in_flight\":[{\"method\":\"GET\",\"path\":\"/block\",\"age\":3.4}]}\n");
        let Ok(WorkerMessage::Stalled { silent, in_flight }) = &got[0] else {
            panic!("not a stalled message: {got:?}");
        };
        assert_eq!(*silent, 3.5);
        assert_eq!(in_flight[0].to_string(), "GET /block (3.4s)");
        let mut buf = LineBuffer::default();
        let got = buf.push(b"{\"type\":\"hello\",\"pid\":1,\"python\":\"3.11\",\"engine\":null}\n");
        assert_eq!(
            got,
            vec![Ok(WorkerMessage::Hello {
                python: Some("3.11".into()),
                engine: None
            })]
        );
    }

    #[test]
    fn boot_error_kinds_from_exit_codes() {
        assert_eq!(
            BootErrorKind::from_exit_code(10),
            Some(BootErrorKind::Import)
        );
        assert_eq!(
            BootErrorKind::from_exit_code(11),
            Some(BootErrorKind::Dependency)
        );
        assert_eq!(BootErrorKind::from_exit_code(1), None);
    }
}
