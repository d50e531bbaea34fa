//! The process environment as plain strings, read once per use so that configuration loading,
//! interpreter resolution and worker specs all see the same snapshot. Variables whose name or
//! value is not valid UTF-8 are left out (no setting reads them).

/// The master's environment as it is now.
pub fn env_snapshot() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
