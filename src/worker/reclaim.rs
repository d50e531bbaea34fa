//! Runtime directories left behind by masters that could not clean up (SIGKILL, OOM, a power
//! cut): each `herdsman-XXXXXX` directory holds a lock file, [`LOCK_FILE`], on which its master
//! keeps an exclusive `flock` for as long as it runs. The kernel drops that lock when the
//! master's process ends, however it ends, so a lock that can be taken means the directory is
//! dead. A starting master (or `herdsman check`) removes the dead directories of its own user in
//! the parent directory it is about to use.
//!
//! What is never touched: a symlink, anything that is not a directory, a directory owned by
//! another user, one without a lock file (another program's, the per-user control directory
//! `herdsman-<uid>`, or a runtime directory from a herdsman without locks: whether its master
//! lives cannot be told), and one whose lock is held (a live master, a `check` under way).
//!
//! The lock file is created under a temporary name, locked, then renamed into place, so a
//! [`LOCK_FILE`] that can be seen is already locked: a directory being created is never taken
//! for a dead one. The lock fd is close-on-exec: workers never hold it, and an in-place upgrade
//! lets it go with the old image, whose directory the new image then removes.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// The lock file in every runtime directory.
pub const LOCK_FILE: &str = ".herdsman-master.lock";
/// What runtime directories are named: this prefix, then random characters.
pub const PREFIX: &str = "herdsman-";

/// Creates the locked lock file in `dir`; the lock lasts as long as the returned file is open.
pub fn lock(dir: &Path) -> io::Result<File> {
    let staging = dir.join(".herdsman-master.lock.new");
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&staging)?;
    try_lock(&file)?.then_some(()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            "a new lock file is locked already",
        )
    })?;
    fs::rename(&staging, dir.join(LOCK_FILE))?;
    Ok(file)
}

/// Takes the exclusive lock without waiting: `Ok(false)` if someone holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock only acts on the open descriptor `file` owns; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    match Errno::result(rc) {
        Ok(_) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

/// What a sweep of one parent directory did.
#[derive(Debug, Default)]
pub struct Reclaimed {
    /// The dead runtime directories removed.
    pub removed: Vec<PathBuf>,
    /// Dead ones that could not be removed, with why.
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// Removes the dead runtime directories of this user in `parent` (see the module doc).
pub fn reclaim(parent: &Path) -> Reclaimed {
    let mut done = Reclaimed::default();
    let Ok(entries) = fs::read_dir(parent) else {
        return done;
    };
    let uid = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(PREFIX)) {
            continue;
        }
        let dir = entry.path();
        // The entry itself, not what a symlink points to.
        let ours = fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if !ours {
            continue;
        }
        match dead(&dir, uid) {
            Some(lock) => {
                match fs::remove_dir_all(&dir) {
                    Ok(()) => done.removed.push(dir),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => done.failed.push((dir, e)),
                }
                drop(lock);
            }
            None => continue,
        }
    }
    done
}

/// The lock of `dir`, taken, if `dir` holds a lock file of `uid` that nobody holds.
fn dead(dir: &Path, uid: u32) -> Option<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(LOCK_FILE))
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != uid {
        return None;
    }
    try_lock(&file).ok()?.then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime_like(parent: &Path, name: &str) -> PathBuf {
        let dir = parent.join(name);
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join("herdsman_worker.py"), "").expect("write");
        dir
    }

    #[test]
    fn only_unlocked_directories_with_a_lock_file_are_removed() {
        let parent = tempfile::tempdir().expect("temp dir");
        let live = runtime_like(parent.path(), "herdsman-live01");
        let _held = lock(&live).expect("lock");
        let dead = runtime_like(parent.path(), "herdsman-dead01");
        drop(lock(&dead).expect("lock"));
        let legacy = runtime_like(parent.path(), "herdsman-old001");
        let control = runtime_like(parent.path(), "herdsman-0");
        let other = runtime_like(parent.path(), "other-dead01");
        drop(lock(&other).expect("lock"));
        let link = parent.path().join("herdsman-link01");
        std::os::unix::fs::symlink(&dead, &link).expect("symlink");

        let done = reclaim(parent.path());
        assert_eq!(done.removed, vec![dead.clone()], "{done:?}");
        assert!(done.failed.is_empty(), "{done:?}");
        assert!(!dead.exists());
        for kept in [&live, &legacy, &control, &other] {
            assert!(
                kept.join("herdsman_worker.py").exists(),
                "{kept:?} was removed"
            );
        }
        assert!(
            fs::symlink_metadata(&link).is_ok(),
            "the symlink itself is left alone"
        );
        assert!(
            live.join(LOCK_FILE).exists() && !live.join(".herdsman-master.lock.new").exists(),
            "the lock file is in place"
        );
    }
}
