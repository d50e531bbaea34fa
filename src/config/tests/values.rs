//! Value syntax through `load`: durations, worker counts, ranges, choices, switches.

use super::*;
use crate::config::{LogLevel, WorkerCount};
use std::time::Duration;

fn with(flags: &[&str]) -> Result<Config, String> {
    let argv = [flags, &["m:a"]].concat();
    load(&args(&argv), &[]).map_err(|errors| errors.to_string())
}

fn timeout(value: &str) -> Result<Duration, String> {
    with(&["--timeout", value]).map(|config| config.timeout)
}

#[test]
fn durations_accept_units_and_bare_seconds() {
    let cases = [
        ("30s", 30_000),
        ("500ms", 500),
        ("1m", 60_000),
        ("1m 30s", 90_000),
        ("2h", 7_200_000),
        ("45", 45_000),
        (" 7 ", 7_000),
        ("24h", 86_400_000),
    ];
    for (text, millis) in cases {
        assert_eq!(timeout(text), Ok(Duration::from_millis(millis)), "{text}");
    }
}

#[test]
fn durations_reject_nonsense_and_huge() {
    for bad in ["soon", "-5", "1.5", "", "30 parsecs"] {
        let error = timeout(bad).expect_err(bad);
        assert!(
            error.contains("must be a duration such as"),
            "{bad}: {error}"
        );
    }
    for zero in ["0", "0s"] {
        assert_eq!(
            timeout(zero),
            Ok(Duration::ZERO),
            "no timeout, as gunicorn's"
        );
    }
    assert!(timeout("25h")
        .expect_err("too long")
        .contains("must be at most 24h, got 25h"));
    assert!(timeout("99999999999999999999").is_err());
}

#[test]
fn graceful_timeout_may_be_zero() {
    let config = with(&["--graceful-timeout", "0"]).expect("zero grace is allowed");
    assert_eq!(config.graceful_timeout, Duration::ZERO);
    assert!(with(&["--boot-timeout", "0"]).is_err());
}

#[test]
fn durations_in_the_file_take_integers_and_strings() {
    let file = ConfigFile::new("app = \"m:a\"\ntimeout = 12\nboot_timeout = \"1m\"\n");
    let config = load_ok(&file.args(&[]), &[]);
    assert_eq!(
        (config.timeout, config.boot_timeout),
        (Duration::from_secs(12), Duration::from_secs(60))
    );
    let (errors, _file) = file_errors("app = \"m:a\"\ntimeout = -3\n");
    assert!(errors.contains("`timeout` must be a duration"), "{errors}");
}

#[test]
fn workers_are_auto_or_at_least_one() {
    let workers = |v: &str| with(&["-w", v]).map(|c| c.workers);
    assert_eq!(workers("auto"), Ok(WorkerCount::Auto));
    assert_eq!(workers("AUTO"), Ok(WorkerCount::Auto));
    assert_eq!(workers("8"), Ok(WorkerCount::Fixed(8.try_into().unwrap())));
    assert!(workers("0")
        .unwrap_err()
        .contains("`workers` must be at least 1, got 0"));
    assert!(workers("-2")
        .unwrap_err()
        .contains("`workers` must be at least 1, got -2"));
    assert!(workers("4294967296")
        .unwrap_err()
        .contains("must be at most 4294967295, got 4294967296"));
    assert!(workers("2.5").unwrap_err().contains("got a string \"2.5\""));
    let file = ConfigFile::new("app = \"m:a\"\nworkers = \"3\"\n");
    assert_eq!(
        load_ok(&file.args(&[]), &[]).workers,
        WorkerCount::Fixed(3.try_into().unwrap())
    );
}

#[test]
fn backlog_and_startup_attempts_ranges() {
    assert_eq!(with(&["--backlog", "65535"]).unwrap().backlog, 65535);
    assert_eq!(with(&["--backlog", "1"]).unwrap().backlog, 1);
    assert!(with(&["--backlog", "65536"])
        .unwrap_err()
        .contains("must be at most 65535, got 65536"));
    assert_eq!(
        with(&["--startup-attempts", "1"]).unwrap().startup_attempts,
        1
    );
    assert!(with(&["--startup-attempts", "0"])
        .unwrap_err()
        .contains("`startup_attempts` must be at least 1, got 0"));
}

