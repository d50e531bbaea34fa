//! `GUNICORN_CMD_ARGS`: gunicorn's flags in an environment variable, split as a POSIX shell
//! splits words (gunicorn uses `shlex.split`) and parsed exactly like the command line (the same
//! [`RunArgs`]), so `GUNICORN_CMD_ARGS="--workers 3 --timeout 60"` means what it means to
//! gunicorn. Its layer sits between the `HERDSMAN_*` variables and the command line; every value
//! is located as `GUNICORN_CMD_ARGS --flag`. A `-c FILE` in it names the config file when neither
//! the command line nor `HERDSMAN_CONFIG` does, as in gunicorn.

use super::error::ConfigError;
use super::flags::RunArgs;
use super::layer::{Layer, Origin};
use clap::Parser;
use std::path::PathBuf;

/// The variable's name.
pub const VAR: &str = "GUNICORN_CMD_ARGS";

/// `RunArgs` on its own, for clap to parse the variable's words.
#[derive(Parser, Debug)]
#[command(name = VAR, no_binary_name = true, disable_help_flag = true, disable_version_flag = true)]
struct CmdArgs {
    #[command(flatten)]
    run: RunArgs,
}

/// What `GUNICORN_CMD_ARGS` gives: its layer, the config file it names, its problems, and the
/// warnings for the gunicorn flags it has that change nothing here (`compat`).
pub struct Read {
    pub layer: Layer,
    pub config: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

impl Read {
    fn failed(error: ConfigError) -> Read {
        Read {
            layer: Layer::default(),
            config: None,
            errors: vec![error],
            warnings: Vec::new(),
        }
    }
}

/// Reads the variable from `env`.
pub fn read(env: &[(String, String)]) -> Read {
    let Some((_, value)) = env.iter().rev().find(|(var, _)| var == VAR) else {
        return Read {
            layer: Layer::default(),
            config: None,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
    };
    let words = match split(value) {
        Ok(words) => words,
        Err(problem) => return Read::failed(bad(problem)),
    };
    let args = match CmdArgs::try_parse_from(&words) {
        Ok(parsed) => parsed.run,
        Err(e) => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            return Read::failed(bad(first.to_string()));
        }
    };
    let (layer, errors) = super::args::read(&args);
    let layer = layer.relocate(&|origin| match origin {
        Origin::Cli(flag) => Origin::CmdArgs(flag.clone()),
        other => other.clone(),
    });
    let errors = errors.into_iter().map(relocate_error).collect();
    Read {
        layer,
        config: args.config,
        errors,
        warnings: args.gunicorn_compat.warnings(VAR),
    }
}

fn bad(problem: String) -> ConfigError {
    ConfigError::CmdArgs { problem }
}

/// `-e` problems found by the command-line reader, located in the variable instead.
fn relocate_error(error: ConfigError) -> ConfigError {
    match error {
        ConfigError::InvalidValue {
            origin: Origin::Cli(flag),
            key,
            problem,
            fix,
        } => ConfigError::InvalidValue {
            origin: Origin::CmdArgs(flag),
            key,
            problem,
            fix,
        },
        ConfigError::Refused {
            origin: Origin::Cli(flag),
            name,
            reason,
            fix,
        } => ConfigError::Refused {
            origin: Origin::CmdArgs(flag),
            name,
            reason,
            fix,
        },
        other => other,
    }
}

/// Words as a POSIX shell splits them: blanks separate, single quotes keep everything,
/// double quotes keep all but `\"` and `\\`, a backslash outside quotes escapes the next char.
fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("has an unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("has an unclosed double quote".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("has an unclosed double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("ends with a lone backslash".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::Key;
    use crate::config::layer::Raw;

    fn env(value: &str) -> Vec<(String, String)> {
        vec![(VAR.to_string(), value.to_string())]
    }

    #[test]
    fn splits_like_a_shell() {
        let words = split(r#"-w 3 --access-logformat '%(h)s "%(r)s"' -e "A=b c" x\ y"#).unwrap();
        assert_eq!(
            words,
            [
                "-w",
                "3",
                "--access-logformat",
                r#"%(h)s "%(r)s""#,
                "-e",
                "A=b c",
                "x y"
            ]
        );
        assert!(split("'open").is_err());
        assert_eq!(split("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split("''").unwrap(), [""]);
    }

    #[test]
    fn flags_become_a_layer_located_in_the_variable() {
        let Read {
            layer,
            config,
            errors,
            ..
        } = read(&env("--workers 3 -b a:1 -b b:2 --preload -c g.py"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(config, Some(PathBuf::from("g.py")));
        let workers = layer.get(Key::Workers).unwrap();
        assert_eq!(workers.value, Raw::Text("3".into()));
        assert_eq!(workers.origin, Origin::CmdArgs("--workers".into()));
        assert_eq!(workers.origin.to_string(), "GUNICORN_CMD_ARGS --workers");
        let Raw::List(binds) = &layer.get(Key::Bind).unwrap().value else {
            panic!("bind is a list");
        };
        assert_eq!(binds.len(), 2);
        assert_eq!(binds[1].origin, Origin::CmdArgs("--bind".into()));
        assert_eq!(layer.get(Key::Preload).unwrap().value, Raw::Bool(true));
    }

    #[test]
    fn unknown_flags_are_one_clear_error() {
        let errors = read(&env("--workers 2 --no-such-flag")).errors;
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(text.contains("GUNICORN_CMD_ARGS"), "{text}");
        assert!(text.contains("--no-such-flag"), "{text}");
    }

    #[test]
    fn unset_means_nothing() {
        let Read {
            layer,
            config,
            errors,
            warnings,
        } = read(&[]);
        assert_eq!(layer, Layer::default());
        assert!(config.is_none() && errors.is_empty() && warnings.is_empty());
    }

    #[test]
    fn gunicorn_flags_that_change_nothing_are_warned_and_daemon_is_refused() {
        let read = read(&env("--worker-tmp-dir /dev/shm --no-sendfile --workers 2"));
        assert!(read.errors.is_empty(), "{:?}", read.errors);
        assert_eq!(read.warnings.len(), 2, "{:?}", read.warnings);
        assert!(read.warnings[0]
            .starts_with("GUNICORN_CMD_ARGS: gunicorn's --worker-tmp-dir changes nothing here"));
        let errors = super::read(&env("-D --workers 2")).errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        assert!(
            text.contains("GUNICORN_CMD_ARGS --daemon: `daemon` is refused"),
            "{text}"
        );
    }
}
