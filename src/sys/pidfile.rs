//! The pidfile (`--pid FILE`): written once at start, after the listeners are bound and before
//! any worker is forked, and removed at exit only if it is still ours.
//!
//! Writing never follows a symlink and never leaves a half-written file under the real name: the
//! pid goes into `FILE.tmp.<pid>` (created with `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0644, synced),
//! which is then *linked* to `FILE` when nothing is there (so two masters starting together
//! cannot both win) or *renamed* over a stale one. What is at `FILE` beforehand decides:
//! - nothing: written;
//! - a symlink, or anything but a regular file: refused, nothing touched;
//! - a regular file naming a live process: refused (another herdsman is probably running);
//! - a regular file naming no live process, or unreadable as a pid: stale, replaced.
//!
//! At exit the file is removed only if the path still holds a regular file with our pid: a
//! pidfile replaced by someone else (a second instance, an operator) is left alone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    #[error("refusing the pidfile {}: it is a symlink (a pidfile is never written through one); remove it or choose another path", path.display())]
    Symlink { path: PathBuf },
    #[error("refusing the pidfile {}: it is a {kind}, not a regular file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("refusing the pidfile {}: it names pid {pid} ({command}), which is running; another herdsman? stop it first, or remove the file if that process is not one", path.display())]
    Running {
        path: PathBuf,
        pid: i32,
        command: String,
    },
    #[error("could not inspect the pidfile {}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not write the pidfile {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A pidfile this process wrote. Call [`Pidfile::remove`] at exit.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: u32,
}

/// What the path held before we wrote.
enum Existing {
    Nothing,
    Stale,
}

