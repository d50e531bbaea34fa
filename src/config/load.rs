//! `load`: find the config file, read the layers, merge them (file < `HERDSMAN_*` environment <
//! `GUNICORN_CMD_ARGS` < command line, key by key, as gunicorn orders its own sources) and
//! validate. Pure apart from reading the file (a Python one is executed by the app's
//! interpreter: `pyfile`) and checking that paths exist, so the master can call it again on every
//! reload with a fresh environment.

use super::error::{ConfigError, ConfigErrors};
use super::flags::RunArgs;
use super::keys::{Key, CONFIG_ENV_VAR};
use super::layer::{Layer, Origin, Raw};
use super::validate::validate;
use super::{args, cmdargs, env, file, gunicorn, pyfile};
use crate::config::{Config, GunicornFile};
use std::path::{Path, PathBuf};

/// The effective configuration, or every problem found in any layer.
///
/// The file is the one named by `--config`, else by `HERDSMAN_CONFIG` in `env`, else by a `-c`
/// in `GUNICORN_CMD_ARGS`; there is no implicit default file. `env` is a snapshot of the process
/// environment (`std::env::vars()`).
pub fn load(args: &RunArgs, env: &[(String, String)]) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let env_layer = collect(env::read(env), &mut errors);
    let cmdargs::Read {
        layer: cmd_layer,
        config: cmd_config,
        errors: cmd_errors,
        warnings: cmd_warnings,
    } = cmdargs::read(env);
    errors.extend(cmd_errors);
    let cli_layer = collect(args::read(args), &mut errors);
    let config_file = config_file(args, env, cmd_config);
    let mut gunicorn_file = None;
    let file_layer = match &config_file {
        Some((path, _)) if pyfile::is_python(path) => {
            // The interpreter comes from the layers that can name it: a gunicorn file cannot.
            let python = [&cli_layer, &cmd_layer, &env_layer]
                .into_iter()
                .find_map(|layer| match layer.get(Key::Python).map(|s| &s.value) {
                    Some(Raw::Text(text)) => Some(text.as_str()),
                    _ => None,
                });
            let (layer, found) = python_file(path, python, env, &mut errors);
            gunicorn_file = found;
            layer
        }
        Some((path, named_by)) => collect(file::read(path, named_by), &mut errors),
        None => Layer::default(),
    };
    let file_failed = errors.iter().any(|e| {
        matches!(
            e,
            ConfigError::ReadFile { .. }
                | ConfigError::ParseFile { .. }
                | ConfigError::EvaluateFile { .. }
        )
    });
    let merged = file_layer
        .merge(env_layer)
        .merge(cmd_layer)
        .merge(cli_layer);
    match validate(&merged, config_file.map(|(path, _)| path)) {
        Ok(mut config) if errors.is_empty() => {
            config.gunicorn = gunicorn_file;
            config.notes = args.gunicorn_compat.warnings("the command line");
            config.notes.extend(cmd_warnings);
            return Ok(config);
        }
        Ok(_) => {}
        // An unreadable file is the reason the app is missing; saying so twice is noise.
        Err(problems) => errors.extend(
            problems
                .into_iter()
                .filter(|e| !(file_failed && matches!(e, ConfigError::MissingApp)))
                .map(|e| gunicorn_names(e, gunicorn_file.as_ref())),
        ),
    }
    Err(ConfigErrors::new(errors).expect("this branch is only reached with problems"))
}

/// Executes a Python config file and reads its settings into a layer.
fn python_file(
    path: &Path,
    python: Option<&str>,
    env: &[(String, String)],
    errors: &mut Vec<ConfigError>,
) -> (Layer, Option<GunicornFile>) {
    let absolute = match path.to_string_lossy().starts_with("python:") {
        true => path.to_path_buf(),
        false => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    };
    match pyfile::evaluate(&absolute, python, env) {
        Ok(evaluated) => {
            let (layer, found, problems) = gunicorn::layer(path, &absolute, &evaluated);
            errors.extend(problems);
            (layer, Some(found))
        }
        Err(source) => {
            errors.push(ConfigError::EvaluateFile {
                path: path.to_path_buf(),
                source,
            });
            (Layer::default(), None)
        }
    }
}

/// A value rejected from a Python config file is named by its gunicorn setting (`keepalive`),
/// not by the herdsman key it sets (`keep_alive`).
fn gunicorn_names(error: ConfigError, file: Option<&GunicornFile>) -> ConfigError {
    let ConfigError::InvalidValue {
        origin,
        key,
        problem,
        fix,
    } = error
    else {
        return error;
    };
    let from_python = file.is_some() && matches!(origin, Origin::File { .. });
    let key = match Key::from_name(&key).and_then(gunicorn::setting_name) {
        Some(name) if from_python => name.to_string(),
        _ => key,
    };
    ConfigError::InvalidValue {
        origin,
        key,
        problem,
        fix,
    }
}

fn collect(read: (Layer, Vec<ConfigError>), errors: &mut Vec<ConfigError>) -> Layer {
    errors.extend(read.1);
    read.0
}

/// The file to read and where its name came from.
fn config_file(
    args: &RunArgs,
    env: &[(String, String)],
    cmd_config: Option<PathBuf>,
) -> Option<(PathBuf, Origin)> {
    if let Some(path) = &args.config {
        return Some((path.clone(), Origin::Cli("--config".into())));
    }
    if let Some(path) = env::config_file(env) {
        return Some((PathBuf::from(path), Origin::Env(CONFIG_ENV_VAR.into())));
    }
    cmd_config.map(|path| (path, Origin::CmdArgs("--config".into())))
}
