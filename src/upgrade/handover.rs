//! The handover: what an old image of the master tells the new one it execs into, as one JSON
//! document in a memfd whose number travels in `HERDSMAN_UPGRADE_FD`.
//!
//! It names every fd the new image adopts (the listeners, each worker's channel and captured
//! output pipe: all left open across exec, every other fd of the master is close-on-exec) and
//! the state that goes with them: the workers (id, pid, generation, phase, ages), the next
//! worker id, the target count, the fully resolved worker spec of the current generation (so the
//! new image can keep spawning workers like the current ones if its own configuration turns out
//! unusable), the previous configuration rendered as TOML (its fallback), the pidfile and the
//! runtime directory to clean up, and the signal mask to restore.
//!
//! Compatibility rule: the document carries `"version"`. A binary reads every version it has
//! ever written and refuses any other; before an upgrade the old master asks the new binary, in
//! its `check` run, whether it reads the version about to be written (`HERDSMAN_UPGRADE_CHECK`),
//! so a binary that cannot read it is refused while the old master still serves. Within one
//! version, fields may only be added with a default, and only when a reader that ignores them
//! still behaves correctly; any other change is a new version. Durations are whole
//! milliseconds.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use nix::sys::memfd::{memfd_create, MFdFlags};
use serde::{Deserialize, Serialize};

use super::records::{HandedCounters, HandedRequest};
use crate::addr::BindSpec;
use crate::config::{LogFormat, SpawnMode};
use crate::sockets::BoundAddr;
use crate::sys::environ::OsVar;
use crate::sys::exec::Identity;
use crate::worker::WorkerSpec;

/// Names the fd of the handover memfd in the new image's environment.
pub const FD_VAR: &str = "HERDSMAN_UPGRADE_FD";
/// Names, in the environment of the new binary's `check`, the handover format it will get.
pub const CHECK_VAR: &str = "HERDSMAN_UPGRADE_CHECK";

