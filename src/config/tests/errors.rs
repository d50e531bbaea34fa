//! What the user reads when the configuration is wrong: origin (file and line, environment
//! variable, flag), key, problem and fix, for every problem at once.

use super::*;
use crate::config::ConfigError;

/// Replaces the temporary file's path with `herdsman.toml` so messages compare verbatim.
fn shown(errors: &str, file: &ConfigFile) -> String {
    errors.replace(file.path.to_str().unwrap(), "herdsman.toml")
}

#[test]
fn unknown_key_names_its_line_and_suggests_the_right_one() {
    let (errors, file) = file_errors("app = \"m:app\"\n\n# comment\ngraceful_timout = \"10s\"\n");
    assert_eq!(
        shown(&errors, &file),
        "file herdsman.toml, line 4: unknown key `graceful_timout`\n  \
         fix: did you mean `graceful_timeout`?"
    );
}

#[test]
fn unknown_key_without_a_close_match_lists_the_keys() {
    let (errors, _file) = file_errors("app = \"m:app\"\n[server]\nport = 1\n");
    assert!(errors.contains("line 2: unknown key `server`"), "{errors}");
    assert!(
        errors.contains("fix: remove it; the keys are: app, factory, workers"),
        "{errors}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "workers = \"four\"\nbind = [\"http://0.0.0.0:80\", 8000]\ntimout = 3\n\
                log_level = \"verbose\"\nbacklog = 0\n";
    let file = ConfigFile::new(text);
    let env_set = env(&[("HERDSMAN_TIMEOUT", "soon"), ("HERDSMAN_WORKRS", "2")]);
    let errors = load_err(
        &file.args(&["--interface", "asig", "-e", "NOEQUALS"]),
        &env_set,
    );
    let text = shown(&errors.to_string(), &file);
    for expected in [
        "file herdsman.toml, line 1: `workers` must be a whole number or \"auto\", got a string \"four\"",
        "file herdsman.toml, line 2: `bind` entry \"http://0.0.0.0:80\" has a URL scheme",
        "file herdsman.toml, line 2: `bind` entries must be strings, got an integer 8000",
        "file herdsman.toml, line 3: unknown key `timout`",
        "file herdsman.toml, line 4: `log_level` must be one of trace, debug, info, warning, error, critical, got a string \"verbose\"",
        "file herdsman.toml, line 5: `backlog` must be at least 1, got 0",
        "environment variable HERDSMAN_TIMEOUT: `timeout` must be a duration",
        "environment variable HERDSMAN_WORKRS is not a herdsman setting",
        "command line --interface: `interface` must be one of auto, asgi, wsgi, got a string \"asig\"",
        "command line --env: `env` entry \"NOEQUALS\" is not KEY=VALUE",
        "no application given",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(errors.errors().len(), 11, "{text}");
}

#[test]
fn recycling_problems_are_reported_with_the_others() {
    let file = ConfigFile::new("workers = 0\nmax_worker_memory = \"2 G\"\nmax_surge = 0\n");
    let env_set = env(&[("HERDSMAN_MAX_REQUESTS", "many")]);
    let errors = load_err(
        &file.args(&["--memory-check-interval", "10ms", "m:a"]),
        &env_set,
    );
    let text = shown(&errors.to_string(), &file);
    for expected in [
        "file herdsman.toml, line 1: `workers` must be at least 1, got 0",
        "file herdsman.toml, line 2: `max_worker_memory` has an unknown unit \"G\"",
        "fix: write `max_worker_memory = \"2GiB\"` or `max_worker_memory = \"2GB\"`",
        "file herdsman.toml, line 3: `max_surge` must be at least 1, got 0",
        "environment variable HERDSMAN_MAX_REQUESTS: `max_requests` must be a whole number",
        "fix: write `HERDSMAN_MAX_REQUESTS=1000`",
        "command line --memory-check-interval: `memory_check_interval` must be at least 100ms",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(errors.errors().len(), 5, "{text}");
}

#[test]
fn fixes_use_the_syntax_of_the_source() {
    let file = ConfigFile::new("app = \"m:app\"\nworkers = 0\n");
    let text = load_err(&file.args(&[]), &[]).to_string();
    assert!(
        text.contains("fix: write `workers = 4` or `workers = \"auto\"`"),
        "{text}"
    );
    let text = load_err(&args(&["m:a"]), &env(&[("HERDSMAN_WORKERS", "x")])).to_string();
    assert!(
        text.contains("fix: write `HERDSMAN_WORKERS=4` or `HERDSMAN_WORKERS=auto`"),
        "{text}"
    );
    let text = load_err(&args(&["-w", "abc", "m:a"]), &[]).to_string();
    assert!(
        text.contains("command line --workers: `workers` must be a whole number"),
        "{text}"
    );
    assert!(
        text.contains("fix: write `--workers 4` or `--workers auto`"),
        "{text}"
    );
}

#[test]
fn close_choices_are_suggested() {
    let text = load_err(&args(&["--interface", "asig", "m:a"]), &[]).to_string();
    assert!(text.ends_with("fix: write `--interface asgi`"), "{text}");
}

#[test]
fn an_unknown_engine_names_the_choices() {
    let text = load_err(&args(&["--engine", "nativ", "m:a"]), &[]).to_string();
    assert!(text.ends_with("fix: write `--engine native`"), "{text}");
    let env_set = env(&[("HERDSMAN_ENGINE", "gunicorn")]);
    let text = load_err(&args(&["m:a"]), &env_set).to_string();
    assert!(
        text.contains(
            "environment variable HERDSMAN_ENGINE: `engine` must be one of uvicorn, native, \
             got a string \"gunicorn\""
        ),
        "{text}"
    );
}

#[test]
fn request_path_flags_out_of_range_or_malformed_say_so() {
    let text = load_err(
        &args(&["--forwarded-allow-ips", "10.0.0.1,10.0.0/8", "m:a"]),
        &[],
    )
    .to_string();
    assert!(
        text.contains(
            "entry \"10.0.0/8\" is not an IP address, a network such as 10.0.0.0/8, or *"
        ),
        "{text}"
    );
    let text = load_err(&args(&["--limit-request-line", "9000", "m:a"]), &[]).to_string();
    assert!(
        text.contains("`limit_request_line` must be a whole number from 0 to 8190"),
        "{text}"
    );
    let text = load_err(&args(&["--ready-path", "healthz", "m:a"]), &[]).to_string();
    assert!(
        text.contains("fix: write `--ready-path /healthz`"),
        "{text}"
    );
    let text = load_err(&args(&["--root-path", "api/", "m:a"]), &[]).to_string();
    assert!(text.contains("fix: write `--root-path /api`"), "{text}");
    let text = load_err(&args(&["--keep-alive", "2h", "m:a"]), &[]).to_string();
    assert!(text.contains("`keep_alive` must be at most 1h"), "{text}");
}

#[test]
fn a_gunicorn_worker_class_is_taken_or_refused_with_what_to_do() {
    let ok = load_ok(&args(&["-k", "uvicorn.workers.UvicornWorker", "m:a"]), &[]);
    assert_eq!(ok.interface, crate::config::Interface::Asgi);
    let text = load_err(&args(&["-k", "gthread", "m:a"]), &[]).to_string();
    assert!(
        text.contains(
            "`worker_class` must be one of uvicorn's worker classes, got a string \"gthread\""
        ),
        "{text}"
    );
    assert!(
        text.contains("fix: herdsman has no worker classes: drop it"),
        "{text}"
    );
    let env_set = env(&[("HERDSMAN_INTERFACE", "wsgi")]);
    let text = load_err(
        &args(&["--worker-class", "uvicorn_worker.UvicornWorker", "m:a"]),
        &env_set,
    )
    .to_string();
    assert!(
        text.contains("`interface` is \"wsgi\", but worker_class uvicorn_worker.UvicornWorker is uvicorn's worker"),
        "{text}"
    );
}

#[test]
fn wrong_types_say_what_was_given() {
    let text = "app = \"m:app\"\nfactory = \"maybe\"\ntimeout = 2.5\nbind = 80\naccess_log = 1\n\
                env = \"A=1\"\nchdir = 5\nboot_timeout = 1979-05-27\n";
    let (errors, _file) = file_errors(text);
    for expected in [
        "line 2: `factory` must be true or false, got a string \"maybe\"",
        "line 3: `timeout` must be a duration such as \"30s\", \"500ms\" or \"1m\" (a bare number means seconds), got a float 2.5",
        "line 4: `bind` entries must be strings, got an integer 80",
        "line 5: `access_log` must be true or false, got an integer 1",
        "line 6: `env` must be a table of strings, got a string \"A=1\"",
        "line 7: `chdir` must be a non-empty string, got an integer 5",
        "line 8: `boot_timeout` must be a duration such as",
        "got a date-time 1979-05-27",
    ] {
        assert!(errors.contains(expected), "missing {expected:?} in:\n{errors}");
    }
}

#[test]
fn env_table_problems_point_at_the_variable() {
    let text = "app = \"m:app\"\n[env]\nGOOD = \"x\"\nPORT = 8000\n\"1BAD\" = \"y\"\n";
    let (errors, _file) = file_errors(text);
    assert!(
        errors.contains("line 4: `env.PORT` must be a string, got an integer 8000"),
        "{errors}"
    );
    assert!(errors.contains("fix: quote it: PORT = \"...\""), "{errors}");
    assert!(
        errors.contains("line 5: `env` variable name \"1BAD\" is not valid"),
        "{errors}"
    );
}

#[test]
fn multi_line_arrays_locate_each_entry() {
    let (errors, _file) = file_errors("app = \"m:app\"\nbind = [\n  \"a:1\",\n  \"b\",\n]\n");
    assert!(
        errors.contains("line 4: `bind` entry \"b\" has no port"),
        "{errors}"
    );
}

#[test]
fn toml_syntax_errors_give_line_and_column() {
    let (errors, file) = file_errors("app = \"m:app\"\nworkers = four\n");
    let errors = shown(&errors, &file);
    assert!(
        errors.starts_with("file herdsman.toml, line 2, column 11: invalid TOML: "),
        "{errors}"
    );
    assert!(!errors.contains("no application given"), "{errors}");
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let (errors, _file) = file_errors("app = \"m:app\"\nworkers = 2\nworkers = 3\n");
    assert!(errors.contains("line 3"), "{errors}");
}

#[test]
fn a_missing_file_says_where_its_name_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let named = env(&[("HERDSMAN_CONFIG", missing.to_str().unwrap())]);
    let errors = load_err(&args(&[]), &named);
    let text = errors.to_string();
    assert!(
        text.starts_with("environment variable HERDSMAN_CONFIG: cannot read the config file"),
        "{text}"
    );
    assert!(
        text.contains("fix: check the path given with --config or HERDSMAN_CONFIG"),
        "{text}"
    );
    assert!(
        matches!(errors.errors(), [ConfigError::ReadFile { .. }]),
        "{text}"
    );
}

#[test]
fn a_missing_app_says_how_to_give_it() {
    let text = load_err(&args(&[]), &[]).to_string();
    assert_eq!(
        text,
        "no application given\n  fix: name it as `module:attr`: as the APP argument \
         (herdsman myproject.asgi:app), as `app = \"myproject.asgi:app\"` in the config file, \
         or in HERDSMAN_APP"
    );
}

#[test]
fn an_unknown_environment_variable_suggests_the_right_one() {
    let text = load_err(&args(&["m:a"]), &env(&[("HERDSMAN_WORKER", "2")])).to_string();
    assert_eq!(
        text,
        "environment variable HERDSMAN_WORKER is not a herdsman setting\n  \
         fix: did you mean HERDSMAN_WORKERS? otherwise unset HERDSMAN_WORKER"
    );
}

#[test]
fn factory_false_contradicts_parentheses() {
    let text = load_err(&args(&["--no-factory", "m:create()"]), &[]).to_string();
    assert!(
        text.starts_with("command line --no-factory: `factory` is false"),
        "{text}"
    );
}

#[test]
fn paths_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let (file, gone) = (file.to_str().unwrap(), dir.path().join("gone"));
    let gone = gone.to_str().unwrap();
    let text = load_err(&args(&["--chdir", file, "m:a"]), &[]).to_string();
    assert!(
        text.contains(&format!("`chdir` {file} is not a directory")),
        "{text}"
    );
    let text = load_err(&args(&["--chdir", gone, "--python", gone, "m:a"]), &[]).to_string();
    assert!(
        text.contains(&format!("`chdir` {gone} does not exist")),
        "{text}"
    );
    assert!(
        text.contains(&format!("`python` {gone} does not exist")),
        "{text}"
    );
    let dir_path = dir.path().to_str().unwrap();
    let text = load_err(&args(&["--python", dir_path, "m:a"]), &[]).to_string();
    assert!(text.contains("is not a file"), "{text}");
}

#[test]
fn overridden_bad_values_are_not_reported() {
    let file = ConfigFile::new("app = \"m:app\"\nworkers = \"four\"\n");
    load_ok(&file.args(&["-w", "2"]), &[]);
}

#[test]
fn a_setting_below_the_env_table_is_explained() {
    let (errors, _file) = file_errors("app = \"m:app\"\n[env]\nA = \"1\"\nworkers = 4\n");
    assert!(
        errors.contains("line 4: `env.workers` must be a string, got an integer 4"),
        "{errors}"
    );
    assert!(
        errors.contains("fix: `workers` is a herdsman key that landed in the [env] table"),
        "{errors}"
    );
}

/// The example in docs/configuration.md, verbatim: keep the two in step.
#[test]
fn the_documented_example_is_verbatim() {
    let file = ConfigFile::new(
        "app = \"myproject.asgi:application\"\nworkers = \"four\"\ngraceful_timout = \"10s\"\n\
         bind = [\"http://0.0.0.0:8000\", \"8001\"]\n\n[env]\nPORT = 8000\n",
    );
    let env_set = env(&[("HERDSMAN_WORKER", "2"), ("HERDSMAN_INTERFACE", "asig")]);
    let errors = load_err(
        &file.args(&["--timeout", "soon", "--log-level", "verbos"]),
        &env_set,
    );
    let expected = r#"file herdsman.toml, line 2: `workers` must be a whole number or "auto", got a string "four"
  fix: write `workers = 4` or `workers = "auto"`
file herdsman.toml, line 3: unknown key `graceful_timout`
  fix: did you mean `graceful_timeout`?
file herdsman.toml, line 4: `bind` entry "http://0.0.0.0:8000" has a URL scheme (http://); bind takes an address, not a URL
  fix: write `bind = "0.0.0.0:8000"`
file herdsman.toml, line 4: `bind` entry "8001" has no host (127.0.0.1 listens on this machine only, 0.0.0.0 on every interface)
  fix: write `bind = "127.0.0.1:8001"` or `bind = "0.0.0.0:8001"`
file herdsman.toml, line 7: `env.PORT` must be a string, got an integer 8000
  fix: quote it: PORT = "..."
environment variable HERDSMAN_INTERFACE: `interface` must be one of auto, asgi, wsgi, got a string "asig"
  fix: write `HERDSMAN_INTERFACE=asgi`
environment variable HERDSMAN_WORKER is not a herdsman setting
  fix: did you mean HERDSMAN_WORKERS? otherwise unset HERDSMAN_WORKER
command line --timeout: `timeout` must be a duration such as "30s", "500ms" or "1m" (a bare number means seconds), got a string "soon"
  fix: write `--timeout 30s` or `--timeout 500ms`
command line --log-level: `log_level` must be one of trace, debug, info, warning, error, critical, got a string "verbos"
  fix: write `--log-level info`"#;
    assert_eq!(shown(&errors.to_string(), &file), expected);
}
