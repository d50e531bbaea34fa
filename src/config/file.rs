//! The TOML layer: reads the config file and turns its top-level keys into a `Layer`, keeping
//! the line of every key (and of every `bind` element and `env` variable) for messages. Types
//! are not judged here, only carried (`Raw::Int`, `Raw::Text`, ...), so that validation words
//! every type mistake the same way whatever the source. Unknown keys are reported here.

use super::error::ConfigError;
use super::keys::Key;
use super::layer::{Layer, Origin, Raw, Sourced};
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Reads and parses the file at `path`; `named_by` is where its name came from.
pub fn read(path: &Path, named_by: &Origin) -> (Layer, Vec<ConfigError>) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(source) => {
            let error = ConfigError::ReadFile {
                origin: named_by.clone(),
                path: path.to_path_buf(),
                source,
            };
            (Layer::default(), vec![error])
        }
    }
}

/// Parses `text`, the contents of the file `path`. On a syntax error only the syntax errors
/// are reported: keys of a half-parsed document would only add noise.
pub fn parse(path: &Path, text: &str) -> (Layer, Vec<ConfigError>) {
    let lines = Lines { path, text };
    let (table, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let errors = syntax.iter().map(|e| lines.syntax_error(e)).collect();
        return (Layer::default(), errors);
    }
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut layer = Layer::default();
    let mut errors = Vec::new();
    for (name, value) in entries {
        let origin = lines.origin(name.span().start);
        match Key::from_name(name.get_ref()) {
            Some(key) => layer.set(key, Sourced::new(lines.raw(value), origin)),
            None => errors.push(ConfigError::UnknownKey {
                origin,
                key: name.get_ref().to_string(),
            }),
        }
    }
    (layer, errors)
}

/// Byte offsets in the file to `file F, line L`.
struct Lines<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Lines<'_> {
    /// 1-based line and column (in characters) of byte `offset`.
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = self
            .text
            .get(..offset.min(self.text.len()))
            .unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    fn origin(&self, offset: usize) -> Origin {
        let (line, _) = self.position(offset);
        Origin::File {
            path: self.path.to_path_buf(),
            line,
        }
    }

    fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let (line, column) = self.position(error.span().map_or(0, |span| span.start));
        ConfigError::ParseFile {
            path: self.path.to_path_buf(),
            line,
            column,
            message: error.message().trim_end().to_string(),
        }
    }

    /// The value as written, with nested values located at their own lines.
    fn raw(&self, value: &Spanned<DeValue<'_>>) -> Raw {
        match value.get_ref() {
            DeValue::String(text) => Raw::Text(text.to_string()),
            DeValue::Integer(int) => integer(int.as_str(), int.radix()),
            DeValue::Float(float) => Raw::Other(format!("a float {}", float.as_str())),
            DeValue::Boolean(b) => Raw::Bool(*b),
            DeValue::Datetime(when) => Raw::Other(format!("a date-time {when}")),
            DeValue::Array(items) => Raw::List(items.iter().map(|v| self.sourced(v)).collect()),
            DeValue::Table(table) => Raw::Table(self.entries(table)),
        }
    }

    fn sourced(&self, value: &Spanned<DeValue<'_>>) -> Sourced<Raw> {
        Sourced::new(self.raw(value), self.origin(value.span().start))
    }

    /// A table's entries in file order, each located at its key.
    fn entries(&self, table: &DeTable<'_>) -> Vec<(String, Sourced<Raw>)> {
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let located = |(key, value): (&Spanned<_>, &Spanned<_>)| {
            let raw = self.raw(value);
            (
                key_text(key),
                Sourced::new(raw, self.origin(key.span().start)),
            )
        };
        entries.into_iter().map(located).collect()
    }
}

fn key_text(key: &Spanned<toml::de::DeString<'_>>) -> String {
    key.get_ref().to_string()
}

/// A TOML integer; one that does not fit in an `i64` is described, not truncated.
fn integer(digits: &str, radix: u32) -> Raw {
    match i64::from_str_radix(digits, radix) {
        Ok(n) => Raw::Int(n),
        Err(_) => Raw::Other(format!("an integer {digits} (too large)")),
    }
}
