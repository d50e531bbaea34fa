//! Conversions of single raw values into typed ones: numbers, durations, sizes, switches,
//! choices, paths. Each rejects with what was expected, what was got, and accepted examples.
//! Text is accepted wherever a number or a switch is (the environment and the command line only
//! have text), so `workers = "4"` in the file works like `HERDSMAN_WORKERS=4`.

use super::error::{Fix, Invalid};
use super::keys::suggest;
use super::layer::Raw;
use super::size;
use crate::config::{
    Engine, Interface, Lifespan, LogFormat, LogLevel, ReadyMin, SpawnMode, WorkerCount,
};
use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::time::Duration;

/// The longest accepted duration: longer is a mistake, and would overflow deadline arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// `auto`, or a whole number of at least 1.
pub fn workers(raw: &Raw) -> Result<WorkerCount, Invalid> {
    const EXPECTED: &str = "must be a whole number or \"auto\"";
    if let Raw::Text(text) = raw {
        if text.trim().eq_ignore_ascii_case("auto") {
            return Ok(WorkerCount::Auto);
        }
    }
    let n = number_in(raw, 1..=u64::from(u32::MAX), EXPECTED, &["4", "\"auto\""])?;
    let n = u32::try_from(n).ok().and_then(NonZeroU32::new);
    Ok(WorkerCount::Fixed(
        n.expect("number_in checked 1..=u32::MAX"),
    ))
}

/// `all`, or a whole number of at least 1.
pub fn ready_min(raw: &Raw) -> Result<ReadyMin, Invalid> {
    const EXPECTED: &str = "must be a whole number or \"all\"";
    if let Raw::Text(text) = raw {
        if text.trim().eq_ignore_ascii_case("all") {
            return Ok(ReadyMin::All);
        }
    }
    let n = number_in(raw, 1..=u64::from(u32::MAX), EXPECTED, &["1", "\"all\""])?;
    let n = u32::try_from(n).ok().and_then(NonZeroU32::new);
    Ok(ReadyMin::AtLeast(
        n.expect("number_in checked 1..=u32::MAX"),
    ))
}

/// A whole number within `range`, as the `u32` every count in `Config` is.
pub fn count(raw: &Raw, range: RangeInclusive<u32>, example: &str) -> Result<u32, Invalid> {
    let wide = u64::from(*range.start())..=u64::from(*range.end());
    let n = number(raw, wide, example)?;
    Ok(u32::try_from(n).expect("number() kept it within a u32 range"))
}

/// A whole number within `range`, for keys where both bounds matter: a rejection names the whole
/// range ("from 1 to 1024").
pub fn count_from_to(raw: &Raw, range: RangeInclusive<u32>, example: &str) -> Result<u32, Invalid> {
    let (low, high) = (*range.start(), *range.end());
    count(raw, range, example).map_err(|_| {
        let got = if is_integer(raw) {
            shown(raw)
        } else {
            raw.describe()
        };
        let problem = format!("must be a whole number from {low} to {high}, got {got}");
        Invalid::examples(problem, &[example])
    })
}

/// A whole number within `range`.
pub fn number(raw: &Raw, range: RangeInclusive<u64>, example: &str) -> Result<u64, Invalid> {
    number_in(raw, range, "must be a whole number", &[example])
}

fn number_in(
    raw: &Raw,
    range: RangeInclusive<u64>,
    expected: &str,
    examples: &[&str],
) -> Result<u64, Invalid> {
    let n = match raw {
        Raw::Int(n) => u64::try_from(*n).ok(),
        Raw::Text(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    };
    let Some(n) = n else {
        let problem = if is_negative(raw) {
            format!("must be at least {}, got {}", range.start(), shown(raw))
        } else {
            format!("{expected}, got {}", raw.describe())
        };
        return Err(Invalid::examples(problem, examples));
    };
    if range.contains(&n) {
        return Ok(n);
    }
    let problem = if n < *range.start() {
        format!("must be at least {}, got {}", range.start(), shown(raw))
    } else {
        format!("must be at most {}, got {}", range.end(), shown(raw))
    };
    Err(Invalid::examples(problem, examples))
}

/// Negative integers are out of range rather than of the wrong type (even when the range
/// starts at 0: `-1` is never read as "off").
fn is_negative(raw: &Raw) -> bool {
    match raw {
        Raw::Int(n) => *n < 0,
        Raw::Text(text) => text.trim().parse::<i64>().is_ok_and(|n| n < 0),
        _ => false,
    }
}

/// An integer of any sign or size, as a number or as text.
fn is_integer(raw: &Raw) -> bool {
    match raw {
        Raw::Int(_) => true,
        Raw::Text(text) => text.trim().parse::<i128>().is_ok(),
        _ => false,
    }
}

/// The value itself, for range messages.
fn shown(raw: &Raw) -> String {
    match raw {
        Raw::Int(n) => n.to_string(),
        Raw::Text(text) => text.trim().to_string(),
        other => other.describe(),
    }
}

/// A duration: `"30s"`, `"500ms"`, `"1m 30s"`, or a whole number of seconds (like gunicorn).
pub fn duration(raw: &Raw, allow_zero: bool) -> Result<Duration, Invalid> {
    const EXAMPLES: &[&str] = &["\"30s\"", "\"500ms\""];
    let parsed = match raw {
        Raw::Int(secs) => u64::try_from(*secs).ok().map(Duration::from_secs),
        Raw::Text(text) => parse_duration(text.trim()),
        _ => None,
    };
    let Some(parsed) = parsed else {
        let problem = format!(
            "must be a duration such as \"30s\", \"500ms\" or \"1m\" (a bare number means \
             seconds), got {}",
            raw.describe()
        );
        return Err(Invalid::examples(problem, EXAMPLES));
    };
    if parsed.is_zero() && !allow_zero {
        return Err(Invalid::examples("must be longer than zero", EXAMPLES));
    }
    if parsed > MAX_DURATION {
        let problem = format!("must be at most 24h, got {}", shown(raw));
        return Err(Invalid::examples(problem, EXAMPLES));
    }
    Ok(parsed)
}

fn parse_duration(text: &str) -> Option<Duration> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Duration::from_secs);
    }
    humantime::parse_duration(text).ok()
}

