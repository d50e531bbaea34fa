//! Tests of the whole loading path (`load`, `render`) through real files, environment snapshots
//! and parsed command lines. Parsers with no I/O (bind, app, keys) test themselves in place.

mod errors;
mod http;
mod hygiene;
mod precedence;
mod render;
mod support;
mod tls;
mod values;

use support::*;
