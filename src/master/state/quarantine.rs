//! Quarantine of a query of death. A worker that served and died is replaced at once, but a
//! request that kills every worker that takes it (and waits in the kernel's accept queue for the
//! next one) would otherwise keep killing replacements as fast as they boot, long after the
//! client stopped sending it. So the master counts, per request, the deaths of workers that were
//! serving only that request (its in-flight file says which, see `worker::inflight`): after
//! `QUARANTINE_AFTER` such deaths within `QUARANTINE_WINDOW`, the workers answer exactly that
//! method and path with 503 instead of calling the app, for `QUARANTINE_FOR`. Loud in the log
//! (the operator's cue to fix the handler), exact (no prefix or pattern), temporary.
//!
//! New workers get the list in their in-flight file before they start (no race with their
//! first request); running ones by an `Action::Quarantine` broadcast on their channels.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{error, info};

use super::Master;
use crate::master::event::Action;
use crate::upgrade::HandedRequest;

/// Deaths serving only the same request before it is quarantined.
pub const QUARANTINE_AFTER: u32 = 3;
/// Deaths further apart than this start the count again.
pub const QUARANTINE_WINDOW: Duration = Duration::from_secs(60);
/// How long a quarantined request is refused after its last death.
pub const QUARANTINE_FOR: Duration = Duration::from_secs(60);

/// The counts and the quarantined requests, pure.
#[derive(Debug, Default)]
pub struct Quarantine {
    suspects: BTreeMap<String, (u32, Instant)>,
    blocked: BTreeMap<String, Instant>,
}

impl Quarantine {
    /// A worker died serving `serving`; true when a request is newly quarantined.
    pub fn on_death(&mut self, serving: &[String], now: Instant) -> Option<&str> {
        let [request] = serving else { return None };
        if let Some(until) = self.blocked.get_mut(request) {
            *until = now + QUARANTINE_FOR;
            return None;
        }
        let entry = self.suspects.entry(request.clone()).or_insert((0, now));
        if now.saturating_duration_since(entry.1) > QUARANTINE_WINDOW {
            entry.0 = 0;
        }
        *entry = (entry.0 + 1, now);
        if entry.0 < QUARANTINE_AFTER {
            return None;
        }
        self.suspects.remove(request);
        self.blocked.insert(request.clone(), now + QUARANTINE_FOR);
        self.blocked.get_key_value(request).map(|(k, _)| k.as_str())
    }

    /// Lifts what is due; true if anything was.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.blocked.len();
        self.blocked.retain(|_, until| now < *until);
        self.suspects
            .retain(|_, (_, last)| now.saturating_duration_since(*last) <= QUARANTINE_WINDOW);
        self.blocked.len() != before
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.blocked.values().min().copied()
    }

    pub fn list(&self) -> Vec<String> {
        self.blocked.keys().cloned().collect()
    }

    /// Every suspect and quarantined request, for the handover of an upgrade.
    pub fn handed(&self, now: Instant) -> Vec<HandedRequest> {
        let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
        let suspects = self
            .suspects
            .iter()
            .map(|(request, (deaths, last))| HandedRequest {
                request: request.clone(),
                deaths: *deaths,
                last_death_ago_ms: ms(now.saturating_duration_since(*last)),
                quarantined_for_ms: None,
            });
        let blocked = self.blocked.iter().map(|(request, until)| HandedRequest {
            request: request.clone(),
            deaths: 0,
            last_death_ago_ms: ms(
                QUARANTINE_FOR.saturating_sub(until.saturating_duration_since(now))
            ),
            quarantined_for_ms: Some(ms(until.saturating_duration_since(now))),
        });
        suspects.chain(blocked).collect()
    }

    /// The state a previous image handed over, as of `now`.
    pub fn restore(handed: &[HandedRequest], now: Instant) -> Quarantine {
        let ms = Duration::from_millis;
        let mut quarantine = Quarantine::default();
        for r in handed {
            match r.quarantined_for_ms {
                Some(left) => {
                    quarantine.blocked.insert(r.request.clone(), now + ms(left));
                }
                None => {
                    let last = now.checked_sub(ms(r.last_death_ago_ms)).unwrap_or(now);
                    quarantine
                        .suspects
                        .insert(r.request.clone(), (r.deaths, last));
                }
            }
        }
        quarantine
    }
}

impl Master {
    pub(super) fn judge_death(&mut self, serving: &[String], now: Instant, out: &mut Vec<Action>) {
        if let Some(request) = self.quarantine.on_death(serving, now) {
            error!(
                request,
                deaths = QUARANTINE_AFTER,
                quarantine = ?QUARANTINE_FOR,
                "request {request} keeps killing workers: quarantined, workers answer it 503 until {QUARANTINE_FOR:?} after its last death; fix its handler"
            );
            out.push(Action::Quarantine {
                requests: self.quarantine.list(),
            });
        }
    }

    pub(super) fn expire_quarantine(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.quarantine.expire(now) {
            let requests = self.quarantine.list();
            info!(still = ?requests, "quarantine lifted");
            out.push(Action::Quarantine { requests });
        }
    }
}