/// A duration longer than zero.
pub fn positive_duration(raw: &Raw) -> Result<Duration, Invalid> {
    duration(raw, false)
}

/// A duration of at least `min`; zero is "below the minimum", not a special case.
pub fn duration_at_least(raw: &Raw, min: Duration) -> Result<Duration, Invalid> {
    let parsed = duration(raw, true)?;
    if parsed < min {
        let min = humantime::format_duration(min);
        let problem = format!("must be at least {min}, got {}", shown(raw));
        return Err(Invalid::examples(problem, &["\"5s\"", "\"1s\""]));
    }
    Ok(parsed)
}

/// gunicorn's `pythonpath`: comma-separated directories, kept in order (empty entries dropped).
/// Whether they exist is not checked, as gunicorn does not: a directory made after the start
/// still works once a reload starts new workers.
pub fn pythonpath(raw: &Raw) -> Result<Vec<String>, Invalid> {
    let Raw::Text(text) = raw else {
        let problem = format!("must be a string of directories, got {}", raw.describe());
        let examples = vec!["\"/srv/app/src,/srv/app/lib\"".to_string()];
        return Err(Invalid::new(problem, Fix::Examples(examples)));
    };
    Ok(text
        .split(',')
        .map(str::trim)
        .filter(|dir| !dir.is_empty())
        .map(str::to_string)
        .collect())
}

/// uvicorn's `root_path`: empty, or a path that starts with `/` and does not end with one, of
/// printable ASCII (it is a URL path prefix).
pub fn root_path(raw: &Raw) -> Result<String, Invalid> {
    let fine = |path: &str| {
        path.is_empty() || (path.starts_with('/') && !path.ends_with('/') && printable(path))
    };
    url_path(
        raw,
        "/api",
        fine,
        "empty or a path that starts with / and does not end with one",
    )
}

/// The readiness probe's path: starts with `/`, printable ASCII (a request target), a query
/// allowed.
pub fn ready_path(raw: &Raw) -> Result<String, Invalid> {
    let fine = |path: &str| path.starts_with('/') && printable(path);
    url_path(
        raw,
        "/healthz",
        fine,
        "a path that starts with / (no spaces, ASCII)",
    )
}

fn printable(path: &str) -> bool {
    path.bytes().all(|b| b.is_ascii_graphic())
}

/// A URL path read from text (trimmed) and judged by `fine`; the fix offered is the value with
/// one leading `/` and none trailing, or `example` for a value that is not text.
fn url_path(
    raw: &Raw,
    example: &str,
    fine: impl Fn(&str) -> bool,
    problem: &str,
) -> Result<String, Invalid> {
    let Raw::Text(text) = raw else {
        let problem = format!("must be a path such as {example}, got {}", raw.describe());
        return Err(Invalid::new(
            problem,
            Fix::Examples(vec![format!("{example:?}")]),
        ));
    };
    let path = text.trim();
    if fine(path) {
        return Ok(path.to_string());
    }
    let fixed = format!("{:?}", format!("/{}", path.trim_matches('/')));
    let problem = format!("must be {problem}, got {}", raw.describe());
    Err(Invalid::new(problem, Fix::Examples(vec![fixed])))
}

