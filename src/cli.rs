//! The command line, shaped like gunicorn's: `herdsman [OPTIONS] [APP]` runs, `herdsman check
//! [OPTIONS] [APP]` validates and prints the effective configuration without starting anything,
//! and `herdsman ctl COMMAND` talks to a running master (its arguments live in `ops::ctl`).
//!
//! clap only handles structure here. Every value is kept raw (`Option<String>`, or an empty `Vec`
//! for repeatable flags) so that "not given" stays distinguishable from "given", and so that bad
//! values are reported by the config validator together with every other problem, with a fix.
//! Boolean switches are `Option<bool>` too: `--factory` means `Some(true)`, absence `None`, so a
//! flag never gets OR-merged into what the file or the environment said.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// A pre-fork process manager for Python WSGI and ASGI applications.
///
/// Settings come from a TOML file (--config or HERDSMAN_CONFIG), then HERDSMAN_* environment
/// variables, then these flags; later sources win, key by key.
#[derive(Parser, Debug)]
#[command(
    name = "herdsman",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the configuration and print the effective one; start nothing.
    Check(RunArgs),
    /// Talk to a running master: status, reload, scale N, stop, quit, drain, undrain.
    Ctl(crate::ops::CtlArgs),
}

impl Cli {
    /// The run options, whether given at the top level or after `check`.
    pub fn run_args(&self) -> &RunArgs {
        match &self.command {
            Some(Command::Check(args)) => args,
            Some(Command::Ctl(_)) | None => &self.run,
        }
    }

    /// Whether this invocation only validates (`herdsman check`).
    pub fn is_check(&self) -> bool {
        matches!(self.command, Some(Command::Check(_)))
    }
}