#[test]
fn log_levels_accept_warn_and_any_case() {
    let level = |v: &str| with(&["--log-level", v]).map(|c| c.log_level);
    assert_eq!(level("warn"), Ok(LogLevel::Warning));
    assert_eq!(level("Warning"), Ok(LogLevel::Warning));
    assert_eq!(level("CRITICAL"), Ok(LogLevel::Critical));
    assert_eq!(level("trace"), Ok(LogLevel::Trace));
    assert!(level("verbose").is_err());
}

#[test]
fn switches_from_the_environment() {
    for (text, expected) in [
        ("true", true),
        ("1", true),
        ("Yes", true),
        ("on", true),
        ("false", false),
        ("0", false),
        ("no", false),
        ("OFF", false),
    ] {
        let env_set = env(&[("HERDSMAN_ACCESS_LOG", text), ("HERDSMAN_APP", "m:a")]);
        assert_eq!(load_ok(&args(&[]), &env_set).access_log, expected, "{text}");
    }
    let env_set = env(&[("HERDSMAN_FACTORY", "maybe"), ("HERDSMAN_APP", "m:a")]);
    let text = load_err(&args(&[]), &env_set).to_string();
    assert!(
        text.contains("fix: write `HERDSMAN_FACTORY=true` or `HERDSMAN_FACTORY=false`"),
        "{text}"
    );
}

#[test]
fn env_entries_from_the_environment_and_command_line() {
    let env_set = env(&[
        ("HERDSMAN_APP", "m:a"),
        ("HERDSMAN_ENV", "A=1; B=2 \n\nC=x=y;"),
    ]);
    let config = load_ok(&args(&["-e", "D=4"]), &env_set);
    assert_eq!(
        config.env,
        env(&[("A", "1"), ("B", "2"), ("C", "x=y"), ("D", "4")])
    );
    let env_set = env(&[("HERDSMAN_APP", "m:a"), ("HERDSMAN_ENV", "B =2")]);
    let text = load_err(&args(&[]), &env_set).to_string();
    assert!(
        text.contains("HERDSMAN_ENV: `env` variable name \"B \" is not valid"),
        "{text}"
    );
}

#[test]
fn app_spec_errors_come_with_their_origin() {
    let text = load_err(&args(&["main.py"]), &[]).to_string();
    assert!(
        text.starts_with("command line argument APP: `app` must be `module:attribute`"),
        "{text}"
    );
    assert!(text.contains("fix: write `main:app`"), "{text}");
    let text = load_err(&args(&[]), &env(&[("HERDSMAN_APP", "main.py:app")])).to_string();
    assert!(
        text.contains("fix: write `HERDSMAN_APP=main:app`"),
        "{text}"
    );
}

#[test]
fn threads_are_1_to_1024_and_rejections_name_the_range() {
    let threads = |value: &str| with(&["--threads", value]).map(|config| config.threads);
    assert_eq!(threads("1"), Ok(Some(1)));
    assert_eq!(threads(" 1024 "), Ok(Some(1024)));
    assert_eq!(with(&[]).map(|config| config.threads), Ok(None));
    for (bad, got) in [
        ("0", "got 0"),
        ("1025", "got 1025"),
        ("-4", "got -4"),
        ("99999999999999999999999", "got 99999999999999999999999"),
        ("many", "got a string \"many\""),
        ("2.5", "got a string \"2.5\""),
    ] {
        let error = threads(bad).expect_err(bad);
        let expected = format!("`threads` must be a whole number from 1 to 1024, {got}");
        assert!(error.contains(&expected), "{bad}: {error}");
        assert!(error.contains("fix: write `--threads 4`"), "{bad}: {error}");
    }
    let file = ConfigFile::new("app = \"m:a\"\nthreads = 0\n");
    let error = load_err(&file.args(&[]), &[]).to_string();
    assert!(
        error.contains("line 2: `threads` must be a whole number from 1 to 1024, got 0")
            && error.contains("fix: write `threads = 4`"),
        "{error}"
    );
}

