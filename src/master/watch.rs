//! `reload = true` (development): the master watches the source with inotify and asks for a
//! reload, exactly as SIGHUP does (readiness-gated: an edit that breaks the import leaves the old
//! workers serving, and the log says why).
//!
//! What is watched: every directory under each `reload_dir` (the app's directory when none is
//! given: `chdir`, else the master's working directory), recursively, for `.py` files (and names
//! matching a `reload_include` glob) written, moved or deleted, and each `reload_extra_file`
//! (through a watch on its directory). Skipped:
//! directories whose name starts with `.` (`.git`, `.venv`), `__pycache__`, `node_modules`, and
//! any directory holding a `pyvenv.cfg` (a virtualenv). A directory created later is watched from
//! then on. Changes are debounced: the reload is asked for once nothing changed for `DEBOUNCE`, so
//! an editor's save (write, rename, chmod) or a `git checkout` is one reload.
//!
//! Invariants: nothing here blocks (the inotify descriptor is non-blocking and close-on-exec, read
//! only when poll says so); a failure to watch is a warning, never a reason to stop serving; the
//! watched paths are taken at start (a reload does not change them).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tracing::warn;

use crate::config::Config;

/// How long the source must stay unchanged before the reload is asked for.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// Most directories watched: beyond it the rest are not, with a warning (each watch costs the
/// kernel memory, and the per-user default limit is 8192 on older kernels).
const MAX_DIRS: usize = 4096;
const SKIPPED: [&str; 2] = ["__pycache__", "node_modules"];

pub struct Watcher {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    extra: Vec<PathBuf>,
    /// `reload_include`: glob patterns of file names watched besides `*.py`.
    includes: Vec<String>,
    /// When the last change was seen, and which file it was.
    pending: Option<(Instant, PathBuf)>,
    warned_full: bool,
}

impl Watcher {
    /// The watcher `config` asks for; `None` when `reload` is off or inotify is unavailable
    /// (then a warning says so and the server runs without it).
    pub fn start(config: &Config) -> Option<Watcher> {
        if !config.reload {
            return None;
        }
        let inotify = match Inotify::init() {
            Ok(inotify) => inotify,
            Err(e) => {
                warn!(error = %e, "reload: cannot watch the source (inotify): serving without --reload");
                return None;
            }
        };
        let base = match &config.chdir {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        };
        let roots = if config.reload_dirs.is_empty() {
            vec![base.clone()]
        } else {
            config.reload_dirs.iter().map(|d| base.join(d)).collect()
        };
        let mut watcher = Watcher {
            inotify,
            dirs: HashMap::new(),
            extra: config
                .reload_extra_files
                .iter()
                .map(|f| base.join(f))
                .collect(),
            includes: config.reload_includes.clone(),
            pending: None,
            warned_full: false,
        };
        for root in &roots {
            watcher.add_tree(root);
        }
        let parents: Vec<PathBuf> = watcher
            .extra
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for parent in parents {
            watcher.add_dir(&parent);
        }
        tracing::info!(
            directories = watcher.dirs.len(),
            roots = %roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", "),
            "reload: watching the source for changes"
        );
        Some(watcher)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// When the pending reload is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|(at, _)| *at + DEBOUNCE)
    }

    fn skipped(dir: &Path) -> bool {
        let name = dir.file_name().and_then(OsStr::to_str).unwrap_or("");
        name.starts_with('.') && name != "." && name != ".."
            || SKIPPED.contains(&name)
            || dir.join("pyvenv.cfg").exists()
    }

    fn mask() -> WatchMask {
        WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ONLYDIR
    }

    fn add_dir(&mut self, dir: &Path) -> bool {
        if self.dirs.len() >= MAX_DIRS {
            if !self.warned_full {
                warn!(limit = MAX_DIRS, "reload: too many directories, the rest are not watched: narrow it with --reload-dir");
                self.warned_full = true;
            }
            return false;
        }
        match self.inotify.watches().add(dir, Self::mask()) {
            Ok(wd) => {
                self.dirs.insert(wd, dir.to_path_buf());
                true
            }
            Err(e) => {
                warn!(path = %dir.display(), error = %e, "reload: cannot watch this directory");
                false
            }
        }
    }

    /// `root` and the directories under it (depth-first, without following symlinks).
    fn add_tree(&mut self, root: &Path) {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if (dir != root && Self::skipped(&dir)) || !self.add_dir(&dir) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }

    fn wanted(&self, path: &Path) -> bool {
        let name = path.file_name().map(|n| n.to_string_lossy());
        let included = |name: &str| self.includes.iter().any(|p| glob_match(p, name));
        path.extension().is_some_and(|e| e == "py")
            || name.is_some_and(|n| included(&n))
            || self.extra.iter().any(|f| f == path)
    }

    /// Reads what inotify has (poll said it is readable, or a deadline woke the loop).
    pub fn read(&mut self, now: Instant) {
        let mut buffer = [0u8; 4096];
        loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!(error = %e, "reload: reading inotify failed");
                    return;
                }
            };
            let mut new_dirs = Vec::new();
            let mut changed = None;
            for event in events {
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    changed = Some(PathBuf::from("(many files)"));
                    continue;
                }
                let (Some(dir), Some(name)) = (self.dirs.get(&event.wd), event.name) else {
                    continue;
                };
                let path = dir.join(name);
                if event.mask.contains(EventMask::ISDIR) {
                    if event
                        .mask
                        .intersects(EventMask::CREATE | EventMask::MOVED_TO)
                    {
                        new_dirs.push(path);
                    }
                } else if self.wanted(&path) {
                    changed = Some(path);
                }
            }
            for dir in new_dirs {
                self.add_tree(&dir);
            }
            if let Some(path) = changed {
                self.pending = Some((now, path));
            }
        }
    }

    /// The file whose change is due for a reload (once `DEBOUNCE` passed without another).
    pub fn due(&mut self, now: Instant) -> Option<PathBuf> {
        match self.deadline() {
            Some(at) if at <= now => self.pending.take().map(|(_, path)| path),
            _ => None,
        }
    }
}

