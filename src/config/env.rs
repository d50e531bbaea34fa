//! The environment layer: `HERDSMAN_<KEY>` variables from a snapshot of the environment (passed
//! in, never read from the process, so reloads and tests control it). Every value is text;
//! `HERDSMAN_BIND` is comma-separated and `HERDSMAN_ENV` holds `KEY=VALUE` entries separated by
//! newlines or `;`. An empty variable counts as unset. Any other `HERDSMAN_*` name is reported as
//! an error (typo protection), except `HERDSMAN_CONFIG`, which names the file, and
//! `HERDSMAN_ENGINE_LIB`, which `worker::engine_lib` reads.

use super::error::{ConfigError, Invalid};
use super::keys::{Key, CONFIG_ENV_VAR, ENGINE_LIB_ENV_VAR, ENV_PREFIX};
use super::layer::{Layer, Origin, Raw, Sourced};

/// The layer the `HERDSMAN_*` variables of `env` make, and the problems found in it.
pub fn read(env: &[(String, String)]) -> (Layer, Vec<ConfigError>) {
    let mut ours: Vec<&(String, String)> = env
        .iter()
        .filter(|(var, _)| var.starts_with(ENV_PREFIX))
        .filter(|(var, _)| var != CONFIG_ENV_VAR && var != ENGINE_LIB_ENV_VAR)
        .collect();
    ours.sort_by(|a, b| a.0.cmp(&b.0));
    let mut layer = Layer::default();
    let mut errors = Vec::new();
    for (var, value) in ours {
        let Some(key) = Key::from_env_var(var) else {
            errors.push(ConfigError::UnknownEnvVar { var: var.clone() });
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let origin = Origin::Env(var.clone());
        let raw = match key {
            Key::Bind | Key::ReloadDir | Key::ReloadExtraFile | Key::ReloadInclude => {
                Raw::List(split_list(value, &[','], &origin))
            }
            Key::Env => assignments(split_list(value, &['\n', ';'], &origin), &mut errors),
            _ => Raw::Text(value.clone()),
        };
        layer.set(key, Sourced::new(raw, origin));
    }
    (layer, errors)
}

/// The file named by `HERDSMAN_CONFIG`, if set and not empty.
pub fn config_file(env: &[(String, String)]) -> Option<&str> {
    env.iter()
        .rev()
        .find(|(var, _)| var == CONFIG_ENV_VAR)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

/// The non-empty, trimmed pieces of `value` between `separators`.
fn split_list(value: &str, separators: &[char], origin: &Origin) -> Vec<Sourced<Raw>> {
    value
        .split(separators)
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .map(|piece| Sourced::new(Raw::Text(piece.to_string()), origin.clone()))
        .collect()
}

/// `KEY=VALUE` texts as an `env` table; malformed ones are reported into `errors`.
pub fn assignments(items: Vec<Sourced<Raw>>, errors: &mut Vec<ConfigError>) -> Raw {
    let mut table: Vec<(String, Sourced<Raw>)> = Vec::new();
    for item in items {
        let Raw::Text(text) = &item.value else {
            continue;
        };
        match text.split_once('=') {
            Some((name, value)) => {
                let value = Sourced::new(Raw::Text(value.to_string()), item.origin.clone());
                table.retain(|(existing, _)| existing != name);
                table.push((name.to_string(), value));
            }
            None => errors.push(missing_equals(text).at(&item.origin, Key::Env.name())),
        }
    }
    Raw::Table(table)
}

fn missing_equals(text: &str) -> Invalid {
    Invalid::advice(
        format!("entry {text:?} is not KEY=VALUE"),
        format!("write it as `{text}=value` (an empty value is `{text}=`)"),
    )
}
