//! Configuration: TOML file < `HERDSMAN_*` environment < command line, merged then validated
//! into one typed [`Config`].

mod types;

pub use types::*;
