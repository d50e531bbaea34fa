//! Non-fatal concerns about the configuration, for the master to log after a successful load:
//! - a master running as root that reads a config file others may write. Whoever can write that
//!   file chooses the code root starts, but refusing to run would break setups that are safe for
//!   reasons herdsman cannot see, so it is a warning;
//! - a worker variable named like a herdsman key (`workers = 4` written below `[env]` lands in
//!   the `env` table; TOML cannot tell, and an error would forbid a legitimate name);
//! - a recycling jitter without its limit (`max_requests_jitter` without `max_requests`): it does
//!   nothing, which is harmless, but the limit was probably meant to be set too;
//! - `preload = true` with `spawn = "exec"`: preloading needs the zygote;
//! - a `gunicorn.conf.py` setting gunicorn has and herdsman does not: all of them in one warning
//!   ("ignored"), since a file written for gunicorn often sets a few that do not matter here;
//! - an `admin_bind` that is not a loopback address: /metrics, /livez and /readyz have no
//!   authentication, but a firewall may make such a bind safe, so it is a warning. A host name
//!   is resolved (as the bind will): only names whose every address is loopback stay silent.

use super::keys::Key;
use crate::config::{BindSpec, Config};
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Warnings about `config` and its file, one message each; empty when there is nothing to say.
pub fn file_warnings(config: &Config) -> Vec<String> {
    let mut warnings = config.notes.clone();
    warnings.extend(misplaced_keys(config));
    warnings.extend(root_writable(config));
    warnings.extend(idle_jitter(config));
    warnings.extend(idle_preload(config));
    warnings.extend(ignored_gunicorn(config));
    warnings.extend(exposed_admin(config));
    warnings
}

/// An admin listener others may reach.
fn exposed_admin(config: &Config) -> Option<String> {
    let spec = config.admin_bind.as_ref()?;
    let BindSpec::Tcp { host, port } = spec else {
        return None;
    };
    if loopback_only(host, *port) {
        return None;
    }
    Some(format!(
        "admin_bind = \"{spec}\" is not a loopback address: /metrics, /livez and /readyz answer \
         anyone who can reach that port, without authentication; bind it to 127.0.0.1 (e.g. \
         admin_bind = \"127.0.0.1:{port}\") or keep the port behind a firewall"
    ))
}

/// Whether `host` names loopback addresses only. A name that does not resolve is left to the
/// bind, which reports it.
fn loopback_only(host: &str, port: u16) -> bool {
    let host = host.split('%').next().unwrap_or(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.to_canonical().is_loopback();
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => addrs
            .map(|addr| addr.ip().to_canonical())
            .all(|ip| ip.is_loopback()),
        Err(_) => true,
    }
}

/// The gunicorn settings of a Python config file that herdsman does not have.
fn ignored_gunicorn(config: &Config) -> Option<String> {
    let file = config.gunicorn.as_ref()?;
    (!file.ignored.is_empty()).then(|| {
        format!(
            "{}: gunicorn settings herdsman does not have, ignored: {} (docs/gunicorn-config.md \
             lists what is supported)",
            file.path.display(),
            file.ignored.join(", ")
        )
    })
}

/// `preload` only means something with the zygote.
fn idle_preload(config: &Config) -> Option<String> {
    (config.preload && config.spawn == crate::config::SpawnMode::Exec).then(|| {
        "preload has no effect with spawn = \"exec\": set spawn = \"zygote\" to preload the app"
            .to_string()
    })
}

/// A jitter set while its limit is off.
fn idle_jitter(config: &Config) -> Vec<String> {
    let requests = config.max_requests.is_none() && config.max_requests_jitter > 0;
    let lifetime =
        config.max_worker_lifetime.is_none() && !config.max_worker_lifetime_jitter.is_zero();
    [
        (requests, Key::MaxRequestsJitter, Key::MaxRequests),
        (
            lifetime,
            Key::MaxWorkerLifetimeJitter,
            Key::MaxWorkerLifetime,
        ),
    ]
    .into_iter()
    .filter(|(idle, _, _)| *idle)
    .map(|(_, jitter, limit)| format!("{} has no effect without {}", jitter.name(), limit.name()))
    .collect()
}

/// A writable-file warning, when running as root.
fn root_writable(config: &Config) -> Option<String> {
    let path = config.config_file.as_ref()?;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    writable_warning(path, meta.permissions().mode())
}

