//! The `herdsman` binary: parse the command line, install the signal handlers first, load the
//! configuration, start logging, run the master, and map the outcome to a documented exit code.

use clap::Parser;

use herdsman::cli::{CheckArgs, Cli, Command, RunArgs};
use herdsman::errors::error_chain;
use herdsman::master;
use herdsman::sys::environ::env_snapshot;
use herdsman::sys::signals::Signals;
use herdsman::worker::{engine_lib, python};
use herdsman::{config, exit, logging, upgrade};

fn main() {
    std::process::exit(real_main());
}

fn real_main() -> i32 {
    // Before a process title can overwrite them: an in-place upgrade re-executes with these.
    herdsman::sys::proctitle::original_args();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    match cli.command {
        Some(Command::Check(args)) => check(&args),
        Some(Command::Ctl(args)) => herdsman::ops::ctl(&args),
        // gunicorn's --check-config and --print-config: herdsman check (a CI script using them
        // must not start a server). The first imports the app, as gunicorn's does.
        None if cli.run.gunicorn_compat.check_config || cli.run.gunicorn_compat.print_config => {
            let mut run = cli.run;
            let config_only = !run.gunicorn_compat.check_config;
            run.gunicorn_compat.check_config = false;
            run.gunicorn_compat.print_config = false;
            check(&CheckArgs { config_only, run })
        }
        None => serve(cli.run),
    }
}

/// Validates the configuration and prints the effective one, then the interpreter it resolves to
/// and, for the native engine, its library; then, unless `--config-only`, runs what a start would
/// meet on this machine (`herdsman::check`) and exits with the code a start would.
fn check(args: &CheckArgs) -> i32 {
    // Run by a master about to upgrade to this binary: can we read its handover? Such a check
    // validates the configuration only: the binds are the running master's.
    let upgrading = std::env::var_os(upgrade::CHECK_VAR).is_some();
    if let Err(e) = upgrade::take_check_request() {
        eprintln!("herdsman: {e}");
        return exit::USAGE;
    }
    match config::load(&args.run, &env_snapshot()) {
        Ok(config) => {
            if let Err(e) = master::check_bounds(&config) {
                eprintln!("herdsman: the configuration is invalid:\n  {e}");
                return exit::USAGE;
            }
            for warning in config::file_warnings(&config) {
                eprintln!("herdsman: warning: {warning}");
            }
            let engine_lib = match native_engine_lib(config.engine) {
                Ok(found) => found,
                Err(e) => {
                    eprintln!("herdsman: {e}");
                    return exit::PYTHON_ENV;
                }
            };
            print!("{}", config::render(&config));
            print_python(&config);
            if let Some((path, source)) = engine_lib {
                let (path, source) = (path.display(), source.describe());
                println!("# the native engine's library resolves to {path} ({source})");
            }
            if args.config_only || upgrading {
                return exit::OK;
            }
            check_environment(&config)
        }
        Err(errors) => {
            eprintln!("herdsman: the configuration is invalid:\n{errors}");
            exit::USAGE
        }
    }
}

/// The probes of `herdsman::check`: their findings as comments after the configuration, each
/// problem on stderr with its fix, and the exit code of the first (what a start would stop at).
fn check_environment(config: &config::Config) -> i32 {
    let findings = herdsman::check::environment(config, &env_snapshot());
    for line in &findings.lines {
        println!("{line}");
    }
    for problem in &findings.problems {
        eprintln!("herdsman: check: {}", problem.message);
        if let Some(traceback) = &problem.traceback {
            eprintln!("{}", traceback.trim_end());
        }
    }
    if !findings.problems.is_empty() {
        let code = findings.exit_code();
        let name = exit::name(code);
        eprintln!(
            "herdsman: check: a start would fail (exit {code}, {name}); see docs/exit-codes.md"
        );
    }
    findings.exit_code()
}

/// The interpreter serving would use, as a comment after the configuration. One that cannot be
/// found is a warning, not a failure: the configuration may be meant for another machine.
fn print_python(config: &config::Config) {
    match python::resolve_with_source(config.python.as_deref(), &env_snapshot()) {
        Ok((path, source)) => {
            println!(
                "# python resolves to {} ({})",
                path.display(),
                source.describe()
            );
        }
        Err(e) => {
            println!(
                "# python resolves to nothing: serving would exit with code {}",
                exit::PYTHON_ENV
            );
            eprintln!("herdsman: warning: {e}");
        }
    }
}

/// For `engine = "native"`, where its library is and which rule found it; `None` for uvicorn.
/// Unlike a missing interpreter, a missing library fails the check, with the code serving would
/// exit with: it ships with this very herdsman (beside the binary, or in its wheel), so its
/// absence is a broken install here, not a configuration meant for another machine.
fn native_engine_lib(
    engine: config::Engine,
) -> Result<Option<(std::path::PathBuf, engine_lib::Source)>, engine_lib::EngineLibError> {
    match engine {
        config::Engine::Uvicorn => Ok(None),
        config::Engine::Native => engine_lib::locate(&env_snapshot()).map(Some),
    }
}

fn serve(args: RunArgs) -> i32 {
    // Before anything else, so a signal is handled from the first instant (PID 1 included).
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("herdsman: {}", error_chain(&e));
            return exit::FAILURE;
        }
    };
    // Exec'd in place by an upgrading master (SIGUSR2): take over what it handed over.
    if let Some(intake) = upgrade::take_handover() {
        let e = match intake.handover {
            Ok(handover) => {
                return master::resume(args, signals, handover, intake.previous, intake.rolled_back)
            }
            Err(e) => e,
        };
        let reason = error_chain(&e);
        if let Some(previous) = intake.previous {
            eprintln!("herdsman: in-place upgrade failed: {reason}; executing the previous binary again, which keeps the workers");
            // The handed-over fds are still inheritable: the handover was not taken.
            let errno = upgrade::roll_back(previous, &[], &reason);
            eprintln!("herdsman: could not execute the previous binary again: {errno}");
        }
        eprintln!(
            "herdsman: in-place upgrade failed: {reason}; exiting (the workers exit with the master)"
        );
        return exit::FAILURE;
    }
    let config = match config::load(&args, &env_snapshot()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("herdsman: the configuration is invalid:\n{errors}");
            return exit::USAGE;
        }
    };
    if let Err(e) = master::check_bounds(&config) {
        eprintln!("herdsman: the configuration is invalid:\n  {e}");
        return exit::USAGE;
    }
    if let Err(e) = logging::init(
        config.log_level,
        config.log_format,
        config.log_file.as_deref(),
    ) {
        eprintln!("herdsman: {}", error_chain(&e));
        return exit::USAGE;
    }
    master::start(args, config, signals)
}
