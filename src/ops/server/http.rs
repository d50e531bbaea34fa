//! The admin listener's HTTP side, served from the wakeup's snapshot: one request per
//! connection, routed to `/metrics`, `/livez` or `/readyz` (see `admin` for the parsing and
//! `metrics` / `health` for the bodies), within the wakeup's request budget.

use super::Ops;
use crate::ops::admin::{self, Route};
use crate::ops::exchange::Snapshot;
use crate::ops::health;
use crate::ops::metrics::{self, Extra};
use crate::ops::status;

impl Ops {
    pub(super) fn serve_admin(&mut self, budget: &mut usize, snapshot: &Snapshot) {
        for id in self.admin_conns.ids() {
            if *budget == 0 {
                return;
            }
            if let Some(head) = self.admin_conns.take_frame(id, admin::head_end) {
                *budget -= 1;
                let response = self.http_response(&head, snapshot);
                self.admin_conns.reply(id, &response, true);
            } else if self.admin_conns.input_full(id) {
                let response = admin::text(431, "request head too large", false);
                self.admin_conns.reply(id, &response, true);
            }
        }
    }

    pub(super) fn http_response(&self, head: &[u8], s: &Snapshot) -> Vec<u8> {
        let parsed = admin::parse(head);
        let head_only = parsed.head_only;
        let readiness = || health::readiness(s, self.ready_min, self.draining);
        match parsed.route {
            Route::Metrics => {
                let samples = status::samples(s);
                let extra = Extra {
                    samples: &samples,
                    counters: self.counters,
                    ready: readiness().is_ok(),
                    draining: self.draining,
                };
                let body = metrics::render(s, &extra);
                admin::response(200, metrics::CONTENT_TYPE, &body, head_only)
            }
            Route::Livez => {
                let line = format!("alive: master pid {}", std::process::id());
                admin::text(200, &line, head_only)
            }
            Route::Readyz => match readiness() {
                Ok(line) => admin::text(200, &line, head_only),
                Err(line) => admin::text(503, &line, head_only),
            },
            Route::NotFound => admin::text(
                404,
                "not found; the endpoints are /metrics, /livez and /readyz",
                head_only,
            ),
            Route::MethodNotAllowed => admin::text(405, "only GET and HEAD", head_only),
            Route::BadRequest => admin::text(400, "bad request", false),
        }
    }
}