/// Worker variables named like herdsman keys: most likely settings written below `[env]`.
fn misplaced_keys(config: &Config) -> Vec<String> {
    let misplaced = config
        .env
        .iter()
        .filter(|(name, _)| Key::from_name(name).is_some());
    misplaced
        .map(|(name, _)| {
            format!(
                "worker environment variable `{name}` is named like the herdsman key; if it was \
                 meant as a setting, move it above the [env] table of the config file"
            )
        })
        .collect()
}

/// The warning for a root-read file with permission bits `mode`, if it is group/world-writable.
fn writable_warning(path: &Path, mode: u32) -> Option<String> {
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (_, true) => "world-writable",
        (true, false) => "group-writable",
        (false, false) => return None,
    };
    Some(format!(
        "config file {} is {who} (mode {:04o}) and herdsman runs as root: anyone who can write \
         it chooses what runs as root; fix with `chmod go-w {}`",
        path.display(),
        mode & 0o7777,
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_below_the_env_table_are_pointed_out() {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("herdsman.toml");
        std::fs::write(
            &path,
            "app = \"m:a\"\n[env]\nA = \"1\"\nbind = \"0.0.0.0:80\"\n",
        )
        .unwrap();
        let argv = ["herdsman", "-c", path.to_str().expect("UTF-8 path")];
        let args = <crate::cli::Cli as clap::Parser>::parse_from(argv).run;
        let config = crate::config::load(&args, &[]).expect("valid configuration");
        let warnings = file_warnings(&config);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("variable `bind` is named like"),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_admin_listener_beyond_loopback_is_pointed_out() {
        let load = |bind: &str| {
            let argv = ["herdsman", "--admin-bind", bind, "m:a"];
            let args = <crate::cli::Cli as clap::Parser>::parse_from(argv).run;
            file_warnings(&crate::config::load(&args, &[]).expect("valid configuration"))
        };
        for exposed in ["0.0.0.0:9191", "[::]:9191", "192.0.2.1:9191"] {
            let warnings = load(exposed);
            assert_eq!(warnings.len(), 1, "{exposed}: {warnings:?}");
            assert!(
                warnings[0].contains("not a loopback address"),
                "{warnings:?}"
            );
            assert!(warnings[0].contains("127.0.0.1:9191"), "{warnings:?}");
        }
        for private in [
            "127.0.0.1:9191",
            "127.0.0.2:9191",
            "[::1]:9191",
            "[::ffff:127.0.0.1]:9191",
            "localhost:9191",
            "unix:/run/admin.sock",
        ] {
            assert_eq!(load(private), Vec::<String>::new(), "{private}");
        }
    }

    #[test]
    fn a_jitter_without_its_limit_is_pointed_out() {
        let load = |argv: &[&str]| {
            let argv = [&["herdsman"], argv, &["m:a"]].concat();
            let args = <crate::cli::Cli as clap::Parser>::parse_from(argv).run;
            crate::config::load(&args, &[]).expect("valid configuration")
        };
        let config = load(&["--max-requests-jitter", "50"]);
        assert_eq!(
            file_warnings(&config),
            ["max_requests_jitter has no effect without max_requests"]
        );
        let config = load(&["--max-worker-lifetime-jitter", "10m"]);
        assert_eq!(
            file_warnings(&config),
            ["max_worker_lifetime_jitter has no effect without max_worker_lifetime"]
        );
        let config = load(&[
            "--max-requests-jitter=50",
            "--max-requests=1000",
            "--max-worker-lifetime=1h",
            "--max-worker-lifetime-jitter=10m",
        ]);
        assert_eq!(file_warnings(&config), Vec::<String>::new());
    }

    #[test]
    fn only_group_or_world_writable_files_warn() {
        let path = Path::new("/etc/herdsman.toml");
        assert_eq!(writable_warning(path, 0o100644), None);
        assert_eq!(writable_warning(path, 0o100600), None);
        let group = writable_warning(path, 0o100664).expect("group-writable warns");
        assert!(group.contains("group-writable (mode 0664)"), "{group}");
        assert!(group.contains("chmod go-w /etc/herdsman.toml"), "{group}");
        let world = writable_warning(path, 0o100666).expect("world-writable warns");
        assert!(world.contains("world-writable"), "{world}");
    }
}
