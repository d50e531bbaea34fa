//! The process environment, read once per use so that configuration loading, interpreter
//! resolution and worker specs all see the same snapshot. Two views: [`env_snapshot`] as plain
//! strings, for what herdsman reads (settings, `PATH`; a variable whose name or value is not
//! valid UTF-8 is left out: no setting reads one), and [`env_snapshot_os`] as the OS holds it,
//! for what children inherit: a non-UTF-8 value (a Latin-1 file name in a variable, say) reaches
//! the workers byte for byte.

use std::ffi::OsString;

/// One variable as the OS holds it.
pub type OsVar = (OsString, OsString);

/// The master's environment as it is now, as strings.
pub fn env_snapshot() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The master's environment as it is now, every variable, as bytes.
pub fn env_snapshot_os() -> Vec<OsVar> {
    std::env::vars_os().collect()
}