/// Everything that configures a run. `None` / empty means "not given on the command line".
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// The application, `module:attr` (e.g. `myproject.asgi:application`); `module:factory()`
    /// calls a factory. Required here, in the file (`app = ...`) or in HERDSMAN_APP.
    #[arg(value_name = "APP")]
    pub app: Option<String>,

    /// TOML configuration file [default: none; env HERDSMAN_CONFIG].
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Number of workers, or `auto` for one per usable CPU [default: auto].
    #[arg(
        short = 'w',
        long,
        value_name = "N|auto",
        allow_negative_numbers = true
    )]
    pub workers: Option<String>,

    /// Address to listen on: HOST:PORT, [V6]:PORT, unix:PATH or fd://N; repeatable
    /// [default: 127.0.0.1:8000].
    #[arg(short = 'b', long, value_name = "ADDR")]
    pub bind: Vec<String>,

    /// Application interface: auto, asgi or wsgi [default: auto].
    #[arg(long, value_name = "auto|asgi|wsgi")]
    pub interface: Option<String>,

    /// How workers are started: exec (a fresh interpreter each) or zygote (forked from a warm
    /// Python process per generation; see docs/zygote.md) [default: exec].
    #[arg(long, value_name = "exec|zygote")]
    pub spawn: Option<String>,

    /// With `--spawn zygote`: import the app once in the zygote, before forking the workers
    /// (memory shared copy-on-write, fast replacements) [default: no].
    #[arg(
        long,
        num_args = 0,
        default_missing_value = "true",
        overrides_with = "no_preload"
    )]
    pub preload: Option<bool>,

    /// Import the app in each worker after the fork (undoes `preload = true`).
    #[arg(
        long,
        num_args = 0,
        default_missing_value = "true",
        overrides_with = "preload"
    )]
    pub no_preload: Option<bool>,

    /// Call APP to get the application (an app factory) [default: no].
    #[arg(
        long,
        num_args = 0,
        default_missing_value = "true",
        overrides_with = "no_factory"
    )]
    pub factory: Option<bool>,

    /// Use APP as the application itself, not a factory (undoes `factory = true`).
    #[arg(
        long,
        num_args = 0,
        default_missing_value = "true",
        overrides_with = "factory"
    )]
    pub no_factory: Option<bool>,

    /// Python interpreter [default: the python beside herdsman, else $VIRTUAL_ENV/bin/python, else python3 on PATH].
    #[arg(long, value_name = "PATH")]
    pub python: Option<String>,

    /// Directory the workers run in and import the app from [default: current directory].
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<String>,

    /// Extra environment variable for the workers; repeatable [default: none].
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Kill a worker silent for this long, e.g. 30s, 500ms, 2m; bare number = seconds
    /// [default: 30s].
    #[arg(
        short = 't',
        long,
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    pub timeout: Option<String>,

    /// Time a stopping worker gets before SIGKILL [default: 30s].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub graceful_timeout: Option<String>,

    /// On SIGTERM, keep serving this long while /readyz answers 503 (so load balancers
    /// deregister the instance), then stop gracefully; 0 = stop at once [default: 0].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub drain_before_stop: Option<String>,

    /// Time a new worker gets to import the app and become ready [default: 60s].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub boot_timeout: Option<String>,

    /// Consecutive boot failures before giving up at first start (or rolling a reload back) [default: 3].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub startup_attempts: Option<String>,

    /// Extra workers that may boot at once while replacing others, 1 to 64 [default: 1].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_surge: Option<String>,

    /// Recycle a worker after this many requests; 0 = never [default: 0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_requests: Option<String>,

    /// Up to this many extra requests per worker, drawn at random [default: 0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_requests_jitter: Option<String>,

    /// Recycle a worker whose memory (PSS) stays above this, e.g. 512MiB, 1GB; 0 or off = never
    /// [default: off].
    #[arg(long, value_name = "SIZE", allow_negative_numbers = true)]
    pub max_worker_memory: Option<String>,

    /// Recycle a worker this long after it became ready, e.g. 6h; 0 = never [default: 0].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub max_worker_lifetime: Option<String>,

    /// Up to this much extra lifetime per worker, drawn at random [default: 0].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub max_worker_lifetime_jitter: Option<String>,

    /// How often worker memory is sampled for --max-worker-memory, at least 100ms
    /// [default: 5s].
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true)]
    pub memory_check_interval: Option<String>,

    /// listen(2) backlog, 1 to 65535 [default: 2048].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub backlog: Option<String>,

    /// trace, debug, info, warning, error or critical [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Master log format: text or json [default: text].
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<String>,

    /// Write the master's log to FILE (appending) instead of stderr; SIGUSR1 reopens it
    /// [default: stderr].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<String>,

    /// Log one line per request [default: on].
    #[arg(
        long,
        num_args = 0,
        default_missing_value = "true",
        overrides_with = "no_access_log"
    )]
    pub access_log: Option<bool>,

    /// Do not log requests.
    #[arg(
        long,
        num_args = 0,
        default_missing_value = "true",
        overrides_with = "access_log"
    )]
    pub no_access_log: Option<bool>,

    /// Capture the workers' stdout and stderr into the master's log, each line prefixed with
    /// `[worker ID pid PID]` [default: off: workers write to the master's stdout/stderr].
    #[arg(
        long,
        num_args = 0,
        default_missing_value = "true",
        overrides_with = "no_capture_output"
    )]
    pub capture_output: Option<bool>,

    /// Let the workers write to the master's stdout and stderr directly.
    #[arg(
        long,
        num_args = 0,
        default_missing_value = "true",
        overrides_with = "capture_output"
    )]
    pub no_capture_output: Option<bool>,

    /// Write the master's pid to FILE at start, remove it at exit [default: none].
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: Option<String>,

    /// Run the workers as this user (name or uid); the master keeps its own [default: the
    /// master's user].
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,

    /// Run the workers with this group (name or gid) [default: the user's primary group].
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,

    /// The workers' umask, in octal, e.g. 027 or 0o027 [default: the master's].
    #[arg(short = 'm', long, value_name = "OCTAL")]
    pub umask: Option<String>,

    /// Control socket for `herdsman ctl` [default: $XDG_RUNTIME_DIR/herdsman-UID/PID.sock, or
    /// under /tmp].
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<String>,

    /// Serve /metrics, /livez and /readyz on HOST:PORT or unix:PATH; off = none [default: off].
    #[arg(long, value_name = "ADDR")]
    pub admin_bind: Option<String>,

    /// Ready workers /readyz needs: a number, or all = the target count [default: all].
    #[arg(long, value_name = "N|all", allow_negative_numbers = true)]
    pub ready_min: Option<String>,
}

impl RunArgs {
    /// `--factory` / `--no-factory` resolved: the last one given wins; `None` if neither.
    pub fn factory_flag(&self) -> Option<bool> {
        resolve_pair(self.factory, self.no_factory)
    }

    /// `--preload` / `--no-preload` resolved, as `factory_flag`.
    pub fn preload_flag(&self) -> Option<bool> {
        resolve_pair(self.preload, self.no_preload)
    }

