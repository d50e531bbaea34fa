//! The control protocol, shared by the master and `herdsman ctl`: one JSON object per line in
//! each direction, one answer per request, in order. docs/operations.md documents it.
//!
//! Requests: `{"cmd":"status"}`, `{"cmd":"reload"}`, `{"cmd":"scale","workers":N}`,
//! `{"cmd":"stop"}`, `{"cmd":"quit"}`, `{"cmd":"drain"}`, `{"cmd":"undrain"}`. Every answer has
//! `"ok"`; a failed one has `"error"` (one or more lines of text for people). The other fields
//! depend on the command and are typed below, so the master and ctl cannot disagree on them.
//! Unknown fields are ignored, in requests and in answers, so either side may grow new ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The longest request line the master reads.
pub const MAX_REQUEST: usize = 64 * 1024;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Reload,
    Scale { workers: u32 },
    Stop,
    Quit,
    Drain,
    Undrain,
}

impl Request {
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Reload => "reload",
            Request::Scale { .. } => "scale",
            Request::Stop => "stop",
            Request::Quit => "quit",
            Request::Drain => "drain",
            Request::Undrain => "undrain",
        }
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("requests always serialize");
        line.push('\n');
        line
    }

    /// Parses one request line; the error is the text of the answer.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let text = std::str::from_utf8(line).map_err(|_| "the request is not UTF-8".to_string())?;
        serde_json::from_str(text.trim()).map_err(|e| {
            format!(
                "bad request ({e}); send one JSON object per line, e.g. {{\"cmd\":\"status\"}}; \
                 the commands are status, reload, scale (with \"workers\"), stop, quit, drain, \
                 undrain"
            )
        })
    }
}

/// `status`: the master, its workers and restart counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub master: MasterStatus,
    pub workers: Vec<WorkerRow>,
    /// Worker exits by reason since the master started.
    pub restarts: BTreeMap<String, u64>,
    pub last_restart: Option<LastRestartRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterStatus {
    pub pid: u32,
    pub uptime_seconds: f64,
    /// The generation new workers start from: 0 at start, one more per reload.
    pub generation: u64,
    pub target: u32,
    /// Workers serving now, and all workers (booting and leaving ones included).
    pub ready: usize,
    pub total: usize,
    /// Ready workers `/readyz` needs now.
    pub ready_min: u32,
    pub reloading: bool,
    pub stopping: bool,
    pub draining: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    pub id: u64,
    pub pid: Option<i32>,
    pub generation: u64,
    /// `booting`, `ready`, `recycling`, `dumping`, `stopping` or `killed`.
    pub state: String,
    pub age_seconds: f64,
    pub heartbeat_age_seconds: f64,
    pub requests: u64,
    pub in_flight: u64,
    /// Resident set size, read from /proc when the status was made.
    pub rss_bytes: Option<u64>,
    /// The latest proportional set size sample (only with `max_worker_memory`).
    pub pss_bytes: Option<u64>,
    /// User plus system CPU time, read from /proc when the status was made.
    pub cpu_seconds: Option<f64>,
    /// Why it is going away, if it is.
    pub leaving: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRestartRow {
    pub worker: u64,
    pub pid: Option<i32>,
    pub reason: String,
    pub seconds_ago: f64,
}

/// A whole answer line: `{"ok":true,...fields}` or `{"ok":false,"error":...}`.
pub fn answer(ok: bool, fields: serde_json::Value) -> Vec<u8> {
    let mut object = match fields {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    object.insert("ok".into(), ok.into());
    let mut line = serde_json::Value::Object(object).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// A failure answer.
pub fn error(text: &str) -> Vec<u8> {
    answer(false, serde_json::json!({ "error": text }))
}

/// The end of the first line in `input`, newline included.
pub fn line_end(input: &[u8]) -> Option<usize> {
    input.iter().position(|b| *b == b'\n').map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_documented() {
        let cases = [
            (Request::Status, r#"{"cmd":"status"}"#),
            (Request::Reload, r#"{"cmd":"reload"}"#),
            (
                Request::Scale { workers: 3 },
                r#"{"cmd":"scale","workers":3}"#,
            ),
            (Request::Stop, r#"{"cmd":"stop"}"#),
            (Request::Quit, r#"{"cmd":"quit"}"#),
            (Request::Drain, r#"{"cmd":"drain"}"#),
            (Request::Undrain, r#"{"cmd":"undrain"}"#),
        ];
        for (request, line) in cases {
            assert_eq!(request.to_line(), format!("{line}\n"));
            assert_eq!(Request::parse(line.as_bytes()), Ok(request));
        }
    }

    #[test]
    fn bad_requests_say_what_is_accepted() {
        for bad in [
            &b"status"[..],
            br#"{"cmd":"restart"}"#,
            br#"{"cmd":"scale"}"#,
            br#"{"cmd":"scale","workers":-1}"#,
            b"\xff",
        ] {
            let error = Request::parse(bad).expect_err("rejected");
            assert!(
                error.contains("{\"cmd\":\"status\"}") || error.contains("UTF-8"),
                "{error}"
            );
        }
    }

    #[test]
    fn answers_are_one_line_with_ok() {
        let line = answer(true, serde_json::json!({"target": 3}));
        assert_eq!(line, b"{\"ok\":true,\"target\":3}\n");
        let line = error("two\nlines");
        assert_eq!(line, b"{\"error\":\"two\\nlines\",\"ok\":false}\n");
        assert_eq!(line_end(b"a\nb"), Some(2));
        assert_eq!(line_end(b"ab"), None);
    }
}
