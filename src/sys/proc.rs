//! Readings from /proc about our own children: whether a pid is still one of ours and in which
//! state, memory figures and CPU time. Every function tolerates the process having vanished.

use std::fs;

/// The single-letter state from /proc/PID/stat (`R`, `S`, `D`, `Z`, `T`, ...), or `None` if the
/// process no longer exists.
pub fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name sits in parentheses and may itself contain spaces or parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// User plus system CPU time in seconds from /proc/PID/stat, or `None` if unreadable.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / clock_ticks_per_second() as f64)
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line, in clock ticks.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // Fields are counted after the command name, which sits in parentheses and may itself
    // contain spaces or parentheses; the first field after it is field 3 (the state).
    let mut after = stat[stat.rfind(')')? + 1..].split_whitespace().skip(14 - 3);
    let utime: u64 = after.next()?.parse().ok()?;
    let stime: u64 = after.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Resident set size in bytes from /proc/PID/statm, or `None` if unreadable.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// Proportional set size in bytes from /proc/PID/smaps_rollup: shared pages count once, split
/// between the processes that share them, so copy-on-write memory is not counted N times.
pub fn pss_bytes(pid: i32) -> Option<u64> {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_kb_field(&rollup, "Pss:").map(|kb| kb * 1024)
}

fn parse_kb_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_memory() {
        let me = std::process::id() as i32;
        assert!(rss_bytes(me).is_some_and(|b| b > 0));
        assert!(pss_bytes(me).is_some_and(|b| b > 0));
        assert!(state(me).is_some(), "our own state is readable");
        assert!(cpu_seconds(me).is_some());
        assert_eq!(cpu_seconds(i32::MAX), None);
        assert_eq!(pss_bytes(i32::MAX), None);
    }

    #[test]
    fn parses_cpu_ticks_after_an_awkward_command_name() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 9 1 1";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn parses_kb_fields() {
        let text = "55d0-7ff [rollup]\nRss:  2048 kB\nPss:    1000 kB\nPss_Anon: 10 kB\n";
        assert_eq!(parse_kb_field(text, "Pss:"), Some(1000));
        assert_eq!(parse_kb_field(text, "Swap:"), None);
    }
}
