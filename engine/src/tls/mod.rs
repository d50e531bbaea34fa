//! TLS on every listener (gunicorn's `certfile`, `keyfile`, `ca_certs`, `cert_reqs`, `ciphers`,
//! `ssl_version`): rustls with the ring provider, on tokio. `config` turns the files into one
//! `rustls::ServerConfig` when the server is created (each worker reads the files itself, so a
//! reload serves renewed certificates); `handshake` runs the handshake in each connection's task
//! and hands the stream to the HTTP connection.

pub mod config;
pub mod handshake;

pub use config::{server_config, Options};
