//! Liveness and readiness, as `/livez` and `/readyz` answer them.
//!
//! - Live: the master loop runs. There is nothing to compute: an answer at all proves it.
//! - Ready: not stopping, not drained by an operator, and at least `ready_min` workers ready.
//!   `ready_min = "all"` means the target count at the moment; a number is capped at the target,
//!   so scaling below it cannot leave the server not-ready for good. Workers of an old
//!   generation still serving during a reload count: they are serving.

use super::exchange::Snapshot;
use crate::config::ReadyMin;

/// The ready workers needed now.
pub fn needed(ready_min: ReadyMin, target: u32) -> u32 {
    match ready_min {
        ReadyMin::All => target,
        ReadyMin::AtLeast(n) => n.get().min(target),
    }
}

/// `Ok(why it is ready)` or `Err(why it is not)`, one line each.
pub fn readiness(
    snapshot: &Snapshot,
    ready_min: ReadyMin,
    draining: bool,
) -> Result<String, String> {
    let ready = snapshot.ready();
    let needed = needed(ready_min, snapshot.target) as usize;
    if snapshot.stopping {
        return Err("not ready: the master is stopping".into());
    }
    if draining {
        return Err(format!(
            "not ready: drained by an operator ({ready} workers keep serving; `herdsman ctl undrain` ends it)"
        ));
    }
    if ready < needed {
        return Err(format!(
            "not ready: {ready} of {needed} needed workers ready (target {})",
            snapshot.target
        ));
    }
    Ok(format!("ready: {ready} workers ready, {needed} needed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::snapshot;

    fn at_least(n: u32) -> ReadyMin {
        ReadyMin::AtLeast(n.try_into().unwrap())
    }

    #[test]
    fn all_follows_the_target_and_numbers_are_capped_by_it() {
        assert_eq!(needed(ReadyMin::All, 4), 4);
        assert_eq!(needed(at_least(2), 4), 2);
        assert_eq!(needed(at_least(8), 3), 3);
    }

    #[test]
    fn ready_needs_enough_ready_workers() {
        let s = snapshot(2, &["ready", "booting"]);
        let not = readiness(&s, ReadyMin::All, false).unwrap_err();
        assert_eq!(not, "not ready: 1 of 2 needed workers ready (target 2)");
        assert!(readiness(&s, at_least(1), false).is_ok());
        let s = snapshot(2, &["ready", "recycling", "booting"]);
        assert_eq!(
            readiness(&s, ReadyMin::All, false),
            Ok("ready: 2 workers ready, 2 needed".into())
        );
    }

    #[test]
    fn draining_and_stopping_are_not_ready() {
        let mut s = snapshot(1, &["ready"]);
        let drained = readiness(&s, ReadyMin::All, true).unwrap_err();
        assert!(drained.starts_with("not ready: drained"), "{drained}");
        s.stopping = true;
        let stopping = readiness(&s, ReadyMin::All, false).unwrap_err();
        assert!(stopping.contains("stopping"), "{stopping}");
    }
}
