//! The time of a line, in local time with its UTC offset as Python's `time.localtime` and
//! `%z` give it: `[10/Oct/2000:13:55:36 -0700]` for the `t` atom (accessformat.py's CLOCK) and
//! `2000-10-10T13:55:36-0700` for the JSON form. Reading the clock is a vDSO call; breaking the
//! second down (localtime_r) and formatting it happens once per second per thread, cached in a
//! thread-local, so concurrent tasks never share a lock for it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One second, formatted both ways.
pub struct Stamp {
    second: i64,
    /// `[%d/%b/%Y:%H:%M:%S %z]`
    pub common: String,
    /// `%Y-%m-%dT%H:%M:%S%z`
    pub iso: String,
}

thread_local! {
    static CACHE: RefCell<Option<Rc<Stamp>>> = const { RefCell::new(None) };
}

/// Seconds since the epoch now, truncated as Python's `int(time.time())`.
pub fn now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `second` formatted, from this thread's cache when it holds that second.
pub fn stamp(second: i64) -> Rc<Stamp> {
    let cached = CACHE.try_with(|cache| {
        let mut slot = cache.try_borrow_mut().ok()?;
        match slot.as_ref() {
            Some(stamp) if stamp.second == second => Some(Rc::clone(stamp)),
            _ => Some(Rc::clone(slot.insert(Rc::new(Stamp::of(second))))),
        }
    });
    // The cache is gone when the thread is ending: format afresh.
    cached
        .ok()
        .flatten()
        .unwrap_or_else(|| Rc::new(Stamp::of(second)))
}

/// Local time broken down: year, month 1-12, day, hour, minute, second, UTC offset in seconds.
struct Civil(i64, usize, u32, u32, u32, u32, i64);

impl Stamp {
    fn of(second: i64) -> Stamp {
        let Civil(year, month, day, h, m, s, offset) = local(second);
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.abs() / 60; // glibc's %z: whole minutes, toward zero
        let zone = format!("{sign}{:02}{:02}", minutes / 60, minutes % 60);
        let name = MONTHS[month - 1];
        Stamp {
            second,
            common: format!("[{day:02}/{name}/{year}:{h:02}:{m:02}:{s:02} {zone}]"),
            iso: format!("{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{zone}"),
        }
    }
}

fn local(second: i64) -> Civil {
    let Some(t) = libc::time_t::try_from(second).ok() else {
        return utc(second);
    };
    // SAFETY: `tm` holds only integers and one raw pointer (tm_zone), for which all-zero bytes
    // are valid values (zeros and null); localtime_r overwrites it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals for the duration of the call; localtime_r is the
    // reentrant form and writes only into `tm`. It reads the TZ variable and the zone files as
    // Python's time.localtime does (same libc, same process); like every getenv, it must not race
    // a setenv on another thread, which the worker does not do while serving.
    let filled = unsafe { libc::localtime_r(&t, &mut tm) };
    if filled.is_null() {
        return utc(second); // out of the range libc can break down
    }
    #[allow(clippy::useless_conversion)] // c_long is i32 on 32-bit targets
    let offset = i64::from(tm.tm_gmtoff);
    Civil(
        i64::from(tm.tm_year) + 1900,
        usize::try_from(tm.tm_mon).map_or(1, |m| m.clamp(0, 11) + 1),
        u32::try_from(tm.tm_mday).unwrap_or(1),
        u32::try_from(tm.tm_hour).unwrap_or(0),
        u32::try_from(tm.tm_min).unwrap_or(0),
        u32::try_from(tm.tm_sec).unwrap_or(0),
        offset,
    )
}

/// UTC, for the seconds localtime_r cannot break down (days to civil date, Howard Hinnant's
/// algorithm).
fn utc(second: i64) -> Civil {
    let (days, rem) = (second.div_euclid(86_400), second.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    );
    Civil(year, month, day, h, m, s, 0)
}