/// A process title's name: 1 to 100 printable characters (no control characters).
pub fn proc_name(raw: &Raw) -> Result<String, Invalid> {
    let example = || vec!["\"myproject\"".to_string()];
    let Raw::Text(text) = raw else {
        let problem = format!("must be a name such as myproject, got {}", raw.describe());
        return Err(Invalid::new(problem, Fix::Examples(example())));
    };
    let name = text.trim();
    let fine =
        !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control);
    if !fine {
        let problem = format!(
            "must be 1 to 100 printable characters, got {}",
            raw.describe()
        );
        return Err(Invalid::new(problem, Fix::Examples(example())));
    }
    Ok(name.to_string())
}

/// A duration from zero up to `max`.
pub fn duration_at_most(raw: &Raw, max: Duration) -> Result<Duration, Invalid> {
    let parsed = duration(raw, true)?;
    if parsed > max {
        let max = humantime::format_duration(max);
        let problem = format!("must be at most {max}, got {}", shown(raw));
        return Err(Invalid::examples(problem, &["\"5s\"", "\"2s\""]));
    }
    Ok(parsed)
}

/// gunicorn's and uvicorn's `forwarded_allow_ips`: comma-separated IP addresses and networks
/// (`10.0.0.0/8`), or `*`; returned normalized (`a,b`). An entry that is neither is refused
/// (uvicorn would keep it as a name that no peer address ever matches: a silent typo).
pub fn forwarded_allow_ips(raw: &Raw) -> Result<String, Invalid> {
    let example = || vec!["\"127.0.0.1,10.0.0.0/8\"".to_string(), "\"*\"".to_string()];
    let Raw::Text(text) = raw else {
        let problem = format!(
            "must be a string of addresses and networks, got {}",
            raw.describe()
        );
        return Err(Invalid::new(problem, Fix::Examples(example())));
    };
    let mut entries = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry != "*" && !is_ip_or_network(entry) {
            let problem =
                format!("entry {entry:?} is not an IP address, a network such as 10.0.0.0/8, or *");
            return Err(Invalid::new(problem, Fix::Examples(example())));
        }
        entries.push(entry);
    }
    Ok(entries.join(","))
}

fn is_ip_or_network(entry: &str) -> bool {
    use std::net::IpAddr;
    match entry.split_once('/') {
        Some((addr, bits)) => match (addr.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(bits)) => bits <= 32,
            (Ok(IpAddr::V6(_)), Ok(bits)) => bits <= 128,
            _ => false,
        },
        None => entry.parse::<IpAddr>().is_ok(),
    }
}

/// A duration, where zero means "off" (`None`).
pub fn optional_duration(raw: &Raw) -> Result<Option<Duration>, Invalid> {
    duration(raw, true).map(|d| (!d.is_zero()).then_some(d))
}

/// A whole number, where zero means "off" (`None`), as gunicorn's `--max-requests`.
pub fn optional_number(raw: &Raw, example: &str) -> Result<Option<u64>, Invalid> {
    number(raw, 0..=u64::MAX, example).map(|n| (n > 0).then_some(n))
}

/// A size in bytes (see `size` for the syntax) of at least `min`; `0` or `"off"` mean `None`.
/// A TOML integer is a number of bytes.
pub fn size(raw: &Raw, min: u64) -> Result<Option<u64>, Invalid> {
    let bytes = match raw {
        Raw::Text(text) if text.trim().eq_ignore_ascii_case("off") => return Ok(None),
        Raw::Text(text) => size::parse(text.trim())?,
        Raw::Int(n) => u64::try_from(*n).map_err(|_| negative_size(raw))?,
        other => {
            let problem = format!(
                "must be a size such as \"512MiB\", got {}",
                other.describe()
            );
            return Err(Invalid::examples(problem, size::EXAMPLES));
        }
    };
    if bytes == 0 {
        return Ok(None);
    }
    if bytes < min {
        return Err(too_small(raw, min));
    }
    Ok(Some(bytes))
}

fn negative_size(raw: &Raw) -> Invalid {
    let problem = format!("must be a size of zero or more, got {}", shown(raw));
    Invalid::examples(problem, size::EXAMPLES)
}

/// Below `min`: most likely a unit left out (`512` meant as 512MiB), so suggest adding one.
fn too_small(raw: &Raw, min: u64) -> Invalid {
    let bare = match raw {
        Raw::Int(n) => Some(n.to_string()),
        Raw::Text(text) if text.trim().bytes().all(|b| b.is_ascii_digit()) => {
            Some(text.trim().to_string())
        }
        _ => None,
    };
    let min = size::format(min);
    let Some(bare) = bare else {
        let problem = format!("must be at least {min}, got {}", shown(raw));
        return Invalid::examples(problem, size::EXAMPLES);
    };
    let problem = format!("must be at least {min}, got {bare} bytes (a bare number means bytes)");
    Invalid::examples(problem, &[&format!("\"{bare}MiB\"")])
}

