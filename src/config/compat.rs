//! gunicorn flags that mean nothing to herdsman, taken so that an unchanged gunicorn command line
//! (or `GUNICORN_CMD_ARGS`) still starts: each accepted one is named in a warning saying why it
//! changes nothing; the few that would change what the operator gets (`--daemon`, `--paste`) are
//! refused with the fix. Hidden from `--help`: they are not herdsman's settings.
//! docs/migrating-from-gunicorn.md has a row for each.

use super::error::ConfigError;
use super::layer::Origin;
use clap::Args;

#[derive(Args, Debug, Clone, Default)]
pub struct GunicornCompat {
    #[arg(long, value_name = "DIR", hide = true)]
    pub worker_tmp_dir: Option<String>,
    #[arg(long, value_name = "ADDR", hide = true)]
    pub statsd_host: Option<String>,
    #[arg(long, value_name = "PREFIX", hide = true)]
    pub statsd_prefix: Option<String>,
    #[arg(long, value_name = "TAGS", hide = true)]
    pub dogstatsd_tags: Option<String>,
    #[arg(long, value_name = "FILE", hide = true)]
    pub log_config: Option<String>,
    #[arg(long, value_name = "FILE", hide = true)]
    pub log_config_json: Option<String>,
    #[arg(long, hide = true)]
    pub log_syslog: bool,
    #[arg(long, value_name = "ADDR", hide = true)]
    pub log_syslog_to: Option<String>,
    #[arg(long, value_name = "PREFIX", hide = true)]
    pub log_syslog_prefix: Option<String>,
    #[arg(long, value_name = "FACILITY", hide = true)]
    pub log_syslog_facility: Option<String>,
    #[arg(long, hide = true)]
    pub disable_redirect_access_to_syslog: bool,
    #[arg(long, hide = true)]
    pub no_sendfile: bool,
    #[arg(long, hide = true)]
    pub reuse_port: bool,
    #[arg(long, hide = true)]
    pub initgroups: bool,
    #[arg(long = "enable-stdio-inheritance", short = 'R', hide = true)]
    pub enable_stdio_inheritance: bool,
    #[arg(long, hide = true)]
    pub check_config: bool,
    #[arg(long, hide = true)]
    pub print_config: bool,
    #[arg(long, short = 'D', hide = true)]
    pub daemon: bool,
    #[arg(long, value_name = "FILE", hide = true)]
    pub paste: Option<String>,
    #[arg(long, hide = true)]
    pub spew: bool,
    #[arg(long, hide = true)]
    pub do_handshake_on_connect: bool,
    #[arg(long, hide = true)]
    pub suppress_ragged_eofs: bool,
}

/// (flag, why it changes nothing here).
type Note = (&'static str, &'static str);

impl GunicornCompat {
    /// The accepted flags that were given, each with why it changes nothing.
    fn ignored(&self) -> Vec<Note> {
        let given = |set: bool, note: Note| set.then_some(note);
        [
            given(
                self.worker_tmp_dir.is_some(),
                ("--worker-tmp-dir", "herdsman's workers keep no heartbeat file"),
            ),
            given(
                self.statsd_host.is_some()
                    || self.statsd_prefix.is_some()
                    || self.dogstatsd_tags.is_some(),
                (
                    "--statsd-host",
                    "herdsman has no StatsD client: scrape /metrics on --admin-bind (Prometheus) instead",
                ),
            ),
            given(
                self.log_config.is_some() || self.log_config_json.is_some(),
                (
                    "--log-config",
                    "herdsman's own log is set with --log-level, --log-format and --log-file, and the app configures its own logging",
                ),
            ),
            given(
                self.log_syslog
                    || self.log_syslog_to.is_some()
                    || self.log_syslog_prefix.is_some()
                    || self.log_syslog_facility.is_some()
                    || self.disable_redirect_access_to_syslog,
                (
                    "--log-syslog",
                    "herdsman logs to stderr or --log-file; under systemd, journald is the syslog",
                ),
            ),
            given(
                self.no_sendfile,
                ("--no-sendfile", "the engines never use sendfile(2)"),
            ),
            given(
                self.reuse_port,
                (
                    "--reuse-port",
                    "every worker serves the master's one listening socket (a second server on the port must fail)",
                ),
            ),
            given(
                self.initgroups,
                (
                    "--initgroups",
                    "workers always get the user's supplementary groups",
                ),
            ),
            given(
                self.enable_stdio_inheritance,
                (
                    "--enable-stdio-inheritance",
                    "workers always inherit stdout and stderr (or --capture-output sends them through the master)",
                ),
            ),
            given(
                self.check_config || self.print_config,
                (
                    "--check-config",
                    "use `herdsman check` with the same options: it validates, prints the effective configuration and imports the app",
                ),
            ),
            given(
                self.do_handshake_on_connect || self.suppress_ragged_eofs,
                (
                    "--do-handshake-on-connect",
                    "the TLS handshake always runs in the connection's task, and a client that closes without close_notify is an ordinary close",
                ),
            ),
            given(
                self.spew,
                ("--spew", "herdsman has no line tracer; run the app under a debugger instead"),
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Warnings for the accepted flags given, `source` naming where (`the command line`,
    /// `GUNICORN_CMD_ARGS`).
    pub fn warnings(&self, source: &str) -> Vec<String> {
        self.ignored()
            .into_iter()
            .map(|(flag, why)| {
                format!(
                    "{source}: gunicorn's {flag} changes nothing here ({why}): ignored; remove it"
                )
            })
            .collect()
    }

    /// The refused flags given, as configuration errors at `origin(flag)`.
    pub fn refusals(&self, origin: impl Fn(&str) -> Origin) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.daemon {
            errors.push(ConfigError::Refused {
                origin: origin("--daemon"),
                name: "daemon".into(),
                reason: "herdsman does not daemonize: it stays in the foreground for its supervisor"
                    .into(),
                fix: "remove -D/--daemon and run herdsman under systemd, a container runtime or supervisord (docs/deploy/)"
                    .into(),
            });
        }
        if self.paste.is_some() {
            errors.push(ConfigError::Refused {
                origin: origin("--paste"),
                name: "paste".into(),
                reason: "PasteDeploy configurations are not read".into(),
                fix: "give the app as MODULE:ATTR (the WSGI callable your .ini file builds)".into(),
            });
        }
        errors
    }
}
