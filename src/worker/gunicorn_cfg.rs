//! What the Python side of gunicorn's hooks is told about the configuration: the effective
//! settings by their gunicorn names (`server.cfg.bind`, `worker.cfg.timeout`: the values herdsman
//! runs with, whatever layer set them), as the JSON the runtime's `gunicornconf.Config` reads.
//! Shared by the workers' argv (`--gunicorn-cfg`) and the master-side hook processes.

use crate::config::{Config, WorkerCount, WORKER_HOOKS};
use serde_json::{json, Value};

/// The worker argv for `config`'s gunicorn file: `--gunicorn-config PATH --gunicorn-cfg JSON`,
/// only when it defines a worker-side hook (otherwise the workers never execute the file).
pub fn worker_args(config: &Config) -> Vec<String> {
    let Some(file) = &config.gunicorn else {
        return Vec::new();
    };
    if !WORKER_HOOKS.iter().any(|hook| file.has(hook)) {
        return Vec::new();
    }
    let context = json!({
        "cfg": settings(config),
        "server": server(config, None),
        "import_root": file.import_root,
    });
    vec![
        "--gunicorn-config".into(),
        file.path.display().to_string(),
        "--gunicorn-cfg".into(),
        context.to_string(),
    ]
}

/// gunicorn's `server` as the hooks see it; `num_workers`: the current target, when known.
pub fn server(config: &Config, num_workers: Option<u32>) -> Value {
    let workers = num_workers.or(match config.workers {
        WorkerCount::Fixed(n) => Some(n.get()),
        WorkerCount::Auto => None,
    });
    json!({
        "pid": std::process::id(),
        "num_workers": workers,
        "address": config.binds.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
    })
}

/// The effective settings herdsman has, by gunicorn name.
pub fn settings(config: &Config) -> Value {
    let secs = |d: std::time::Duration| d.as_secs_f64();
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let accesslog = match (config.access_log, &config.access_log_file) {
        (false, _) => None,
        (true, None) => Some("-".to_string()),
        (true, Some(p)) => Some(p.display().to_string()),
    };
    json!({
        "wsgi_app": format!("{}:{}", config.app.module, config.app.attr),
        "bind": config.binds.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
        "workers": match config.workers {
            WorkerCount::Fixed(n) => Some(n.get()),
            WorkerCount::Auto => None,
        },
        "worker_class": config.worker_class,
        "threads": config.threads,
        "timeout": secs(config.timeout),
        "graceful_timeout": secs(config.graceful_timeout),
        "keepalive": secs(config.keep_alive),
        "max_requests": config.max_requests.unwrap_or(0),
        "max_requests_jitter": config.max_requests_jitter,
        "backlog": config.backlog,
        "limit_request_line": config.limit_request_line,
        "limit_request_fields": config.limit_request_fields,
        "limit_request_field_size": config.limit_request_field_size,
        "forwarded_allow_ips": config.forwarded_allow_ips,
        "accesslog": accesslog,
        "access_log_format": config.access_log_format,
        "errorlog": path(&config.log_file).unwrap_or_else(|| "-".into()),
        "loglevel": config.log_level.as_str(),
        "capture_output": config.capture_output,
        "pidfile": path(&config.pidfile),
        "user": config.user.as_ref().map(|u| u.uid),
        "group": config.group.as_ref().map(|g| g.gid),
        "umask": config.umask,
        "chdir": path(&config.chdir),
        "pythonpath": (!config.pythonpath.is_empty()).then(|| config.pythonpath.join(",")),
        "raw_env": config.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "preload_app": config.preload,
        "reload": config.reload,
        "reload_extra_files": config.reload_extra_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
}