/// A switch: a TOML boolean, or `true/false`, `yes/no`, `on/off`, `1/0` as text.
pub fn boolean(raw: &Raw) -> Result<bool, Invalid> {
    let parsed = match raw {
        Raw::Bool(b) => Some(*b),
        Raw::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| {
        let problem = format!("must be true or false, got {}", raw.describe());
        Invalid::examples(problem, &["true", "false"])
    })
}

/// One of the named `choices` (case-insensitive), or one of their `aliases`. A rejection
/// suggests the closest choice, else `usual`.
fn choice<T: Copy>(
    raw: &Raw,
    choices: &[(&'static str, T)],
    aliases: &[(&'static str, T)],
    usual: &str,
) -> Result<T, Invalid> {
    if let Raw::Text(text) = raw {
        let text = text.trim().to_ascii_lowercase();
        let all = choices.iter().chain(aliases);
        if let Some((_, value)) = all.into_iter().find(|(name, _)| *name == text) {
            return Ok(*value);
        }
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let problem = format!(
        "must be one of {}, got {}",
        names.join(", "),
        raw.describe()
    );
    let close = match raw {
        Raw::Text(text) => suggest(text, names.iter().copied()),
        _ => None,
    };
    let example = format!("{:?}", close.unwrap_or(usual));
    Err(Invalid::new(problem, Fix::Examples(vec![example])))
}

/// gunicorn's `worker_class`: uvicorn's worker classes (which make the interface asgi) are
/// accepted, as written; gunicorn's own classes are refused with herdsman's equivalent.
pub fn worker_class(raw: &Raw) -> Result<&'static str, Invalid> {
    const UVICORN: [&str; 4] = [
        "uvicorn.workers.UvicornWorker",
        "uvicorn.workers.UvicornH11Worker",
        "uvicorn_worker.UvicornWorker",
        "uvicorn_worker.UvicornH11Worker",
    ];
    let given = match raw {
        Raw::Text(text) => text.trim(),
        _ => "",
    };
    if let Some(name) = UVICORN.iter().find(|name| **name == given) {
        return Ok(name);
    }
    let advice = match given.to_ascii_lowercase().as_str() {
        "sync" | "gthread" | "" => "herdsman has no worker classes: drop it, and a WSGI app is served as it is \
             (--engine native serves it with herdsman's own engine on --threads N threads, as gthread)"
            .to_string(),
        "gevent" | "eventlet" | "tornado" => format!(
            "herdsman does not run {given} workers: serve the app as WSGI (drop the worker class) \
             or as ASGI"
        ),
        _ => format!("use one of {}, or drop it (herdsman needs none)", UVICORN.join(", ")),
    };
    let problem = format!(
        "must be one of uvicorn's worker classes, got {}",
        raw.describe()
    );
    Err(Invalid::new(problem, Fix::Advice(advice)))
}

pub fn interface(raw: &Raw) -> Result<Interface, Invalid> {
    let choices = [
        ("auto", Interface::Auto),
        ("asgi", Interface::Asgi),
        ("wsgi", Interface::Wsgi),
    ];
    choice(raw, &choices, &[], "auto")
}

pub fn engine(raw: &Raw) -> Result<Engine, Invalid> {
    let choices = [("uvicorn", Engine::Uvicorn), ("native", Engine::Native)];
    choice(raw, &choices, &[], "native")
}

pub fn lifespan(raw: &Raw) -> Result<Lifespan, Invalid> {
    let choices = [
        ("auto", Lifespan::Auto),
        ("on", Lifespan::On),
        ("off", Lifespan::Off),
    ];
    choice(raw, &choices, &[], "on")
}

pub fn spawn(raw: &Raw) -> Result<SpawnMode, Invalid> {
    let choices = [("exec", SpawnMode::Exec), ("zygote", SpawnMode::Zygote)];
    choice(raw, &choices, &[], "zygote")
}

/// A log level; `warn` is accepted for `warning`.
pub fn log_level(raw: &Raw) -> Result<LogLevel, Invalid> {
    let choices = [
        ("trace", LogLevel::Trace),
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warning", LogLevel::Warning),
        ("error", LogLevel::Error),
        ("critical", LogLevel::Critical),
    ];
    choice(raw, &choices, &[("warn", LogLevel::Warning)], "info")
}

pub fn log_format(raw: &Raw) -> Result<LogFormat, Invalid> {
    let choices = [("text", LogFormat::Text), ("json", LogFormat::Json)];
    choice(raw, &choices, &[], "text")
}

/// Non-empty text.
pub fn text<'a>(raw: &'a Raw, example: &str) -> Result<&'a str, Invalid> {
    match raw {
        Raw::Text(text) if !text.is_empty() => Ok(text),
        _ => {
            let problem = format!("must be a non-empty string, got {}", raw.describe());
            Err(Invalid::examples(problem, &[example]))
        }
    }
}
