//! The command line, shaped like gunicorn's: `herdsman [OPTIONS] [APP]` runs, `herdsman check
//! [OPTIONS] [APP]` validates and prints the effective configuration without starting anything,
//! and `herdsman ctl COMMAND` talks to a running master (its arguments live in `ops::ctl`).
//!
//! clap only handles structure here. The run flags themselves ([`RunArgs`]) are the command-line
//! layer of the configuration and live in `config::flags`, which also says how values are kept
//! raw and how `--x` / `--no-x` pairs resolve; this file wraps them in the full command line and
//! is the top of the crate's layers (it also reaches `ops` for `ctl`).

use clap::{Parser, Subcommand};

pub use crate::config::RunArgs;

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

/// `herdsman check`'s options: the run options, and how far to check.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Validate the configuration only: do not run the interpreter, import the app or try the
    /// binds (for a configuration meant for another machine).
    #[arg(long)]
    pub config_only: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the configuration and print the effective one, then run what a start would on
    /// this machine (the interpreter, the engine, the app's import, the binds); start nothing.
    Check(CheckArgs),
    /// Talk to a running master: status, reload, scale N, stop, quit, drain, undrain.
    Ctl(crate::ops::CtlArgs),
}

impl Cli {
    /// The run options, whether given at the top level or after `check`.
    pub fn run_args(&self) -> &RunArgs {
        match &self.command {
            Some(Command::Check(args)) => &args.run,
            Some(Command::Ctl(_)) | None => &self.run,
        }
    }

    /// Whether this invocation only validates (`herdsman check`).
    pub fn is_check(&self) -> bool {
        matches!(self.command, Some(Command::Check(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
    fn ctl_options_may_follow_the_command() {
        use crate::ops::CtlCommand;
        let cli = parse(&["ctl", "scale", "3", "--json", "--socket", "/s.sock"]);
        let Some(Command::Ctl(ctl)) = cli.command else {
            panic!("ctl parsed as {:?}", cli.command);
        };
        assert!(ctl.json);
        assert_eq!(ctl.socket, Some(PathBuf::from("/s.sock")));
        assert_eq!(ctl.command, CtlCommand::Scale { workers: 3 });
        let cli = parse(&["ctl", "reload", "--timeout", "1m"]);
        let Some(Command::Ctl(ctl)) = cli.command else {
            panic!("ctl parsed as {:?}", cli.command);
        };
        assert_eq!(ctl.timeout.as_deref(), Some("1m"));
        for command in ["status", "reload", "stop", "quit", "drain", "undrain"] {
            let cli = parse(&["ctl", command, "--json"]);
            assert!(
                matches!(cli.command, Some(Command::Ctl(ctl)) if ctl.json),
                "{command}"
            );
        }
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
