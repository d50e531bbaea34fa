//! A captured worker line as a record of the master's log, so that with `capture_output` the log
//! has one format: the worker runtime writes its own lines (and uvicorn's) as JSON records
//! (`--log-format json`), which keep their time, level, message and fields and gain the
//! worker's id and pid; anything else the worker prints (the app's `print`, a library writing to
//! stderr) becomes an `INFO` record with the line as its message and `stream = "output"`.
//! Text records read like the master's own: `TIME LEVEL message key=value ...`, a traceback as
//! indented lines below.

use serde_json::{Map, Value};

use crate::config::LogFormat;

/// The record for one captured `line` (without its newline) of worker `worker` (pid `pid`),
/// newline included.
pub fn render(format: LogFormat, worker: u64, pid: i32, line: &[u8]) -> Vec<u8> {
    let mut record = parse_record(line).unwrap_or_else(|| plain(line));
    record.insert("worker".into(), Value::from(worker));
    record.insert("pid".into(), Value::from(pid));
    let mut out = match format {
        LogFormat::Json => serde_json::to_vec(&Value::Object(record)).unwrap_or_default(),
        LogFormat::Text => text(&record).into_bytes(),
    };
    out.push(b'\n');
    out
}

/// The runtime's JSON record, if `line` is one (an object with a level and a message).
fn parse_record(line: &[u8]) -> Option<Map<String, Value>> {
    if !line.starts_with(b"{") {
        return None;
    }
    match serde_json::from_slice::<Value>(line).ok()? {
        Value::Object(map)
            if map.get("level").is_some_and(Value::is_string) && map.contains_key("message") =>
        {
            Some(map)
        }
        _ => None,
    }
}

fn plain(line: &[u8]) -> Map<String, Value> {
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let mut map = Map::new();
    map.insert("timestamp".into(), Value::from(now));
    map.insert("level".into(), Value::from("INFO"));
    map.insert(
        "message".into(),
        Value::from(String::from_utf8_lossy(line).into_owned()),
    );
    map.insert("stream".into(), Value::from("output"));
    map
}

fn text(record: &Map<String, Value>) -> String {
    let field = |key: &str| match record.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let mut out = format!(
        "{} {:>5} {}",
        field("timestamp"),
        field("level"),
        field("message")
    );
    for (key, value) in record {
        if matches!(
            key.as_str(),
            "timestamp" | "level" | "message" | "traceback" | "worker" | "pid"
        ) {
            continue;
        }
        match value {
            Value::String(s) if s.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                out.push_str(&format!(" {key}={s}"))
            }
            other => out.push_str(&format!(" {key}={other}")),
        }
    }
    out.push_str(&format!(" worker={} pid={}", field("worker"), field("pid")));
    if let Some(Value::String(traceback)) = record.get("traceback") {
        for line in traceback.trim_end().lines() {
            out.push_str("\n    ");
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(format: LogFormat, line: &str) -> String {
        String::from_utf8(render(format, 3, 42, line.as_bytes())).expect("utf-8")
    }

    #[test]
    fn a_runtime_record_keeps_its_fields_and_gains_the_worker() {
        let line = r#"{"timestamp":"2026-12-07T10:00:00.000001Z","level":"WARN","message":"slow","logger":"uvicorn.error","traceback":"Traceback:\n  x"}"#;
        let json: Value = serde_json::from_str(&rendered(LogFormat::Json, line)).expect("json");
        assert_eq!(json["level"], "WARN");
        assert_eq!(json["worker"], 3);
        assert_eq!(json["pid"], 42);
        assert_eq!(json["logger"], "uvicorn.error");
        let text = rendered(LogFormat::Text, line);
        assert_eq!(
            text,
            "2026-12-07T10:00:00.000001Z  WARN slow logger=\"uvicorn.error\" worker=3 pid=42\n    Traceback:\n      x\n"
        );
    }

    #[test]
    fn anything_else_is_an_info_record_of_the_output_stream() {
        let json: Value =
            serde_json::from_str(&rendered(LogFormat::Json, "hello {not json")).expect("json");
        assert_eq!(json["message"], "hello {not json");
        assert_eq!(json["level"], "INFO");
        assert_eq!(json["stream"], "output");
        let text = rendered(LogFormat::Text, "hello");
        assert!(
            text.ends_with("  INFO hello stream=output worker=3 pid=42\n"),
            "{text}"
        );
    }
}
