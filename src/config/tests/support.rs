//! The harness the loading-path tests share: a config file in its own temporary directory,
//! command lines parsed as `herdsman` would parse them, environment snapshots, and `load`
//! wrapped to expect success or failure.

pub(super) use crate::cli::{Cli, RunArgs};
pub(super) use crate::config::{load, Config, ConfigErrors};
pub(super) use clap::Parser;
pub(super) use std::path::PathBuf;
pub(super) use tempfile::TempDir;

/// A config file in its own temporary directory.
pub(super) struct ConfigFile {
    _dir: TempDir,
    pub(super) path: PathBuf,
}

impl ConfigFile {
    pub(super) fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("herdsman.toml");
        std::fs::write(&path, text).expect("write the config file");
        ConfigFile { _dir: dir, path }
    }

    /// Command-line arguments naming this file, followed by `rest`.
    pub(super) fn args(&self, rest: &[&str]) -> RunArgs {
        let path = self.path.to_str().expect("temporary paths are UTF-8");
        args(&[&["-c", path], rest].concat())
    }
}

/// `RunArgs` as clap parses them from `argv` (without the program name).
pub(super) fn args(argv: &[&str]) -> RunArgs {
    let argv = std::iter::once("herdsman").chain(argv.iter().copied());
    Cli::try_parse_from(argv).expect("valid command line").run
}

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn load_ok(args: &RunArgs, env: &[(String, String)]) -> Config {
    match load(args, env) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid configuration, got:\n{errors}"),
    }
}

pub(super) fn load_err(args: &RunArgs, env: &[(String, String)]) -> ConfigErrors {
    match load(args, env) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errors) => errors,
    }
}

/// The error text of loading `file_text` (with `app` from the command line unless set there).
pub(super) fn file_errors(file_text: &str) -> (String, ConfigFile) {
    let file = ConfigFile::new(file_text);
    let errors = load_err(&file.args(&[]), &[]);
    (errors.to_string(), file)
}
