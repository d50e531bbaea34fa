//! The logging and process-hygiene keys through the whole loading path: `log_file`,
//! `capture_output`, `pidfile`, `user`, `group`, `umask`.

use super::*;
use crate::config::SpawnMode;

#[test]
fn files_need_an_existing_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("master.log");
    let pid = dir.path().join("herdsman.pid");
    let config = load_ok(
        &args(&[
            "--log-file",
            log.to_str().unwrap(),
            "--pid",
            pid.to_str().unwrap(),
            "m:a",
        ]),
        &[],
    );
    assert_eq!(config.log_file.as_deref(), Some(log.as_path()));
    assert_eq!(config.pidfile.as_deref(), Some(pid.as_path()));
    let missing = dir.path().join("nope/master.log");
    let errors = load_err(
        &args(&["--log-file", missing.to_str().unwrap(), "m:a"]),
        &[],
    )
    .to_string();
    assert!(
        errors.contains("command line --log-file: `log_file`")
            && errors.contains("is in a directory that does not exist"),
        "{errors}"
    );
    let errors = load_err(&args(&["--pid", dir.path().to_str().unwrap(), "m:a"]), &[]).to_string();
    assert!(
        errors.contains("command line --pid: `pidfile`") && errors.contains("is a directory"),
        "{errors}"
    );
}

#[test]
fn capture_output_is_a_switch_the_command_line_can_undo() {
    let file = ConfigFile::new("app = \"m:a\"\ncapture_output = true\n");
    assert!(load_ok(&file.args(&[]), &[]).capture_output);
    assert!(!load_ok(&file.args(&["--no-capture-output"]), &[]).capture_output);
    let on = env(&[("HERDSMAN_CAPTURE_OUTPUT", "yes")]);
    assert!(load_ok(&args(&["m:a"]), &on).capture_output);
    assert!(!load_ok(&args(&["m:a"]), &[]).capture_output);
}

#[test]
fn spawn_and_preload_go_through_every_layer() {
    let defaults = load_ok(&args(&["m:a"]), &[]);
    assert_eq!((defaults.spawn, defaults.preload), (SpawnMode::Exec, false));
    let file = ConfigFile::new("app = \"m:a\"\nspawn = \"zygote\"\npreload = true\n");
    let config = load_ok(&file.args(&[]), &[]);
    assert_eq!((config.spawn, config.preload), (SpawnMode::Zygote, true));
    let config = load_ok(&file.args(&["--spawn", "exec", "--no-preload"]), &[]);
    assert_eq!((config.spawn, config.preload), (SpawnMode::Exec, false));
    let vars = env(&[("HERDSMAN_SPAWN", "zygote"), ("HERDSMAN_PRELOAD", "on")]);
    let config = load_ok(&args(&["m:a"]), &vars);
    assert_eq!((config.spawn, config.preload), (SpawnMode::Zygote, true));
    let errors = load_err(&args(&["--spawn", "fork", "m:a"]), &[]).to_string();
    assert!(
        errors.contains("`spawn`") && errors.contains("zygote"),
        "{errors}"
    );
}

#[test]
fn preload_without_the_zygote_is_a_warning() {
    let config = load_ok(&args(&["--preload", "m:a"]), &[]);
    let warnings = crate::config::file_warnings(&config);
    assert!(
        warnings.iter().any(|w| w.contains("preload has no effect")),
        "{warnings:?}"
    );
    let config = load_ok(&args(&["--preload", "--spawn", "zygote", "m:a"]), &[]);
    assert!(crate::config::file_warnings(&config).is_empty());
}

#[test]
fn umask_is_an_octal_string() {
    let umask = |v: &str| load(&args(&["--umask", v, "m:a"]), &[]).map(|c| c.umask);
    assert_eq!(umask("027").ok(), Some(Some(0o027)));
    assert_eq!(umask("0o077").ok(), Some(Some(0o077)));
    let errors = umask("0999").unwrap_err().to_string();
    assert!(errors.contains("`umask` must be octal digits"), "{errors}");
    let (errors, _file) = file_errors("app = \"m:a\"\numask = 22\n");
    assert!(
        errors
            .contains("line 2: `umask` must be an octal string such as \"027\", got an integer 22"),
        "{errors}"
    );
    assert!(errors.contains("fix: write `umask = \"027\"`"), "{errors}");
    let file = ConfigFile::new("app = \"m:a\"\numask = 0o027\n");
    assert!(
        load(&file.args(&[]), &[]).is_err(),
        "a TOML octal integer is refused too"
    );
}

#[test]
fn unknown_accounts_are_reported_with_the_others() {
    let file = ConfigFile::new("app = \"m:a\"\nuser = \"no-such-user-herdsman\"\nworkers = 0\n");
    let env_set = env(&[("HERDSMAN_GROUP", "no-such-group-herdsman")]);
    let errors = load_err(&file.args(&[]), &env_set);
    let text = errors.to_string();
    for expected in [
        "line 2: `user` names no user on this system, got \"no-such-user-herdsman\"",
        "environment variable HERDSMAN_GROUP: `group` names no group on this system",
        "line 3: `workers` must be at least 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn a_bare_uid_needs_a_group() {
    let errors = load_err(&args(&["--user", "4000000000", "m:a"]), &[]).to_string();
    assert!(
        errors.contains("`user` is uid 4000000000, which has no passwd entry")
            && errors.contains("set `group` too"),
        "{errors}"
    );
}

/// Root may hand the workers any identity; the supplementary groups are resolved at load.
#[test]
fn root_resolves_the_workers_identity() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (a non-root master may only name itself)");
        return;
    }
    let config = load_ok(&args(&["-u", "root", "-g", "4242", "m:a"]), &[]);
    let user = config.user.expect("user");
    assert_eq!((user.uid, user.gid), (0, Some(0)));
    assert!(user.groups.contains(&4242), "{:?}", user.groups);
    assert_eq!(config.group.map(|g| g.gid), Some(4242));
    let config = load_ok(&args(&["-u", "4000000000", "-g", "7", "m:a"]), &[]);
    assert_eq!(config.user.expect("user").groups, vec![7]);
}
