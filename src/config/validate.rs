//! The merged layer to a typed `Config`. Every key is converted even after a failure, so one run
//! reports every problem; a key nobody set takes its default from `types::defaults`. Only the
//! effective value of a key is judged: a bad file value overridden by the environment or the
//! command line is not an error. The only checks outside the values themselves are that a
//! uvicorn `worker_class` does not contradict `interface = "wsgi"`, that `chdir`
//! is an existing directory, that an absolute `python` exists, that `control_socket` fits in a
//! unix socket address, that the directories of `log_file` and `pidfile` exist, and that `user`
//! and `group` name accounts this system knows and that a master which is not root does not ask
//! to switch them (see `account`), and that the TLS files load and match (`validate/tls.rs`,
//! `config/tls.rs`), and that the uvicorn engine is not asked for HTTP/2 (`validate/http.rs`).
//! Combinations that are allowed but pointless (a jitter without
//! its limit) are `warnings`, not errors. The keys that name places (binds, paths) are judged
//! in `validate/paths.rs`.

use super::account;
use super::app;
use super::error::{ConfigError, Fix, Invalid};
use super::keys::Key;
use super::layer::{Layer, Origin, Raw, Sourced};
use super::values;
use crate::config::{defaults, AppSpec, Config, Interface};
use std::path::PathBuf;
use std::time::Duration;

mod http;
mod paths;
mod tls;

/// Most extra workers booting at once: each boot imports the whole app, so more is a typo.
const MAX_SURGE: u32 = 64;
/// Most Python threads per native-engine worker: each has its own stack, and past a few dozen
/// they only take turns holding the GIL, so more is a typo (a worker count, a connection count).
const MAX_THREADS: u32 = 1024;
/// Smallest `max_worker_memory`: no Python worker fits in less, so a smaller value is a unit left
/// out (`512` meant as 512MiB) and would recycle every worker at every check.
const MIN_WORKER_MEMORY: u64 = 1 << 20;
/// Shortest `memory_check_interval`: each sample reads /proc/PID/smaps_rollup of every worker,
/// which costs the kernel a walk of the worker's page tables.
const MIN_MEMORY_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Longest `keep_alive`: an idle connection held longer only pins a descriptor.
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(3600);