#[test]
fn max_surge_is_1_to_64() {
    let surge = |v: &str| with(&["--max-surge", v]).map(|c| c.max_surge);
    assert_eq!(surge("1"), Ok(1));
    assert_eq!(surge("64"), Ok(64));
    assert!(surge("0")
        .unwrap_err()
        .contains("`max_surge` must be at least 1, got 0"));
    assert!(surge("65")
        .unwrap_err()
        .contains("`max_surge` must be at most 64, got 65"));
}

#[test]
fn max_requests_zero_means_off() {
    let requests = |v: &str| with(&["--max-requests", v]).map(|c| c.max_requests);
    assert_eq!(requests("1000"), Ok(Some(1000)));
    assert_eq!(requests("0"), Ok(None));
    assert_eq!(requests("18446744073709551615"), Ok(Some(u64::MAX)));
    let error = requests("-1").unwrap_err();
    assert!(
        error.contains("command line --max-requests: `max_requests` must be at least 0, got -1"),
        "{error}"
    );
    let error = requests("lots").unwrap_err();
    assert!(error.contains("must be a whole number"), "{error}");
    assert!(
        error.contains("fix: write `--max-requests 1000`"),
        "{error}"
    );
    let jitter = |v: &str| with(&["--max-requests-jitter", v]).map(|c| c.max_requests_jitter);
    assert_eq!(jitter("0"), Ok(0));
    assert_eq!(jitter("50"), Ok(50));
    assert!(jitter("1.5")
        .unwrap_err()
        .contains("must be a whole number"));
}

#[test]
fn max_worker_memory_takes_sizes() {
    let memory = |v: &str| with(&["--max-worker-memory", v]).map(|c| c.max_worker_memory);
    assert_eq!(memory("512MiB"), Ok(Some(512 << 20)));
    assert_eq!(memory("1.5 GiB"), Ok(Some(3 << 29)));
    assert_eq!(memory("800mb"), Ok(Some(800_000_000)));
    assert_eq!(memory("1048576"), Ok(Some(1 << 20)));
    assert_eq!(memory("1MiB"), Ok(Some(1 << 20)));
    assert_eq!(memory("0"), Ok(None));
    assert_eq!(memory("0MiB"), Ok(None));
    assert_eq!(memory("OFF"), Ok(None));
    let error = memory("512").unwrap_err();
    assert_eq!(
        error,
        "command line --max-worker-memory: `max_worker_memory` must be at least 1MiB, got 512 \
         bytes (a bare number means bytes)\n  fix: write `--max-worker-memory 512MiB`"
    );
    let error = memory("1MB").unwrap_err();
    assert!(
        error.contains("must be at least 1MiB, got 1MB\n  fix: write `--max-worker-memory 512MiB`"),
        "{error}"
    );
    let error = memory("512M").unwrap_err();
    assert!(
        error.contains("`max_worker_memory` has an unknown unit \"M\"; the units are KB, MB, GB"),
        "{error}"
    );
    assert!(
        error.contains("fix: write `--max-worker-memory 512MiB` or `--max-worker-memory 512MB`"),
        "{error}"
    );
    assert!(memory("lots")
        .unwrap_err()
        .contains("must be a size such as \"512MiB\", \"1GiB\" or \"800MB\""));
}

#[test]
fn max_worker_memory_in_the_file() {
    let file = ConfigFile::new("app = \"m:a\"\nmax_worker_memory = 2097152\n");
    assert_eq!(
        load_ok(&file.args(&[]), &[]).max_worker_memory,
        Some(2 << 20)
    );
    let file = ConfigFile::new("app = \"m:a\"\nmax_worker_memory = 0\n");
    assert_eq!(load_ok(&file.args(&[]), &[]).max_worker_memory, None);
    let (errors, _file) = file_errors("app = \"m:a\"\nmax_worker_memory = 512\n");
    assert!(
        errors.contains("line 2: `max_worker_memory` must be at least 1MiB, got 512 bytes"),
        "{errors}"
    );
    assert!(
        errors.contains("fix: write `max_worker_memory = \"512MiB\"`"),
        "{errors}"
    );
    let (errors, _file) = file_errors("app = \"m:a\"\nmax_worker_memory = -1\n");
    assert!(
        errors.contains("`max_worker_memory` must be a size of zero or more, got -1"),
        "{errors}"
    );
    let (errors, _file) = file_errors("app = \"m:a\"\nmax_worker_memory = 1.5\n");
    assert!(
        errors.contains("`max_worker_memory` must be a size such as \"512MiB\", got a float 1.5"),
        "{errors}"
    );
}