/// The handover format this binary writes.
///
/// Version 2 added each worker's in-flight file (an fd a version 1 reader would leave open and
/// unowned), the counters and the quarantine (see `records`).
pub const VERSION: u32 = 2;
/// The handover formats this binary reads.
pub const READS: &[u32] = &[1, 2];

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("could not create the handover memfd")]
    Memfd(#[source] nix::Error),
    #[error("could not write the handover")]
    Write(#[source] io::Error),
    #[error("could not read the handover")]
    Read(#[source] io::Error),
    #[error("the handover is not valid JSON of the expected shape")]
    Parse(#[source] serde_json::Error),
    #[error("the handover has format version {found}; this binary reads {READS:?}")]
    Version { found: u32 },
    #[error("the handover was written by pid {written_by}, not by this process")]
    Pid { written_by: u32 },
}

/// Everything the new image takes over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handover {
    pub version: u32,
    /// The master's pid, unchanged by exec: the new image checks it is the one reading.
    pub pid: u32,
    /// How long the master has been running.
    pub uptime_ms: u64,
    /// The signals blocked before the old image blocked them all for the exec.
    pub signal_mask: Vec<i32>,
    /// The old image's runtime directory, which the new image removes once it has its own.
    pub runtime_dir: Option<PathBuf>,
    /// The pidfile the master wrote at its first start (it holds the same pid).
    pub pidfile: Option<PathBuf>,
    /// The previous configuration, rendered as a config file (`config::render`).
    pub config: String,
    /// The previous configuration's `bind` list and `backlog` (to warn about changes that an
    /// upgrade cannot apply).
    pub binds: Vec<Bind>,
    pub backlog: u32,
    /// The previous configuration's `workers`: a number, or `None` for `auto`.
    pub config_workers: Option<u32>,
    /// The target worker count now (scaling included).
    pub target: u32,
    pub next_worker_id: u64,
    /// The current generation: the one every live worker belongs to.
    pub generation: u64,
    /// The current generation's worker spec.
    pub spec: Spec,
    pub listeners: Vec<HandedListener>,
    pub workers: Vec<HandedWorker>,
    /// The captured output pipes (`capture_output`); one may outlive its worker while the
    /// worker's own children hold it.
    pub outputs: Vec<HandedOutput>,
    /// The counters for operators (version 2; absent: zeros).
    #[serde(default)]
    pub counters: HandedCounters,
    /// Requests that killed workers, suspected or quarantined (version 2; absent: none).
    #[serde(default)]
    pub quarantine: Vec<HandedRequest>,
}

/// A [`WorkerSpec`], as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub python: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The variables of the environment whose name or value is not UTF-8, as bytes (added with
    /// byte-for-byte environments; a reader without it drops them, as herdsman then did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_bytes: Vec<(Vec<u8>, Vec<u8>)>,
    pub identity: Option<HandedIdentity>,
    pub umask: Option<u32>,
    pub capture_output: bool,
    /// `spawn = "zygote"` (added with the zygote; absent means exec).
    #[serde(default)]
    pub zygote: bool,
    /// `preload`, with the zygote.
    #[serde(default)]
    pub preload: bool,
    /// The master's log format is JSON (for a zygote's own lines; absent means text).
    #[serde(default)]
    pub log_json: bool,
    /// The workers start with no_new_privs (added with `no_new_privs`; absent means off, as an
    /// image from before it started them).
    #[serde(default)]
    pub no_new_privs: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandedIdentity {
    pub groups: Vec<u32>,
    pub gid: u32,
    pub uid: Option<u32>,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandedListener {
    pub fd: i32,
    pub bind: Bind,
    pub address: Address,
    /// The unix socket file the master created (removed at exit if still the same file).
    pub socket_file: Option<SocketFileId>,
}

/// A [`BindSpec`], as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bind {
    Tcp { host: String, port: u16 },
    Unix { path: PathBuf },
    Fd { fd: i32 },
}

/// A [`BoundAddr`], as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Address {
    Tcp { addr: String },
    Unix { path: PathBuf },
    Inherited { fd: i32, addr: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketFileId {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

/// One worker that has not been reaped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandedWorker {
    pub id: u64,
    pub pid: i32,
    pub generation: u64,
    pub phase: HandedPhase,
    /// The master's end of its channel.
    pub channel_fd: i32,
    /// Time since it was started.
    pub age_ms: u64,
    /// Time since it became ready, if it did.
    pub ready_ms: Option<u64>,
    pub requests: u64,
    /// Its liveness timeout (fixed at spawn: its heartbeat interval derives from it).
    pub timeout_ms: u64,
    /// Its in-flight file, which names the requests it serves (version 2; absent: none, its
    /// death then names no request).
    #[serde(default)]
    pub inflight_fd: Option<i32>,
}

/// The read end of a worker's captured stdout and stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandedOutput {
    pub worker: u64,
    pub pid: i32,
    pub fd: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum HandedPhase {
    Booting,
    Ready,
    /// On its way out for `reason` (a `Reason` name); SIGKILL in `kill_in_ms`.
    Stopping {
        reason: String,
        kill_in_ms: u64,
    },
}

impl Handover {
    /// Every fd the new image adopts: listeners, channels, in-flight files, output pipes.
    pub fn fds(&self) -> Vec<i32> {
        let listeners = self.listeners.iter().map(|l| l.fd);
        let channels = self.workers.iter().map(|w| w.channel_fd);
        let inflight = self.workers.iter().filter_map(|w| w.inflight_fd);
        let outputs = self.outputs.iter().map(|o| o.fd);
        listeners
            .chain(channels)
            .chain(inflight)
            .chain(outputs)
            .collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the handover is plain data: it always serializes")
    }

    /// Parses a handover, refusing a version this binary does not read.
    pub fn from_json(text: &str) -> Result<Handover, HandoverError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let versioned: Versioned = serde_json::from_str(text).map_err(HandoverError::Parse)?;
        if !READS.contains(&versioned.version) {
            return Err(HandoverError::Version {
                found: versioned.version,
            });
        }
        serde_json::from_str(text).map_err(HandoverError::Parse)
    }

    /// Writes the document into a new memfd that is *not* close-on-exec, positioned at its
    /// start, for the new image to read.
    pub fn write_memfd(&self) -> Result<OwnedFd, HandoverError> {
        let name = CString::new("herdsman-upgrade").expect("no NUL in a literal");
        let fd = memfd_create(name.as_c_str(), MFdFlags::empty()).map_err(HandoverError::Memfd)?;
        let mut file = File::from(fd);
        file.write_all(self.to_json().as_bytes())
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(HandoverError::Write)?;
        Ok(OwnedFd::from(file))
    }

    /// Reads the document from the start of `fd` and closes it; checks the version and that
    /// it was written by this very process.
    pub fn read(fd: OwnedFd) -> Result<Handover, HandoverError> {
        let mut file = File::from(fd);
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text))
            .map_err(HandoverError::Read)?;
        let handover = Handover::from_json(&text)?;
        if handover.pid != std::process::id() {
            return Err(HandoverError::Pid {
                written_by: handover.pid,
            });
        }
        Ok(handover)
    }
}

