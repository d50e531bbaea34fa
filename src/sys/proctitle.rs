//! The master's process title (`proc_name`, gunicorn's `-n/--name`): what `ps` and `top` show.
//!
//! Linux shows a process's command line from the memory its arguments were passed in
//! (`/proc/PID/cmdline` reads from `arg_start`; when the byte before `arg_end` is no longer NUL it
//! reads on into the environment's strings, up to the first NUL: the `setproctitle(3)`
//! convention). So the title is written over the argument strings and, when it needs more room,
//! over the environment strings, after those have been copied elsewhere and libc's `environ`
//! pointed at the copies. The command name (`/proc/PID/comm`, what `top` shows by default and
//! `pgrep NAME` matches) is set with `prctl(PR_SET_NAME)`, 15 bytes at most.
//!
//! The original arguments are kept first ([`original_args`]): `std::env::args_os` reads the same
//! memory, and an in-place upgrade re-executes with the original arguments.
//!
//! Only in the master's single thread, before the loop starts: nothing else may read the
//! environment while `environ` is repointed.

use std::ffi::{CStr, CString, OsString};
use std::sync::OnceLock;

static ORIGINAL_ARGS: OnceLock<Vec<OsString>> = OnceLock::new();
/// Whether the environment strings were already moved out of the title's way.
static ENVIRON_MOVED: OnceLock<()> = OnceLock::new();

/// The arguments this process was started with, as they were before any title was set. The
/// first call takes them: `main` calls it before anything else.
pub fn original_args() -> &'static [OsString] {
    ORIGINAL_ARGS.get_or_init(|| std::env::args_os().collect())
}

/// The memory Linux shows as the command line: `[arg_start, arg_end)` and the environment
/// strings `[env_start, env_end)` after it, from /proc/self/stat (fields 48 to 51).
fn areas() -> Option<(usize, usize, usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(48 - 3);
    let mut next = || fields.next()?.parse::<usize>().ok();
    let (arg_start, arg_end, env_start, env_end) = (next()?, next()?, next()?, next()?);
    let sane = arg_start < arg_end && arg_end <= env_start && env_start <= env_end;
    sane.then_some((arg_start, arg_end, env_start, env_end))
}

/// Copies every environment string libc's `environ` points into `[start, end)` elsewhere (leaked:
/// the environment lives as long as the process) and points `environ` at the copies.
///
/// # Safety
/// No other thread may read or change the environment meanwhile.
unsafe fn move_environ_out(start: usize, end: usize) {
    extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    // SAFETY: environ is a NULL-terminated array of C strings; the caller guarantees no other
    // thread touches it while we replace entries one by one with equal copies.
    unsafe {
        let mut entry = environ;
        if entry.is_null() {
            return;
        }
        while !(*entry).is_null() {
            let address = *entry as usize;
            if (start..end).contains(&address) {
                let copy = CString::from(CStr::from_ptr(*entry));
                *entry = copy.into_raw();
            }
            entry = entry.add(1);
        }
    }
}

/// Sets the title `ps` shows to `title` (cut to the room there is) and the command name to
/// `comm` (cut to 15 bytes). Best effort: a title that cannot be set changes nothing else.
pub fn set(title: &str, comm: &str) {
    original_args();
    set_comm(comm);
    let Some((arg_start, arg_end, env_start, env_end)) = areas() else {
        return;
    };
    // The environment's area joins the arguments' only when it follows them directly.
    let end = if env_start == arg_end && env_end > env_start {
        if ENVIRON_MOVED.set(()).is_ok() {
            // SAFETY: the master is single-threaded here (module doc).
            unsafe { move_environ_out(env_start, env_end) };
        }
        env_end
    } else {
        arg_end
    };
    let room = end - arg_start;
    let bytes = title.as_bytes();
    let len = bytes.len().min(room.saturating_sub(1));
    // SAFETY: [arg_start, end) is this process's own argument and environment memory (the
    // kernel says where, above); nothing reads it but the kernel for /proc/PID/cmdline, as
    // the arguments were saved by `original_args` and the environment moved out.
    unsafe {
        let area = std::slice::from_raw_parts_mut(arg_start as *mut u8, room);
        area[..len].copy_from_slice(&bytes[..len]);
        area[len..].fill(0);
    }
}

fn set_comm(comm: &str) {
    let mut name = [0u8; 16];
    let bytes = comm.as_bytes();
    let len = bytes.len().min(15);
    name[..len].copy_from_slice(&bytes[..len]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// Titles the master for `name` (`proc_name`), as gunicorn does (`gunicorn: master [NAME]`), with
/// `name` as the command name; `None` changes nothing.
pub fn name_master(name: Option<&str>) {
    if let Some(name) = name {
        set(&format!("herdsman: master [{name}]"), name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_areas_of_this_process_are_found_and_ordered() {
        let (arg_start, arg_end, env_start, env_end) = areas().expect("/proc/self/stat");
        assert!(arg_start < arg_end && arg_end <= env_start && env_start <= env_end);
    }
}