/// Whether `name` matches the glob `pattern`: `*` any run of characters, `?` one character,
/// `[abc]`, `[a-z]` and `[!abc]` one of (or none of) a set; anything else itself (fnmatch's rules,
/// as uvicorn's --reload-include applies them to file names).
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Backtracking over the last `*` only: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class(&p, pi, n[ni]),
            Some(&c) if c == n[ni] => Some(pi + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((star_p, star_n))) => {
                pi = star_p + 1;
                ni = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[...]` set at `p[start]` tried on `c`: the index after it if `c` is in it, else `None`. An
/// unclosed `[` is the character itself.
fn class(p: &[char], start: usize, c: char) -> Option<usize> {
    let Some(close) = p[start + 1..]
        .iter()
        .skip(1)
        .position(|&x| x == ']')
        .map(|i| start + 2 + i)
    else {
        return (c == '[').then_some(start + 1);
    };
    let mut body = &p[start + 1..close];
    let negated = matches!(body.first(), Some('!'));
    if negated {
        body = &body[1..];
    }
    let mut found = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            found |= body[i] <= c && c <= body[i + 2];
            i += 3;
        } else {
            found |= body[i] == c;
            i += 1;
        }
    }
    (found != negated).then_some(close + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs_match_file_names_as_fnmatch_does() {
        for (pattern, name) in [
            ("*.html", "base.html"),
            ("*.j[0-9]", "x.j2"),
            ("*", ".env"),
            ("?.txt", "a.txt"),
            ("[!a]*", "base.html"),
            ("*.*.bak", "a.b.bak"),
        ] {
            assert!(super::glob_match(pattern, name), "{pattern} ~ {name}");
        }
        for (pattern, name) in [
            ("*.html", "base.htm"),
            ("*.j[0-9]", "x.jx"),
            ("?.txt", "ab.txt"),
            ("[!b]*", "base.html"),
            ("[a-c]", "d"),
        ] {
            assert!(!super::glob_match(pattern, name), "{pattern} !~ {name}");
        }
    }
}
