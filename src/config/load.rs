//! `load`: find the config file, read the three layers, merge them (file < environment <
//! command line, key by key) and validate. Pure apart from reading the file and checking that
//! paths exist, so the master can call it again on every reload with a fresh environment.

use super::error::{ConfigError, ConfigErrors};
use super::flags::RunArgs;
use super::keys::CONFIG_ENV_VAR;
use super::layer::{Layer, Origin};
use super::validate::validate;
use super::{args, env, file};
use crate::config::Config;
use std::path::PathBuf;

/// The effective configuration, or every problem found in any layer.
///
/// The file is the one named by `--config`, else by `HERDSMAN_CONFIG` in `env`; there is no
/// implicit default file. `env` is a snapshot of the process environment (`std::env::vars()`).
pub fn load(args: &RunArgs, env: &[(String, String)]) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let config_file = config_file(args, env);
    let file_layer = match &config_file {
        Some((path, named_by)) => collect(file::read(path, named_by), &mut errors),
        None => Layer::default(),
    };
    let file_failed = errors.iter().any(|e| {
        matches!(
            e,
            ConfigError::ReadFile { .. } | ConfigError::ParseFile { .. }
        )
    });
    let env_layer = collect(env::read(env), &mut errors);
    let cli_layer = collect(args::read(args), &mut errors);
    let merged = file_layer.merge(env_layer).merge(cli_layer);
    match validate(&merged, config_file.map(|(path, _)| path)) {
        Ok(config) if errors.is_empty() => return Ok(config),
        Ok(_) => {}
        // An unreadable file is the reason the app is missing; saying so twice is noise.
        Err(problems) => errors.extend(
            problems
                .into_iter()
                .filter(|e| !(file_failed && matches!(e, ConfigError::MissingApp))),
        ),
    }
    Err(ConfigErrors::new(errors).expect("this branch is only reached with problems"))
}

fn collect(read: (Layer, Vec<ConfigError>), errors: &mut Vec<ConfigError>) -> Layer {
    errors.extend(read.1);
    read.0
}

/// The file to read and where its name came from.
fn config_file(args: &RunArgs, env: &[(String, String)]) -> Option<(PathBuf, Origin)> {
    if let Some(path) = &args.config {
        return Some((path.clone(), Origin::Cli("--config".into())));
    }
    let path = env::config_file(env)?;
    Some((PathBuf::from(path), Origin::Env(CONFIG_ENV_VAR.into())))
}