/// The UTF-8 variables of `env`, as strings.
fn text_env(env: &[OsVar]) -> Vec<(String, String)> {
    env.iter()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v.to_str()?.to_string())))
        .collect()
}

/// The others, as bytes.
fn byte_env(env: &[OsVar]) -> Vec<(Vec<u8>, Vec<u8>)> {
    env.iter()
        .filter(|(k, v)| k.to_str().is_none() || v.to_str().is_none())
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

impl From<&WorkerSpec> for Spec {
    fn from(spec: &WorkerSpec) -> Spec {
        Spec {
            python: spec.python.clone(),
            args: spec.args.clone(),
            env: text_env(&spec.env),
            env_bytes: byte_env(&spec.env),
            identity: spec.identity.as_ref().map(|id| HandedIdentity {
                groups: id.groups.clone(),
                gid: id.gid,
                uid: id.uid,
            }),
            umask: spec.umask,
            capture_output: spec.capture_output,
            zygote: spec.spawn == SpawnMode::Zygote,
            preload: spec.preload,
            log_json: spec.log_format == LogFormat::Json,
            no_new_privs: spec.no_new_privs,
        }
    }
}

impl From<Spec> for WorkerSpec {
    fn from(spec: Spec) -> WorkerSpec {
        WorkerSpec {
            python: spec.python,
            args: spec.args,
            env: spec
                .env
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .chain(
                    spec.env_bytes
                        .into_iter()
                        .map(|(k, v)| (OsString::from_vec(k), OsString::from_vec(v))),
                )
                .collect(),
            identity: spec.identity.map(|id| Identity {
                groups: id.groups,
                gid: id.gid,
                uid: id.uid,
            }),
            umask: spec.umask,
            no_new_privs: spec.no_new_privs,
            capture_output: spec.capture_output,
            spawn: if spec.zygote {
                SpawnMode::Zygote
            } else {
                SpawnMode::Exec
            },
            preload: spec.preload,
            log_format: match spec.log_json {
                true => LogFormat::Json,
                false => LogFormat::Text,
            },
        }
    }
}

impl From<&BindSpec> for Bind {
    fn from(spec: &BindSpec) -> Bind {
        match spec {
            BindSpec::Tcp { host, port } => Bind::Tcp {
                host: host.clone(),
                port: *port,
            },
            BindSpec::Unix(path) => Bind::Unix { path: path.clone() },
            BindSpec::Fd(fd) => Bind::Fd { fd: *fd },
        }
    }
}

impl From<Bind> for BindSpec {
    fn from(bind: Bind) -> BindSpec {
        match bind {
            Bind::Tcp { host, port } => BindSpec::Tcp { host, port },
            Bind::Unix { path } => BindSpec::Unix(path),
            Bind::Fd { fd } => BindSpec::Fd(fd),
        }
    }
}

impl From<&BoundAddr> for Address {
    fn from(addr: &BoundAddr) -> Address {
        match addr {
            BoundAddr::Tcp(addr) => Address::Tcp {
                addr: addr.to_string(),
            },
            BoundAddr::Unix(path) => Address::Unix { path: path.clone() },
            BoundAddr::Inherited { fd, addr } => Address::Inherited {
                fd: *fd,
                addr: addr.clone(),
            },
        }
    }
}

impl Address {
    /// The address as the master reports it; a TCP address that does not parse (a newer
    /// writer's notation) is kept as inherited text.
    pub fn to_bound(&self, fd: i32) -> BoundAddr {
        match self {
            Address::Tcp { addr } => match addr.parse() {
                Ok(parsed) => BoundAddr::Tcp(parsed),
                Err(_) => BoundAddr::Inherited {
                    fd,
                    addr: addr.clone(),
                },
            },
            Address::Unix { path } => BoundAddr::Unix(path.clone()),
            Address::Inherited { fd, addr } => BoundAddr::Inherited {
                fd: *fd,
                addr: addr.clone(),
            },
        }
    }
}

/// A handover with every kind of entry (tests).
#[cfg(test)]
pub(crate) fn sample() -> Handover {
    Handover {
        version: VERSION,
        pid: std::process::id(),
        uptime_ms: 12_345,
        signal_mask: vec![],
        runtime_dir: Some("/run/user/1000/herdsman-abc".into()),
        pidfile: None,
        config: "app = \"asgi_app:app\"\n".into(),
        binds: vec![Bind::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        }],
        backlog: 2048,
        config_workers: Some(2),
        target: 3,
        next_worker_id: 9,
        generation: 2,
        spec: Spec {
            python: "/venv/bin/python".into(),
            args: vec!["--app".into(), "asgi_app:app".into()],
            env: vec![("PATH".into(), "/bin".into())],
            env_bytes: vec![(b"NAME".to_vec(), b"caf\xe9".to_vec())],
            identity: Some(HandedIdentity {
                groups: vec![65534],
                gid: 65534,
                uid: Some(65534),
            }),
            umask: Some(0o22),
            capture_output: true,
            zygote: true,
            preload: true,
            log_json: true,
            no_new_privs: true,
        },
        listeners: vec![
            HandedListener {
                fd: 5,
                bind: Bind::Tcp {
                    host: "127.0.0.1".into(),
                    port: 0,
                },
                address: Address::Tcp {
                    addr: "127.0.0.1:41234".into(),
                },
                socket_file: None,
            },
            HandedListener {
                fd: 6,
                bind: Bind::Unix {
                    path: "/run/app.sock".into(),
                },
                address: Address::Unix {
                    path: "/run/app.sock".into(),
                },
                socket_file: Some(SocketFileId {
                    path: "/run/app.sock".into(),
                    dev: 20,
                    ino: 777,
                }),
            },
        ],
        workers: vec![
            HandedWorker {
                id: 7,
                pid: 4307,
                generation: 2,
                phase: HandedPhase::Ready,
                channel_fd: 9,
                age_ms: 60_000,
                ready_ms: Some(59_000),
                requests: 120,
                timeout_ms: 30_000,
                inflight_fd: Some(12),
            },
            HandedWorker {
                id: 8,
                pid: 4310,
                generation: 1,
                phase: HandedPhase::Stopping {
                    reason: "reload".into(),
                    kill_in_ms: 2_500,
                },
                channel_fd: 10,
                age_ms: 90_000,
                ready_ms: None,
                requests: 0,
                timeout_ms: 30_000,
                inflight_fd: None,
            },
        ],
        outputs: vec![HandedOutput {
            worker: 7,
            pid: 4307,
            fd: 11,
        }],
        counters: HandedCounters {
            restarts: [("crash".to_string(), 3)].into(),
            boots: 5,
            boot_seconds: 2.5,
            reloads_refused: 1,
            ..HandedCounters::default()
        },
        quarantine: vec![HandedRequest {
            request: "GET /die".into(),
            deaths: 0,
            last_death_ago_ms: 1_000,
            quarantined_for_ms: Some(59_000),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_and_lists_every_fd() {
        let handover = sample();
        let text = handover.to_json();
        assert!(text.contains("\"version\":2"), "{text}");
        assert!(text.contains("\"state\":\"stopping\""), "{text}");
        assert_eq!(Handover::from_json(&text).expect("parses"), handover);
        assert_eq!(handover.fds(), vec![5, 6, 9, 10, 12, 11]);
    }

    #[test]
    fn a_version_1_handover_reads_with_no_counters_quarantine_or_inflight_files() {
        let mut value: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        let doc = value.as_object_mut().expect("an object");
        doc.insert("version".into(), 1.into());
        doc.remove("counters");
        doc.remove("quarantine");
        for worker in doc["workers"].as_array_mut().expect("workers") {
            worker
                .as_object_mut()
                .expect("a worker")
                .remove("inflight_fd");
        }
        let read = Handover::from_json(&value.to_string()).expect("version 1 reads");
        assert_eq!(read.counters, HandedCounters::default());
        assert!(read.quarantine.is_empty());
        assert!(read.workers.iter().all(|w| w.inflight_fd.is_none()));
    }

    #[test]
    fn an_unknown_version_is_refused_before_its_shape_is_read() {
        let err = Handover::from_json(r#"{"version": 99, "whatever": true}"#).unwrap_err();
        assert!(
            matches!(err, HandoverError::Version { found: 99 }),
            "{err:?}"
        );
        let err = Handover::from_json(r#"{"version": 1}"#).unwrap_err();
        assert!(matches!(err, HandoverError::Parse(_)), "{err:?}");
    }

    #[test]
    fn memfd_round_trip_is_not_close_on_exec_and_checks_the_pid() {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        let handover = sample();
        let fd = handover.write_memfd().expect("memfd");
        let flags = FdFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFD).expect("flags"));
        assert!(!flags.contains(FdFlag::FD_CLOEXEC), "survives exec");
        assert_eq!(Handover::read(fd).expect("read back"), handover);
        let other = Handover {
            pid: std::process::id() + 1,
            ..sample()
        };
        let err = Handover::read(other.write_memfd().expect("memfd")).unwrap_err();
        assert!(matches!(err, HandoverError::Pid { .. }), "{err:?}");
    }

    #[test]
    fn specs_binds_and_addresses_convert_both_ways() {
        let spec: WorkerSpec = sample().spec.into();
        let latin1 = OsString::from_vec(b"caf\xe9".to_vec());
        assert!(
            spec.env.contains(&("NAME".into(), latin1)),
            "{:?}",
            spec.env
        );
        assert_eq!(Spec::from(&spec), sample().spec);
        for bind in [
            BindSpec::Tcp {
                host: "::1".into(),
                port: 80,
            },
            BindSpec::Unix("/x.sock".into()),
            BindSpec::Fd(3),
        ] {
            assert_eq!(BindSpec::from(Bind::from(&bind)), bind);
        }
        let tcp = BoundAddr::Tcp("[::1]:8000".parse().unwrap());
        assert_eq!(Address::from(&tcp).to_bound(5), tcp);
        let inherited = BoundAddr::Inherited {
            fd: 3,
            addr: "unix:/a".into(),
        };
        assert_eq!(Address::from(&inherited).to_bound(3), inherited);
    }
}
