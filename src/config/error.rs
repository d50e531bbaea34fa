//! Configuration problems. Each `ConfigError` says where the bad value came from (file and line,
//! environment variable or flag), which key, what was wrong, and carries a fix that `fix()`
//! phrases in the syntax of that source (`workers = 4`, `HERDSMAN_WORKERS=4`, `--workers 4`).
//! `ConfigErrors` is the whole list: loading never stops at the first problem.

use super::keys::{suggest, Key, ENV_PREFIX};
use super::layer::Origin;
use std::error::Error as _;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// How to repair a bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Values that would be accepted, as TOML literals (`4`, `"auto"`); shown as an assignment in
    /// the syntax of the value's origin.
    Examples(Vec<String>),
    /// Free advice.
    Advice(String),
}

/// One problem with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: cannot read the config file {}", path.display())]
    ReadFile {
        origin: Origin,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("file {}, line {line}, column {column}: invalid TOML: {message}", path.display())]
    ParseFile {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: unknown key `{key}`")]
    UnknownKey { origin: Origin, key: String },
    #[error("environment variable {var} is not a herdsman setting")]
    UnknownEnvVar { var: String },
    #[error("{origin}: `{key}` {problem}")]
    InvalidValue {
        origin: Origin,
        key: String,
        problem: String,
        fix: Fix,
    },
    #[error("no application given")]
    MissingApp,
    #[error("cannot read the Python config file {}", path.display())]
    EvaluateFile {
        path: PathBuf,
        #[source]
        source: super::pyfile::EvalError,
    },
    #[error("{origin}: `{name}` is refused: {reason}")]
    Refused {
        origin: Origin,
        name: String,
        reason: String,
        fix: String,
    },
    #[error("environment variable GUNICORN_CMD_ARGS {problem}")]
    CmdArgs { problem: String },
}

impl ConfigError {
    /// How to fix this problem, in the syntax of where the value came from.
    pub fn fix(&self) -> Option<String> {
        match self {
            ConfigError::ReadFile { source, .. } => Some(read_file_fix(source)),
            ConfigError::ParseFile { .. } => Some(
                "correct the TOML syntax there; text values need double quotes (`key = \"value\"`)"
                    .into(),
            ),
            ConfigError::UnknownKey { key, .. } => Some(unknown_key_fix(key)),
            ConfigError::UnknownEnvVar { var } => Some(unknown_env_var_fix(var)),
            ConfigError::InvalidValue {
                origin, key, fix, ..
            } => Some(value_fix(origin, key, fix)),
            ConfigError::EvaluateFile { source, .. } => Some(source.fix()),
            ConfigError::Refused { fix, .. } => Some(fix.clone()),
            ConfigError::CmdArgs { .. } => Some(
                "GUNICORN_CMD_ARGS takes the flags of the command line (`herdsman --help`); \
                 correct or remove the flag there"
                    .into(),
            ),
            ConfigError::MissingApp => Some(
                "name it as `module:attr`: as the APP argument (herdsman myproject.asgi:app), \
                 as `app = \"myproject.asgi:app\"` in the config file, or in HERDSMAN_APP"
                    .into(),
            ),
        }
    }
}

impl ConfigError {
    /// Sort key for `ConfigErrors`: (source, line, variable).
    fn reading_order(&self) -> (u8, usize, String) {
        let origin = match self {
            ConfigError::ReadFile { .. } => return (0, 0, String::new()),
            ConfigError::ParseFile { line, .. } => return (0, *line, String::new()),
            ConfigError::UnknownEnvVar { var } => return (1, 0, var.clone()),
            ConfigError::EvaluateFile { .. } => return (0, 0, String::new()),
            ConfigError::CmdArgs { .. } => return (2, 0, String::new()),
            ConfigError::Refused { origin, .. } => origin,
            ConfigError::MissingApp => return (4, 0, String::new()),
            ConfigError::UnknownKey { origin, .. } => origin,
            ConfigError::InvalidValue { origin, .. } => origin,
        };
        match origin {
            Origin::File { line, .. } => (0, *line, String::new()),
            Origin::Env(var) => (1, 0, var.clone()),
            Origin::CmdArgs(_) => (2, 0, String::new()),
            Origin::Cli(_) => (3, 0, String::new()),
        }
    }
}

