//! Tests of the whole loading path (`load`, `render`) through real files, environment snapshots
//! and parsed command lines. Parsers with no I/O (bind, app, keys) test themselves in place.

mod errors;
mod hygiene;
mod precedence;
mod render;
mod values;

use super::{load, Config, ConfigErrors};
use crate::cli::{Cli, RunArgs};
use clap::Parser;
use std::path::PathBuf;
use tempfile::TempDir;

/// A config file in its own temporary directory.
struct ConfigFile {
    _dir: TempDir,
    path: PathBuf,
}

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("herdsman.toml");
        std::fs::write(&path, text).expect("write the config file");
        ConfigFile { _dir: dir, path }
    }

    /// Command-line arguments naming this file, followed by `rest`.
    fn args(&self, rest: &[&str]) -> RunArgs {
        let path = self.path.to_str().expect("temporary paths are UTF-8");
        args(&[&["-c", path], rest].concat())
    }
}

/// `RunArgs` as clap parses them from `argv` (without the program name).
fn args(argv: &[&str]) -> RunArgs {
    let argv = std::iter::once("herdsman").chain(argv.iter().copied());
    Cli::try_parse_from(argv).expect("valid command line").run
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_ok(args: &RunArgs, env: &[(String, String)]) -> Config {
    match load(args, env) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid configuration, got:\n{errors}"),
    }
}

fn load_err(args: &RunArgs, env: &[(String, String)]) -> ConfigErrors {
    match load(args, env) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errors) => errors,
    }
}

/// The error text of loading `file_text` (with `app` from the command line unless set there).
fn file_errors(file_text: &str) -> (String, ConfigFile) {
    let file = ConfigFile::new(file_text);
    let errors = load_err(&file.args(&[]), &[]);
    (errors.to_string(), file)
}