/// Validates `layer` into a `Config`; `config_file` is the file that was read, if any.
pub fn validate(layer: &Layer, config_file: Option<PathBuf>) -> Result<Config, Vec<ConfigError>> {
    let mut v = Validator {
        layer,
        errors: Vec::new(),
    };
    // `app()` returns `None` only after recording why, so the placeholder never escapes.
    let app = v.app().unwrap_or_else(placeholder_app);
    let engine = v.value(Key::Engine, defaults::ENGINE, values::engine);
    let config = Config {
        app,
        workers: v.value(Key::Workers, defaults::WORKERS, values::workers),
        max_workers: v.value(Key::MaxWorkers, defaults::MAX_WORKERS, values::workers),
        lifespan: v.value(Key::Lifespan, defaults::LIFESPAN, values::lifespan),
        binds: v.binds(),
        interface: v.interface(),
        worker_class: v.value(Key::WorkerClass, None, |raw| {
            values::worker_class(raw).map(|name| Some(name.to_string()))
        }),
        engine,
        threads: v.value(Key::Threads, None, |raw| {
            values::count_from_to(raw, 1..=MAX_THREADS, "4").map(Some)
        }),
        spawn: v.value(Key::Spawn, defaults::SPAWN, values::spawn),
        preload: v.value(Key::Preload, defaults::PRELOAD, values::boolean),
        python: v.python(),
        chdir: v.chdir(),
        pythonpath: v.value(Key::Pythonpath, Vec::new(), values::pythonpath),
        reload: v.value(Key::Reload, false, values::boolean),
        reload_dirs: v.path_list(Key::ReloadDir, "\"src\""),
        reload_extra_files: v.path_list(Key::ReloadExtraFile, "\"templates/base.html\""),
        reload_includes: v.name_patterns(Key::ReloadInclude, "\"*.html\""),
        env: v.env(),
        // 0: no liveness timeout, as gunicorn's `--timeout 0`.
        timeout: v.value(Key::Timeout, defaults::TIMEOUT, |raw| {
            values::duration(raw, true)
        }),
        graceful_timeout: v.value(Key::GracefulTimeout, defaults::GRACEFUL_TIMEOUT, |raw| {
            values::duration(raw, true)
        }),
        drain_before_stop: v.value(Key::DrainBeforeStop, defaults::DRAIN_BEFORE_STOP, |raw| {
            values::duration(raw, true)
        }),
        boot_timeout: v.value(
            Key::BootTimeout,
            defaults::BOOT_TIMEOUT,
            values::positive_duration,
        ),
        startup_attempts: v.value(Key::StartupAttempts, defaults::STARTUP_ATTEMPTS, |raw| {
            values::count(raw, 1..=u32::MAX, "3")
        }),
        max_surge: v.value(Key::MaxSurge, defaults::MAX_SURGE, |raw| {
            values::count(raw, 1..=MAX_SURGE, "1")
        }),
        max_requests: v.value(Key::MaxRequests, defaults::MAX_REQUESTS, |raw| {
            values::optional_number(raw, "1000")
        }),
        max_requests_jitter: v.value(
            Key::MaxRequestsJitter,
            defaults::MAX_REQUESTS_JITTER,
            |raw| values::number(raw, 0..=u64::MAX, "50"),
        ),
        max_worker_memory: v.value(Key::MaxWorkerMemory, defaults::MAX_WORKER_MEMORY, |raw| {
            values::size(raw, MIN_WORKER_MEMORY)
        }),
        max_worker_lifetime: v.value(
            Key::MaxWorkerLifetime,
            defaults::MAX_WORKER_LIFETIME,
            values::optional_duration,
        ),
        max_worker_lifetime_jitter: v.value(
            Key::MaxWorkerLifetimeJitter,
            defaults::MAX_WORKER_LIFETIME_JITTER,
            |raw| values::duration(raw, true),
        ),
        memory_check_interval: v.value(
            Key::MemoryCheckInterval,
            defaults::MEMORY_CHECK_INTERVAL,
            |raw| values::duration_at_least(raw, MIN_MEMORY_CHECK_INTERVAL),
        ),
        backlog: v.value(Key::Backlog, defaults::BACKLOG, |raw| {
            values::count(raw, 1..=65535, "2048")
        }),
        worker_connections: v.value(
            Key::WorkerConnections,
            defaults::WORKER_CONNECTIONS,
            |raw| values::count(raw, 1..=1_000_000, "1000"),
        ),
        keep_alive: v.value(Key::KeepAlive, defaults::KEEP_ALIVE, |raw| {
            values::duration_at_most(raw, MAX_KEEP_ALIVE)
        }),
        limit_request_line: v.value(Key::LimitRequestLine, defaults::LIMIT_REQUEST_LINE, |raw| {
            values::count_from_to(raw, 0..=8190, "8190")
        }),
        limit_request_fields: v.value(
            Key::LimitRequestFields,
            defaults::LIMIT_REQUEST_FIELDS,
            |raw| values::count_from_to(raw, 0..=32768, "100"),
        ),
        limit_request_field_size: v.value(
            Key::LimitRequestFieldSize,
            defaults::LIMIT_REQUEST_FIELD_SIZE,
            |raw| values::count_from_to(raw, 0..=u32::MAX, "8190"),
        ),
        forwarded_allow_ips: v.value(Key::ForwardedAllowIps, None, |raw| {
            values::forwarded_allow_ips(raw).map(Some)
        }),
        proxy_protocol: v.value(Key::ProxyProtocol, false, values::boolean),
        proxy_allow_from: v.value(
            Key::ProxyAllowFrom,
            defaults::PROXY_ALLOW_FROM.to_string(),
            values::forwarded_allow_ips,
        ),
        root_path: v.value(Key::RootPath, String::new(), values::root_path),
        ready_path: v.value(Key::ReadyPath, None, |raw| {
            values::ready_path(raw).map(Some)
        }),
        tls: v.tls(engine),
        http: v.http(engine),
        log_level: v.value(Key::LogLevel, defaults::LOG_LEVEL, values::log_level),
        log_format: v.value(Key::LogFormat, defaults::LOG_FORMAT, values::log_format),
        log_file: v.file_path(Key::LogFile, "\"/var/log/herdsman/master.log\""),
        access_log: v.access_log_enabled(),
        access_log_file: v.access_log_file(),
        access_log_format: v.access_log_format(),
        capture_output: v.value(
            Key::CaptureOutput,
            defaults::CAPTURE_OUTPUT,
            values::boolean,
        ),
        pidfile: v.file_path(Key::Pidfile, "\"/run/herdsman.pid\""),
        proc_name: v.value(Key::ProcName, None, |raw| values::proc_name(raw).map(Some)),
        user: v.value(Key::User, None, |raw| account::user(raw).map(Some)),
        group: v.value(Key::Group, None, |raw| account::group(raw).map(Some)),
        umask: v.value(Key::Umask, None, |raw| account::umask(raw).map(Some)),
        no_new_privs: v.value(Key::NoNewPrivs, defaults::NO_NEW_PRIVS, values::boolean),
        control_socket: v.control_socket(),
        admin_bind: v.admin_bind(),
        ready_min: v.value(Key::ReadyMin, defaults::READY_MIN, values::ready_min),
        config_file,
        gunicorn: None,
        notes: Vec::new(),
    };
    let mut config = config;
    v.identity(&mut config, nix::unistd::geteuid(), nix::unistd::getegid());
    if v.errors.is_empty() {
        Ok(config)
    } else {
        Err(v.errors)
    }
}