impl Pidfile {
    /// Writes our pid to `path`, or refuses (see the module doc).
    pub fn create(path: &Path) -> Result<Pidfile, PidfileError> {
        let pid = std::process::id();
        // One retry: another process may create or remove the file between our look and link.
        for _ in 0..2 {
            let existing = inspect(path)?;
            let temp = write_temp(path, pid).map_err(|source| write_error(path, source))?;
            let placed = place(&temp, path, existing);
            let _ = fs::remove_file(&temp);
            match placed {
                Ok(()) => {
                    sync_dir(path);
                    return Ok(Pidfile {
                        path: path.to_path_buf(),
                        pid,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(write_error(path, source)),
            }
        }
        inspect(path)?;
        let changing = io::Error::new(io::ErrorKind::AlreadyExists, "the path keeps changing");
        Err(write_error(path, changing))
    }

    /// The pidfile this very process wrote before an in-place upgrade replaced its image (the
    /// pid is the same): removed at exit like one it created.
    pub fn adopt(path: &Path) -> Pidfile {
        Pidfile {
            path: path.to_path_buf(),
            pid: std::process::id(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it is still ours. Returns whether it was removed; `Ok(false)` means
    /// something else is there now and was left alone.
    pub fn remove(self) -> io::Result<bool> {
        let meta = match fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if !meta.file_type().is_file() || read_pid(&self.path) != Some(self.pid as i32) {
            return Ok(false);
        }
        fs::remove_file(&self.path)?;
        Ok(true)
    }
}

fn write_error(path: &Path, source: io::Error) -> PidfileError {
    PidfileError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Decides from what is at `path` whether we may write there.
fn inspect(path: &Path) -> Result<Existing, PidfileError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(source) => {
            return Err(PidfileError::Inspect {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        return Err(PidfileError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if !file_type.is_file() {
        let kind = match () {
            _ if file_type.is_dir() => "directory",
            _ if file_type.is_socket() => "socket",
            _ if file_type.is_fifo() => "fifo",
            _ => "special file",
        };
        return Err(PidfileError::NotAFile {
            path: path.to_path_buf(),
            kind,
        });
    }
    match read_pid(path) {
        Some(pid) if pid as u32 != std::process::id() && is_alive(pid) => {
            Err(PidfileError::Running {
                path: path.to_path_buf(),
                pid,
                command: command_name(pid),
            })
        }
        _ => Ok(Existing::Stale),
    }
}

/// The pid a pidfile holds, if it holds one (read without following a symlink).
fn read_pid(path: &Path) -> Option<i32> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, 64), &mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.trim().parse().ok().filter(|&pid: &i32| pid > 0)
}

/// Whether `pid` is a running process (signal 0; EPERM means it exists but is not ours).
fn is_alive(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {
            // A zombie is not running anything.
            crate::sys::proc::state(pid) != Some('Z')
        }
        Err(_) => false,
    }
}

fn command_name(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().to_string())
        .unwrap_or_else(|_| "command unknown".to_string())
}

/// `FILE.tmp.<pid>`, created exclusively, holding "<pid>\n", synced to disk.
fn write_temp(path: &Path, pid: u32) -> io::Result<PathBuf> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp.{pid}"));
    let temp = PathBuf::from(name);
    let mut file = match create_exclusive(&temp) {
        // A leftover of an earlier process with our pid (or a planted symlink): unlinking
        // removes the name only, never what a symlink points to.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(&temp)?;
            create_exclusive(&temp)?
        }
        other => other?,
    };
    let written = (|| {
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.write_all(format!("{pid}\n").as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(temp)
}

fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT | O_EXCL: never follows a symlink at the path
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Puts the written `temp` at `path`: `link` when nothing was there (fails if something
/// appeared meanwhile), `rename` over a stale file. Neither follows a symlink at `path`.
fn place(temp: &Path, path: &Path, existing: Existing) -> io::Result<()> {
    match existing {
        Existing::Nothing => match fs::hard_link(temp, path) {
            // Filesystems without hard links: fall back to rename (atomic, not exclusive).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP)) => {
                fs::rename(temp, path)
            }
            other => other,
        },
        // rename replaces the directory entry itself: even a symlink planted since we looked is
        // replaced, never followed.
        Existing::Stale => fs::rename(temp, path),
    }
}

/// Makes the new directory entry durable; best effort (a pidfile is not precious).
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    /// The inode of `path` (not following symlinks).
    fn inode(path: &Path) -> u64 {
        fs::symlink_metadata(path).expect("stat").ino()
    }

    fn ours() -> String {
        format!("{}\n", std::process::id())
    }

    #[test]
    fn writes_our_pid_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        let pidfile = Pidfile::create(&path).expect("create");
        assert_eq!(fs::read_to_string(&path).unwrap(), ours());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left");
        assert!(pidfile.remove().unwrap());
        assert!(!path.exists());
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, "keep me").unwrap();
        let path = dir.path().join("app.pid");
        symlink(&target, &path).unwrap();
        let err = Pidfile::create(&path).unwrap_err();
        assert!(matches!(err, PidfileError::Symlink { .. }), "{err}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
        // A dangling symlink too: following it would create the target.
        let path = dir.path().join("dangling.pid");
        symlink(dir.path().join("nowhere"), &path).unwrap();
        assert!(matches!(
            Pidfile::create(&path),
            Err(PidfileError::Symlink { .. })
        ));
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn a_live_pid_is_refused_and_a_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        // pid 1 always exists.
        fs::write(&path, "1\n").unwrap();
        let err = Pidfile::create(&path).unwrap_err();
        assert!(matches!(err, PidfileError::Running { pid: 1, .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\n");
        // A reaped child's pid is free (until reused, which the kernel delays).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(&path, format!("{dead}\n")).unwrap();
        let before = inode(&path);
        let pidfile = Pidfile::create(&path).expect("stale replaced");
        assert_eq!(fs::read_to_string(&path).unwrap(), ours());
        assert_ne!(inode(&path), before, "replaced by rename, not rewritten");
        pidfile.remove().unwrap();
        fs::write(&path, "garbage").unwrap();
        Pidfile::create(&path)
            .expect("garbage is stale")
            .remove()
            .unwrap();
    }

    #[test]
    fn a_pidfile_replaced_by_someone_else_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        let pidfile = Pidfile::create(&path).unwrap();
        fs::write(&path, "1\n").unwrap();
        assert!(!pidfile.remove().unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\n");
        let pidfile = Pidfile::create(&dir.path().join("b.pid")).unwrap();
        fs::remove_file(dir.path().join("b.pid")).unwrap();
        symlink(dir.path().join("app.pid"), dir.path().join("b.pid")).unwrap();
        assert!(!pidfile.remove().unwrap(), "a symlink is never ours");
        assert!(dir.path().join("b.pid").exists());
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Pidfile::create(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                PidfileError::NotAFile {
                    kind: "directory",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_leftover_temporary_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.pid");
        let temp = dir
            .path()
            .join(format!("app.pid.tmp.{}", std::process::id()));
        symlink(dir.path().join("victim"), &temp).unwrap();
        Pidfile::create(&path).unwrap().remove().unwrap();
        assert!(!dir.path().join("victim").exists());
        assert!(!temp.exists());
    }
}
