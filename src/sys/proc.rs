//! Readings from /proc about our own children: whether a pid is still one of ours and in which
//! state, and memory figures. Every function tolerates the process having vanished.

use std::fs;

/// The single-letter state from /proc/PID/stat (`R`, `S`, `D`, `Z`, `T`, ...), or `None` if the
/// process no longer exists.
pub fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name sits in parentheses and may itself contain spaces or parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// Resident set size in bytes from /proc/PID/statm, or `None` if unreadable.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}
