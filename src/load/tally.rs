//! What the answers tell the load generator: each request's round trip
//! from its intended send time (the whole run's histogram and one per
//! second for the interval log), the counts of the report, and the
//! sessions' live orders that later cancels and replaces pick from.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::tracking::{Intended, LiveOrders};
use super::{LoadReport, SPARE_INTERVALS_AT_MOST};
use crate::client::{token_number, ClientEvent};
use crate::latency::LatencyHistogram;
use crate::types::Tif;
use crate::wire::ouch::Token;

/// One second's latencies: (from, to, histogram).
pub(super) type Interval = (SystemTime, SystemTime, LatencyHistogram);

/// The answers' tally, and the state it keeps per session.
pub(super) struct Tally {
    /// Each session's token prefix (`L1`, `L2`, ...).
    prefixes: Vec<String>,
    /// Intended send times of the requests awaiting their answer.
    pub(super) intended: Intended,
    /// Per session, the live day orders.
    pub(super) live: Vec<LiveOrders>,
    pub(super) report: LoadReport,
    /// The whole run's round trips.
    hist: LatencyHistogram,
    /// The run's start on the wall clock.
    started: SystemTime,
    /// The current second's round trips.
    interval: LatencyHistogram,
    interval_start: SystemTime,
    /// Histograms for the seconds to come, made before the run: serialising
    /// one as it closes (hdrhistogram's V2 encoder, not resumable) took
    /// 27-138 us, which delayed the orders due then, and on two cores a
    /// writer thread would take that time from one of the busy threads all
    /// the same; a new one (213 KB, zeroed and so paged in) costs 85-140 us
    /// in page faults. The interval log is written after the run.
    spare: Vec<LatencyHistogram>,
    intervals: Vec<Interval>,
}

impl Tally {
    /// A tally for sessions with these token prefixes, each sending about
    /// `per_session` orders, in a run of `label` at `rate` orders/s lasting
    /// about `seconds`, started at `started`.
    pub(super) fn new(
        prefixes: Vec<String>,
        per_session: u64,
        label: &str,
        rate: u64,
        seconds: u64,
        started: SystemTime,
    ) -> Tally {
        let seconds = seconds.min(SPARE_INTERVALS_AT_MOST);
        let hist = LatencyHistogram::new();
        let report = LoadReport {
            label: label.to_string(),
            intended_rate: rate,
            planned: 0,
            sent: 0,
            unsent: 0,
            beyond_range: 0,
            answered: 0,
            lost: 0,
            accepted: 0,
            rejected: HashMap::new(),
            late_rejects: 0,
            lost_overwritten: 0,
            given_up: 0,
            connections_lost: 0,
            new_streams: 0,
            executions: 0,
            resent: 0,
            seconds: 0.0,
            interrupted: false,
            summary: hist.summary(0.0),
        };
        Tally {
            intended: Intended::new(prefixes.len(), per_session),
            live: (0..prefixes.len()).map(|_| LiveOrders::default()).collect(),
            prefixes,
            report,
            hist,
            started,
            interval: LatencyHistogram::new(),
            interval_start: started,
            spare: (0..seconds).map(|_| LatencyHistogram::new()).collect(),
            intervals: Vec::with_capacity(seconds as usize),
        }
    }

    /// A request with `token` of session `session` was sent, intended at `due`.
    #[inline]
    pub(super) fn sent(&mut self, session: usize, token: &Token, due: u64) {
        if let Some(n) = token_number(self.prefixes[session].as_bytes(), token) {
            self.intended.insert(session, n, due);
        }
    }