    /// `--access-log` / `--no-access-log` resolved: the last one given wins; `None` if neither.
    pub fn access_log_flag(&self) -> Option<bool> {
        resolve_pair(self.access_log, self.no_access_log)
    }

    /// `--capture-output` / `--no-capture-output` resolved, as `access_log_flag`.
    pub fn capture_output_flag(&self) -> Option<bool> {
        resolve_pair(self.capture_output, self.no_capture_output)
    }
}

/// clap's `overrides_with` leaves at most one of a `--x` / `--no-x` pair set.
fn resolve_pair(yes: Option<bool>, no: Option<bool>) -> Option<bool> {
    match (yes, no) {
        (Some(true), _) => Some(true),
        (_, Some(true)) => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let argv = std::iter::once("herdsman").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect("valid command line")
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn top_level_run_options() {
        let cli = parse(&["-w", "2", "-b", "a:1", "--bind", "b:2", "app:app"]);
        assert!(!cli.is_check());
        let run = cli.run_args();
        assert_eq!(run.workers.as_deref(), Some("2"));
        assert_eq!(run.bind, ["a:1", "b:2"]);
        assert_eq!(run.app.as_deref(), Some("app:app"));
    }

    #[test]
    fn check_subcommand_takes_the_same_options() {
        let cli = parse(&["check", "-c", "f.toml", "app:app"]);
        assert!(cli.is_check());
        let run = cli.run_args();
        assert_eq!(run.config, Some(PathBuf::from("f.toml")));
        assert_eq!(run.app.as_deref(), Some("app:app"));
    }

    #[test]
    fn ctl_takes_its_own_options_and_a_command() {
        use crate::ops::CtlCommand;
        let cli = parse(&["ctl", "--socket", "/s.sock", "--json", "scale", "3"]);
        let Some(Command::Ctl(ctl)) = cli.command else {
            panic!("ctl parsed as {:?}", cli.command);
        };
        assert_eq!(ctl.socket, Some(PathBuf::from("/s.sock")));
        assert!(ctl.json);
        assert_eq!(ctl.command, CtlCommand::Scale { workers: 3 });
        let argv = ["herdsman", "ctl", "scale", "0"];
        assert!(Cli::try_parse_from(argv).is_err(), "at least one worker");
    }

    #[test]
    fn switches_are_absent_unless_given() {
        let run = parse(&["app:app"]).run;
        assert_eq!(run.factory_flag(), None);
        assert_eq!(run.access_log_flag(), None);
        assert_eq!(run.capture_output_flag(), None);
        let run = parse(&["--capture-output", "--no-capture-output"]).run;
        assert_eq!(run.capture_output_flag(), Some(false));
    }

    #[test]
    fn last_switch_of_a_pair_wins() {
        let run = parse(&["--access-log", "--no-access-log", "--factory"]).run;
        assert_eq!(run.access_log_flag(), Some(false));
        assert_eq!(run.factory_flag(), Some(true));
        let run = parse(&["--no-access-log", "--access-log", "--no-factory"]).run;
        assert_eq!(run.access_log_flag(), Some(true));
        assert_eq!(run.factory_flag(), Some(false));
    }

    #[test]
    fn bad_values_are_left_for_the_validator() {
        let run = parse(&["-w", "abc", "--timeout", "soon", "-e", "NOEQUALS"]).run;
        assert_eq!(run.workers.as_deref(), Some("abc"));
        assert_eq!(run.timeout.as_deref(), Some("soon"));
        assert_eq!(run.env, ["NOEQUALS"]);
        let run = parse(&["--max-requests", "-1", "--max-worker-memory", "512M"]).run;
        assert_eq!(run.max_requests.as_deref(), Some("-1"));
        assert_eq!(run.max_worker_memory.as_deref(), Some("512M"));
        let run = parse(&["-p", "x.pid", "-u", "nobody", "-g", "65534", "-m", "027"]).run;
        assert_eq!(run.pidfile.as_deref(), Some("x.pid"));
        assert_eq!(run.user.as_deref(), Some("nobody"));
        assert_eq!(run.group.as_deref(), Some("65534"));
        assert_eq!(run.umask.as_deref(), Some("027"));
        let run = parse(&["--ready-min", "-1", "--admin-bind", "8000"]).run;
        assert_eq!(run.ready_min.as_deref(), Some("-1"));
        assert_eq!(run.admin_bind.as_deref(), Some("8000"));
    }
}
