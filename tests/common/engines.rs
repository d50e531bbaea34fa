//! The two engines a worker can run (`--engine uvicorn`, the default, and `--engine native`,
//! herdsman's own HTTP engine, WSGI and ASGI http/lifespan), and [`both_engines!`], which turns one test body
//! into one test per engine: a behaviour users see is specified once and checked against both.
//!
//! `both_engines! { fn name(engine: Engine) { ... } }` makes a module `name` holding the body and
//! the tests `name::uvicorn` and `name::native`, so nextest filters can pick an engine
//! (`test(/::native$/)`). The body sees everything the test file declares or imports.
//!
//! The native engine's library must sit next to the binary (target/debug/libherdsman_engine.so):
//! scripts/test.sh builds it with `cargo build -p herdsman-engine` before the tests.

use std::path::PathBuf;

/// The native engine's library as cargo names it (engine/Cargo.toml, `[lib] name`).
pub const LIB_NAME: &str = "libherdsman_engine.so";

/// Where cargo built the library: beside the binary under test.
pub fn built_lib() -> PathBuf {
    std::path::Path::new(super::binary())
        .parent()
        .expect("the binary is in a directory")
        .join(LIB_NAME)
}

/// Which engine the workers of a test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Uvicorn,
    Native,
}

impl Engine {
    /// The command-line arguments that select it (the default, uvicorn, needs none).
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Engine::Uvicorn => &[],
            Engine::Native => &["--engine", "native"],
        }
    }

    /// How a worker's `hello` names it, up to its version (`uvicorn 0.x.y`, `native 0.1.0`).
    pub fn hello_prefix(self) -> &'static str {
        match self {
            Engine::Uvicorn => "uvicorn ",
            Engine::Native => "native ",
        }
    }

    /// Its name, as `--engine` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Uvicorn => "uvicorn",
            Engine::Native => "native",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One test body, one `#[test]` per engine: see the module documentation.
#[allow(unused_macros)] // test binaries without a WSGI test do not use it
macro_rules! both_engines {
    ($($(#[$meta:meta])* fn $name:ident($engine:ident: $engine_type:ty) $body:block)+) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn body($engine: $engine_type) $body

                #[test]
                fn uvicorn() {
                    body(crate::common::Engine::Uvicorn)
                }

                #[test]
                fn native() {
                    body(crate::common::Engine::Native)
                }
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use both_engines;