/// Stands in for a missing or invalid app while the other keys are still being checked.
fn placeholder_app() -> AppSpec {
    AppSpec {
        module: String::new(),
        attr: String::new(),
        factory: defaults::FACTORY,
    }
}

mod access;

struct Validator<'a> {
    layer: &'a Layer,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    /// The converted value of `key`, its default if unset, or the default plus a recorded error.
    fn value<T>(
        &mut self,
        key: Key,
        default: T,
        convert: impl Fn(&Raw) -> Result<T, Invalid>,
    ) -> T {
        let layer = self.layer;
        let Some(given) = layer.get(key) else {
            return default;
        };
        convert(&given.value).unwrap_or_else(|invalid| {
            self.errors.push(invalid.at(&given.origin, key.name()));
            default
        })
    }

    /// `interface`, or asgi when a uvicorn worker class is given and `interface` is not; a
    /// worker class that contradicts an explicit `interface = "wsgi"` is an error.
    fn interface(&mut self) -> Interface {
        let interface = self.value(Key::Interface, defaults::INTERFACE, values::interface);
        let Some(class) = self.layer.get(Key::WorkerClass) else {
            return interface;
        };
        let Ok(name) = values::worker_class(&class.value) else {
            return interface; // reported with the key itself
        };
        match (self.layer.get(Key::Interface), interface) {
            (None, _) => Interface::Asgi,
            (Some(given), Interface::Wsgi) => {
                let invalid = Invalid::new(
                    format!(
                        "is \"wsgi\", but worker_class {name} is uvicorn's worker, which serves ASGI apps"
                    ),
                    Fix::Advice("drop the worker class (herdsman needs none), or set interface to \"asgi\"".into()),
                );
                let origin = given.origin.clone();
                self.reject::<()>(invalid, &origin, Key::Interface.name());
                interface
            }
            (Some(_), other) => other,
        }
    }

    /// A string or a list of strings, as paths (not checked for existence: a watched path may
    /// appear later).
    fn path_list(&mut self, key: Key, example: &str) -> Vec<PathBuf> {
        self.text_list(key, example, "paths", |text| Some(PathBuf::from(text)))
    }

    /// A string or a list of strings, as glob patterns of file names (no `/`: directories are
    /// `reload_dir`'s).
    fn name_patterns(&mut self, key: Key, example: &str) -> Vec<String> {
        let what =
            "patterns of file names such as *.html (no /: watch a directory with reload_dir)";
        self.text_list(key, example, what, |text| {
            (!text.contains('/')).then(|| text.to_string())
        })
    }

    /// A string or a list of strings, each non-empty entry (trimmed) read by `read`; the others
    /// (and those it refuses) are reported as not being `what`.
    fn text_list<T>(
        &mut self,
        key: Key,
        example: &str,
        what: &str,
        read: impl Fn(&str) -> Option<T>,
    ) -> Vec<T> {
        let layer = self.layer;
        let Some(given) = layer.get(key) else {
            return Vec::new();
        };
        let items = match &given.value {
            Raw::List(items) => items.as_slice(),
            _ => std::slice::from_ref(given),
        };
        let mut values = Vec::new();
        for item in items {
            let value = match &item.value {
                Raw::Text(text) if !text.trim().is_empty() => read(text.trim()),
                _ => None,
            };
            match value {
                Some(value) => values.push(value),
                None => {
                    let invalid = Invalid::examples(
                        format!("entries must be {what}, got {}", item.value.describe()),
                        &[example],
                    );
                    self.reject::<()>(invalid, &item.origin, key.name());
                }
            }
        }
        values
    }

    /// Records `invalid` for `key` at `origin` and returns `None`.
    fn reject<T>(&mut self, invalid: Invalid, origin: &Origin, key: &str) -> Option<T> {
        self.errors.push(invalid.at(origin, key));
        None
    }

    fn app(&mut self) -> Option<AppSpec> {
        let layer = self.layer;
        let Some(given) = layer.get(Key::App) else {
            self.errors.push(ConfigError::MissingApp);
            return None;
        };
        let parsed =
            values::text(&given.value, "\"myproject.asgi:application\"").and_then(app::parse);
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(invalid) => return self.reject(invalid, &given.origin, Key::App.name()),
        };
        let factory = self.factory(parsed.factory)?;
        Some(AppSpec {
            module: parsed.module,
            attr: parsed.attr,
            factory,
        })
    }

    /// `factory`, or `true` when the app spec ends in `()`; `None` if the two disagree.
    fn factory(&mut self, called: bool) -> Option<bool> {
        let layer = self.layer;
        let explicit = self.value(Key::Factory, None, |raw| values::boolean(raw).map(Some));
        match (explicit, layer.get(Key::Factory)) {
            (Some(false), Some(given)) if called => {
                let invalid = Invalid::advice(
                    "is false, but the app spec ends in `()`, which calls a factory",
                    "drop the `()` from the app spec, or set `factory` to true",
                );
                self.reject(invalid, &given.origin, Key::Factory.name())
            }
            _ => Some(called || explicit.unwrap_or(defaults::FACTORY)),
        }
    }

    /// Completes `user` with its supplementary groups, and checks that this master (running as
    /// `euid`/`egid`) may give the workers that identity.
    fn identity(&mut self, config: &mut Config, euid: nix::unistd::Uid, egid: nix::unistd::Gid) {
        let gid = account::workers_gid(config.user.as_ref(), config.group.as_ref());
        if let Some(user) = config.user.as_mut() {
            let groups = match gid {
                Some(gid) => account::supplementary_groups(user, gid),
                None => Err(account::no_primary_group(user.uid)),
            };
            match groups {
                Ok(groups) => user.groups = groups,
                Err(invalid) => self.reject_key(Key::User, invalid),
            }
        }
        let uid = config.user.as_ref().map(|u| u.uid);
        let checked = account::check_can_switch(euid.as_raw(), egid.as_raw(), uid, gid);
        if let Err((is_user, invalid)) = checked {
            let key = if is_user || config.group.is_none() {
                Key::User
            } else {
                Key::Group
            };
            self.reject_key(key, invalid);
        }
    }

    /// Records `invalid` at the origin of `key`, which must have been given.
    fn reject_key(&mut self, key: Key, invalid: Invalid) {
        let layer = self.layer;
        let given = layer.get(key).expect("only given keys are rejected");
        self.errors.push(invalid.at(&given.origin, key.name()));
    }

    fn env(&mut self) -> Vec<(String, String)> {
        let layer = self.layer;
        let Some(given) = layer.get(Key::Env) else {
            return Vec::new();
        };
        let Raw::Table(entries) = &given.value else {
            let problem = format!("must be a table of strings, got {}", given.value.describe());
            let invalid =
                Invalid::advice(problem, "write it as a table: [env] then NAME = \"value\"");
            return self
                .reject(invalid, &given.origin, "env")
                .unwrap_or_default();
        };
        entries
            .iter()
            .filter_map(|(name, value)| self.env_var(name, value))
            .collect()
    }

    fn env_var(&mut self, name: &str, value: &Sourced<Raw>) -> Option<(String, String)> {
        if !is_env_name(name) {
            let problem = format!("variable name {name:?} is not valid");
            let advice =
                "use letters, digits and `_`, not starting with a digit, e.g. DJANGO_SETTINGS";
            return self.reject(Invalid::advice(problem, advice), &value.origin, "env");
        }
        match &value.value {
            Raw::Text(text) => Some((name.to_string(), text.clone())),
            other => {
                let problem = format!("must be a string, got {}", other.describe());
                let invalid = Invalid::advice(problem, env_value_advice(name, &value.origin));
                self.reject(invalid, &value.origin, &format!("env.{name}"))
            }
        }
    }
}

/// Quote the value; or, for a herdsman key written below `[env]` in the file, move it up.
fn env_value_advice(name: &str, origin: &Origin) -> String {
    match (Key::from_name(name), origin) {
        (Some(_), Origin::File { .. }) => format!(
            "`{name}` is a herdsman key that landed in the [env] table: move it above [env] \
             (everything below a [table] header belongs to that table)"
        ),
        _ => format!("quote it: {name} = \"...\""),
    }
}

/// A POSIX-portable environment variable name.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
    first_ok && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}