    /// Event `e` of session `session` arrived at `t` (ns after the epoch
    /// of the intended times).
    #[inline]
    pub(super) fn on_event(&mut self, t: u64, session: usize, e: ClientEvent) {
        let live = &mut self.live[session];
        match e {
            ClientEvent::Executed { token, qty, .. } => {
                self.report.executions += 1;
                // Track open size so cancels and replaces name live orders.
                live.fill(token, u64::from(qty.lots()));
            }
            ClientEvent::Canceled { token, .. } => live.remove(token),
            ClientEvent::ConnectionLost => self.report.connections_lost += 1,
            ClientEvent::NewStream { .. } => {
                // The exchange no longer knows the session's orders: later
                // cancels and replaces must not name them. (Its waiting
                // requests come next, each as Unanswered.)
                self.report.new_streams += 1;
                live.clear();
            }
            ClientEvent::Unanswered { token, .. } => {
                // Its outcome is unknown: neither answered (no round trip)
                // nor lost (the session stopped waiting for it).
                let number = token_number(self.prefixes[session].as_bytes(), &token);
                if number.is_some_and(|n| self.intended.remove(session, n).is_some()) {
                    self.report.given_up += 1;
                }
                return;
            }
            ClientEvent::Accepted {
                token, qty, tif, ..
            }
            | ClientEvent::Replaced {
                token, qty, tif, ..
            } => {
                self.report.accepted += 1;
                if tif == Tif::Day {
                    live.insert(token, u64::from(qty.lots()));
                }
            }
            _ => {}
        }
        // The answer to a request is its Accepted, Replaced, Canceled or
        // Rejected; an execution may concern an earlier request on the token.
        if let (Some(token), false) = (e.token(), matches!(e, ClientEvent::Executed { .. })) {
            let number = token_number(self.prefixes[session].as_bytes(), &token);
            if let Some(t0) = number.and_then(|n| self.intended.remove(session, n)) {
                self.report.answered += 1;
                let lat = t.saturating_sub(t0);
                self.hist.record(lat);
                self.interval.record(lat);
                // A reject counts when it answers a request. One that
                // comes after an answer is a second answer to a cancel: the
                // exchange had canceled the order itself first (self-trade
                // prevention), whose Canceled settled the request, or the
                // request was re-sent after a slow or lost answer.
                if let ClientEvent::Rejected { reason, .. } = e {
                    *self.report.rejected.entry(reason).or_default() += 1;
                }
            } else if matches!(e, ClientEvent::Rejected { .. }) {
                self.report.late_rejects += 1;
            }
        }
    }

    /// Closes the current second's histogram `since_start` after the
    /// run's start.
    pub(super) fn close_interval(&mut self, since_start: Duration) {
        let wall = self.started + since_start;
        // Past the spares (runs longer than SPARE_INTERVALS_AT_MOST s) a
        // histogram is made here, with the cost above.
        let next = self.spare.pop().unwrap_or_default();
        let done = std::mem::replace(&mut self.interval, next);
        self.intervals.push((self.interval_start, wall, done));
        self.interval_start = wall;
    }

    /// The report, the whole run's histogram and every second's, the last
    /// one closed at `end`.
    pub(super) fn finish(
        mut self,
        end: SystemTime,
    ) -> (LoadReport, LatencyHistogram, Vec<Interval>) {
        self.intervals
            .push((self.interval_start, end, self.interval));
        (self.report, self.hist, self.intervals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Price, Qty, Side};

    #[test]
    fn an_order_given_up_after_lost_answers_is_counted_apart_from_answered_and_lost() {
        let mut tally = Tally::new(vec!["L1".into()], 16, "t", 1_000, 1, SystemTime::UNIX_EPOCH);
        let (given_up, waiting) = (*b"L1000000000001", *b"L1000000000002");
        tally.sent(0, &given_up, 100);
        tally.sent(0, &waiting, 100);
        let unanswered = ClientEvent::Unanswered {
            token: given_up,
            request: b'O',
        };
        tally.on_event(500, 0, unanswered);
        // Reported once by the session; a second report, or an answer that
        // still comes, counts nothing more.
        tally.on_event(600, 0, unanswered);
        tally.on_event(
            700,
            0,
            ClientEvent::Accepted {
                token: given_up,
                order_reference: 1,
                side: Side::Buy,
                qty: Qty::new(1),
                price: Price::from_raw(1),
                tif: Tif::Ioc,
            },
        );
        assert_eq!(tally.intended.lost(), 1, "only the one still waiting");
        let (mut report, hist, _) = tally.finish(SystemTime::UNIX_EPOCH);
        assert_eq!((report.given_up, report.answered), (1, 0));
        assert_eq!(hist.len(), 0, "no round trip");
        assert!(report
            .to_string()
            .lines()
            .any(|l| l.starts_with("given up unanswered: 1 ")));
        report.given_up = 0;
        assert!(!report.to_string().contains("given up"));
    }

    #[test]
    fn a_new_stream_is_counted_and_the_sessions_live_orders_are_forgotten() {
        let mut tally = Tally::new(vec!["L1".into()], 16, "t", 1_000, 1, SystemTime::UNIX_EPOCH);
        let resting = *b"L1000000000001";
        tally.sent(0, &resting, 100);
        tally.on_event(
            200,
            0,
            ClientEvent::Accepted {
                token: resting,
                order_reference: 1,
                side: Side::Buy,
                qty: Qty::new(1),
                price: Price::from_raw(1),
                tif: Tif::Day,
            },
        );
        assert!(!tally.live[0].is_empty());
        tally.on_event(
            300,
            0,
            ClientEvent::NewStream {
                next_sequence: 1,
                previous: 2,
            },
        );
        assert!(tally.live[0].is_empty(), "not named by a later cancel");
        let (report, _, _) = tally.finish(SystemTime::UNIX_EPOCH);
        assert_eq!((report.new_streams, report.answered), (1, 1));
        assert!(report.to_string().lines().any(|l| l
            .starts_with("sessions that found the exchange's stream begun again")
            && l.ends_with(": 1")));
    }
}