fn read_file_fix(source: &io::Error) -> String {
    match source.kind() {
        io::ErrorKind::NotFound => "check the path given with --config or HERDSMAN_CONFIG".into(),
        io::ErrorKind::PermissionDenied => "make the file readable by this user".into(),
        _ => "give a readable UTF-8 TOML file with --config or HERDSMAN_CONFIG".into(),
    }
}

fn unknown_key_fix(key: &str) -> String {
    match super::keys::suggest_key(key) {
        Some(known) => format!("did you mean `{known}`?"),
        None => {
            let names: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
            format!("remove it; the keys are: {}", names.join(", "))
        }
    }
}

fn unknown_env_var_fix(var: &str) -> String {
    let rest = var.strip_prefix(ENV_PREFIX).unwrap_or(var);
    match suggest(rest, Key::ALL.map(Key::name)) {
        Some(known) => format!(
            "did you mean {ENV_PREFIX}{}? otherwise unset {var}",
            known.to_ascii_uppercase()
        ),
        None => format!("unset {var}; herdsman reads HERDSMAN_CONFIG, HERDSMAN_ENGINE_LIB and HERDSMAN_<KEY> only"),
    }
}

fn value_fix(origin: &Origin, key: &str, fix: &Fix) -> String {
    let examples = match fix {
        Fix::Advice(advice) => return advice.clone(),
        Fix::Examples(examples) => examples,
    };
    let written: Vec<String> = examples
        .iter()
        .map(|e| assignment(origin, key, e))
        .collect();
    format!("write {}", written.join(" or "))
}

/// `literal` (a TOML literal) assigned to `key` in the syntax of `origin`.
fn assignment(origin: &Origin, key: &str, literal: &str) -> String {
    let bare = literal.trim_matches('"');
    match origin {
        Origin::File { .. } => format!("`{key} = {literal}`"),
        Origin::Env(var) => format!("`{var}={bare}`"),
        Origin::Cli(flag) if flag.starts_with('-') => format!("`{flag} {bare}`"),
        Origin::Cli(_) => format!("`{bare}`"),
        Origin::CmdArgs(flag) => format!("`{flag} {bare}` in GUNICORN_CMD_ARGS"),
    }
}

/// Every problem found while loading; never empty.
#[derive(Debug)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// `None` when there is nothing to report. Problems are put in reading order: the file's by
    /// line, then the environment's by variable, then the command line's, then the rest.
    pub fn new(mut errors: Vec<ConfigError>) -> Option<ConfigErrors> {
        errors.sort_by_cached_key(ConfigError::reading_order);
        (!errors.is_empty()).then_some(ConfigErrors { errors })
    }

    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }
}

/// One block per problem: the problem with its causes on the first line, then `  fix: ...`.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
            let mut cause = error.source();
            while let Some(inner) = cause {
                write!(f, ": {inner}")?;
                cause = inner.source();
            }
            if let Some(fix) = error.fix() {
                write!(f, "\n  fix: {fix}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A rejected value, before it is located: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub problem: String,
    pub fix: Fix,
}

impl Invalid {
    /// `problem` follows the key name: "must be ...", "entry \"x\" has ...".
    pub fn new(problem: impl Into<String>, fix: Fix) -> Invalid {
        Invalid {
            problem: problem.into(),
            fix,
        }
    }

    /// Rejection with example values that would be accepted (TOML literals).
    pub fn examples(problem: impl Into<String>, examples: &[&str]) -> Invalid {
        let examples = examples.iter().map(|e| e.to_string()).collect();
        Invalid::new(problem, Fix::Examples(examples))
    }

    /// Rejection with free advice.
    pub fn advice(problem: impl Into<String>, advice: impl Into<String>) -> Invalid {
        Invalid::new(problem, Fix::Advice(advice.into()))
    }

    /// The full error, for `key` given at `origin`.
    pub fn at(self, origin: &Origin, key: &str) -> ConfigError {
        ConfigError::InvalidValue {
            origin: origin.clone(),
            key: key.to_string(),
            problem: self.problem,
            fix: self.fix,
        }
    }
}