#[test]
fn max_worker_lifetime_zero_means_off() {
    let lifetime = |v: &str| with(&["--max-worker-lifetime", v]).map(|c| c.max_worker_lifetime);
    assert_eq!(lifetime("6h"), Ok(Some(Duration::from_secs(6 * 3600))));
    assert_eq!(lifetime("0"), Ok(None));
    assert_eq!(lifetime("0s"), Ok(None));
    assert!(lifetime("25h").unwrap_err().contains("must be at most 24h"));
    assert!(lifetime("soon")
        .unwrap_err()
        .contains("`max_worker_lifetime` must be a duration"));
    let jitter =
        |v: &str| with(&["--max-worker-lifetime-jitter", v]).map(|c| c.max_worker_lifetime_jitter);
    assert_eq!(jitter("0"), Ok(Duration::ZERO));
    assert_eq!(jitter("10m"), Ok(Duration::from_secs(600)));
}

#[test]
fn memory_check_interval_is_at_least_100ms() {
    let interval = |v: &str| with(&["--memory-check-interval", v]).map(|c| c.memory_check_interval);
    assert_eq!(interval("100ms"), Ok(Duration::from_millis(100)));
    assert_eq!(interval("1"), Ok(Duration::from_secs(1)));
    let error = interval("50ms").unwrap_err();
    assert!(
        error.contains("`memory_check_interval` must be at least 100ms, got 50ms"),
        "{error}"
    );
    assert!(
        error.contains("fix: write `--memory-check-interval 5s`"),
        "{error}"
    );
    assert!(interval("0")
        .unwrap_err()
        .contains("must be at least 100ms, got 0"));
}

#[test]
fn operations_keys_accept_their_forms() {
    use crate::config::{BindSpec, ReadyMin};
    let config = with(&["--admin-bind", "[::1]:9191", "--ready-min", "3"]).expect("valid");
    let admin = BindSpec::Tcp {
        host: "::1".into(),
        port: 9191,
    };
    assert_eq!(config.admin_bind, Some(admin));
    assert_eq!(config.ready_min, ReadyMin::AtLeast(3.try_into().unwrap()));
    let config = with(&["--admin-bind", "unix:admin.sock", "--ready-min", "all"]).expect("valid");
    assert_eq!(config.admin_bind, Some(BindSpec::Unix("admin.sock".into())));
    assert_eq!(config.ready_min, ReadyMin::All);
    let config = with(&["--control-socket", "/run/h.sock"]).expect("valid");
    assert_eq!(config.control_socket, Some("/run/h.sock".into()));
}

#[test]
fn operations_keys_reject_with_a_fix() {
    let cases = [
        (
            &["--admin-bind", "fd://3"][..],
            "`admin_bind` cannot be an inherited socket (fd://3)",
        ),
        (
            &["--admin-bind", "9191"],
            "`admin_bind` entry \"9191\" has no host",
        ),
        (
            &["--ready-min", "0"],
            "`ready_min` must be at least 1, got 0",
        ),
        (
            &["--ready-min", "most"],
            "`ready_min` must be a whole number or \"all\"",
        ),
        (
            &["--control-socket", ""],
            "`control_socket` must be a non-empty string",
        ),
    ];
    for (flags, expected) in cases {
        let error = with(flags).expect_err(expected);
        assert!(error.contains(expected), "{flags:?}: {error}");
    }
    let long = format!("/{}", "x".repeat(200));
    let error = with(&["--control-socket", &long]).expect_err("too long");
    assert!(
        error.contains("longer than a unix socket address holds"),
        "{error}"
    );
    let file = ConfigFile::new("app = \"m:a\"\nadmin_bind = 9191\n");
    let errors = load_err(&file.args(&[]), &[]).to_string();
    assert!(
        errors.contains("`admin_bind` must be an address string or \"off\", got an integer 9191"),
        "{errors}"
    );
}
