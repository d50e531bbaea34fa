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
fn durations_reject_nonsense_zero_and_huge() {
    for bad in ["soon", "-5", "1.5", "", "30 parsecs"] {
        let error = timeout(bad).expect_err(bad);
        assert!(
            error.contains("must be a duration such as"),
            "{bad}: {error}"
        );
    }
    for zero in ["0", "0s"] {
        assert!(timeout(zero)
            .expect_err(zero)
            .contains("must be longer than zero"));
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
