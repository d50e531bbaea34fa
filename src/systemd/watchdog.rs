//! systemd's watchdog: with `WatchdogSec=` in the unit, systemd sets `WATCHDOG_USEC` (and
//! `WATCHDOG_PID`) and kills the service when no `WATCHDOG=1` arrives for that long. The master
//! sends one every half period **from its loop**, after handling a wakeup: the loop's own
//! deadline includes the next ping, so a loop that hangs stops pinging and systemd restarts the
//! service, which is the point.

use std::time::{Duration, Instant};

/// Shortest interval between pings, whatever `WATCHDOG_USEC` says.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is not a whole number; the systemd watchdog is not fed")]
pub struct WatchdogError {
    pub var: &'static str,
    pub value: String,
}

/// How often to ping, from `WATCHDOG_USEC` and `WATCHDOG_PID`: `None` when there is no watchdog
/// or it watches another process.
pub fn interval(
    usec: Option<&str>,
    pid: Option<&str>,
    me: u32,
) -> Result<Option<Duration>, WatchdogError> {
    let Some(usec) = usec else { return Ok(None) };
    let number = |var, value: &str| {
        value.trim().parse::<u64>().map_err(|_| WatchdogError {
            var,
            value: value.to_string(),
        })
    };
    if let Some(pid) = pid {
        if number("WATCHDOG_PID", pid)? != u64::from(me) {
            return Ok(None);
        }
    }
    let period = Duration::from_micros(number("WATCHDOG_USEC", usec)?);
    Ok((!period.is_zero()).then(|| (period / 2).max(MIN_INTERVAL)))
}

/// When the next `WATCHDOG=1` is due.
#[derive(Debug)]
pub struct Watchdog {
    every: Duration,
    next: Instant,
}

impl Watchdog {
    /// A watchdog whose first ping is due at once.
    pub fn new(every: Duration, now: Instant) -> Watchdog {
        Watchdog { every, next: now }
    }

    /// Whether a ping is due at `now`; if so, the next one is scheduled.
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.every;
        true
    }

    pub fn next(&self) -> Instant {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_period_for_this_process_only() {
        let half = Some(Duration::from_millis(100));
        assert_eq!(interval(Some("200000"), None, 42), Ok(half));
        assert_eq!(interval(Some("200000"), Some("42"), 42), Ok(half));
        assert_eq!(interval(Some("200000"), Some("41"), 42), Ok(None));
        assert_eq!(interval(None, Some("42"), 42), Ok(None));
        assert_eq!(interval(Some("0"), None, 42), Ok(None));
        assert_eq!(
            interval(Some("1"), None, 42),
            Ok(Some(MIN_INTERVAL)),
            "bounded below"
        );
    }

    #[test]
    fn malformed_values_are_reported() {
        let err = interval(Some("soon"), None, 42).unwrap_err();
        assert_eq!(err.var, "WATCHDOG_USEC");
        let err = interval(Some("1000"), Some("-1"), 42).unwrap_err();
        assert_eq!(err.var, "WATCHDOG_PID");
    }

    #[test]
    fn pings_are_spaced_by_the_interval() {
        let start = Instant::now();
        let mut w = Watchdog::new(Duration::from_millis(100), start);
        assert!(w.due(start), "the first is due at once");
        assert!(!w.due(start + Duration::from_millis(99)));
        assert_eq!(w.next(), start + Duration::from_millis(100));
        assert!(w.due(start + Duration::from_millis(250)));
        assert_eq!(
            w.next(),
            start + Duration::from_millis(350),
            "from the late ping"
        );
    }
}
