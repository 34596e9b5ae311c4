//! What the load generator sends and when: the engine benchmark's mixed
//! flow on the first two contracts, mapped onto client requests, the
//! open-loop schedule of intended send times, and the pacer that decides,
//! from the intended times alone, what is sent and when sending ends.

use super::tracking::LiveOrders;
use super::LoadArgs;
use crate::bench::engine::{mixed_flow_with, FlowOp, Rng};
use crate::client::ClientSession;
use crate::contract::{Contract, ContractSet};
use crate::types::{Price, Qty, Side, Tif};
use crate::wire::ouch::Token;

/// The mixed flow of each of the (at most two) contracts traded, taken in
/// turn: order `i` is on contract `i % 2`.
pub(super) struct Flow {
    contracts: Vec<Contract>,
    ops: Vec<Vec<FlowOp>>,
}

impl Flow {
    pub(super) fn new(args: &LoadArgs) -> anyhow::Result<Flow> {
        let all = ContractSet::load_dir(&args.contracts)?;
        let contracts: Vec<Contract> = all.iter().take(2).cloned().collect();
        // Sized by the orders the run plans, not by `--count` alone (a
        // count of 10^9 at 50,000/s for 10 s built 16 GB of flow); the flow
        // is taken modulo its length anyway.
        let planned = planned(args) as usize;
        let ops = contracts
            .iter()
            .enumerate()
            .map(|(k, c)| {
                mixed_flow_with(
                    planned / contracts.len() + 1,
                    args.seed + k as u64,
                    c,
                    args.mix,
                )
            })
            .collect();
        Ok(Flow { contracts, ops })
    }

    /// The traded symbols, comma-separated.
    pub(super) fn symbols(&self) -> String {
        let symbols: Vec<String> = self
            .contracts
            .iter()
            .map(|c| c.symbol.to_string())
            .collect();
        symbols.join(",")
    }

    /// Queues order number `i` of the flow on `cl`, returning its token.
    /// Cancels and replaces name one of the session's live orders; with
    /// none live, a one-lot IOC at the lower limit takes their place (it is
    /// answered and cancels at once).
    #[inline]
    pub(super) fn next_order(
        &self,
        i: u64,
        t: u64,
        cl: &mut ClientSession,
        live: &mut LiveOrders,
    ) -> Token {
        let k = (i % self.ops.len() as u64) as usize;
        let c = &self.contracts[k];
        let flow = &self.ops[k];
        let op = flow[(i / self.ops.len() as u64) as usize % flow.len()];
        let limit = Price::from_raw;
        match op {
            FlowOp::Add {
                side, price, qty, ..
            } => cl.enter(t, c.symbol, side, Qty::new(qty), limit(price), Tif::Day),
            FlowOp::Aggress {
                side, price, qty, ..
            } => cl.enter(t, c.symbol, side, Qty::new(qty), limit(price), Tif::Ioc),
            FlowOp::Cancel { pick } | FlowOp::Replace { pick, .. } if !live.is_empty() => {
                let old = live.take(pick as usize);
                if let FlowOp::Replace { ticks, qty, .. } = op {
                    let p = c.reference_price.raw() as i64 + ticks as i64 * c.tick.raw() as i64 * 3;
                    cl.replace(t, old, Qty::new(qty), limit(p as u32))
                } else {
                    cl.cancel(t, old, Qty::ZERO);
                    old
                }
            }
            FlowOp::Cancel { .. } | FlowOp::Replace { .. } => {
                cl.enter(t, c.symbol, Side::Buy, Qty::new(1), c.lower_limit, Tif::Ioc)
            }
        }
    }
}

/// The orders a run plans: `--count`, or fewer when `--rate` × `--duration`
/// is less.
pub(super) fn planned(args: &LoadArgs) -> u64 {
    args.count.min(args.rate.saturating_mul(args.duration))
}

/// Intended send times, ns after the start: a constant interval, or
/// exponential gaps with the same mean (Poisson arrivals), kept whether or
/// not the generator keeps up (open loop).
pub(super) struct Schedule {
    /// The mean gap between two orders, ns.
    period: f64,
    poisson: bool,
    arrivals: Rng,
    /// The next send's intended time.
    next: f64,
}

impl Schedule {
    pub(super) fn new(args: &LoadArgs) -> Schedule {
        Schedule {
            period: 1e9 / args.rate as f64,
            poisson: args.poisson,
            arrivals: Rng::new(args.seed ^ 0x9E37_79B9),
            next: 0.0,
        }
    }

    /// When the next send is due, ns after the start.
    #[inline]
    pub(super) fn next_due(&self) -> u64 {
        self.next as u64
    }

    /// A send of `orders` orders went out: the one after it is due a gap
    /// for that many orders later.
    #[inline]
    pub(super) fn advance(&mut self, orders: u64) {
        self.next += if self.poisson {
            let u = ((self.arrivals.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            -u.ln() * self.period * orders as f64
        } else {
            self.period * orders as f64
        };
    }

    /// The schedule's span so far, seconds.
    pub(super) fn seconds(&self) -> f64 {
        self.next / 1e9
    }
}

/// What the sending loop does next (see [`Pacer::turn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Send `orders` orders now, all with intended time `due` (ns after
    /// the start).
    Send { due: u64, orders: u64 },
    /// The next send is not due yet.
    Wait,
    /// Sending is over: every order due before the end went out (or
    /// `--count` did), or the deadline passed first.
    Done,
}

/// Decides, from the intended send times alone, what the loop sends and
/// when it stops sending. An order is sent if its intended time is before
/// the run's end, however late the loop gets to it (a stall near the end
/// delays those orders, and their latency shows it, instead of dropping
/// them unseen); a generator more than the drain time behind stops at
/// the deadline and counts what it never sent ([`Pacer::unsent`]).
pub(super) struct Pacer {
    schedule: Schedule,
    count: u64,
    batch: u64,
    sent: u64,
    /// Orders due before this are sent (ns after the start).
    end: u64,
    /// No send after this (ns after the start).
    deadline: u64,
    /// Whether sending stopped at the deadline.
    cut: bool,
    /// Whether sending was stopped early (SIGINT or SIGTERM).
    interrupted: bool,
}

impl Pacer {
    pub(super) fn new(args: &LoadArgs) -> Pacer {
        let end = args.duration.saturating_mul(1_000_000_000);
        Pacer {
            schedule: Schedule::new(args),
            count: args.count,
            batch: args.batch,
            sent: 0,
            end,
            deadline: end.saturating_add(args.drain_ms.saturating_mul(1_000_000)),
            cut: false,
            interrupted: false,
        }
    }

    /// What to do at `t` ns after the start.
    #[inline]
    pub(super) fn turn(&mut self, t: u64) -> Turn {
        let due = self.schedule.next_due();
        if self.sent >= self.count || due >= self.end || self.cut || self.interrupted {
            return Turn::Done;
        }
        if t >= self.deadline {
            self.cut = true;
            return Turn::Done;
        }
        if t < due {
            return Turn::Wait;
        }
        Turn::Send {
            due,
            orders: self.batch.min(self.count - self.sent),
        }
    }

    /// Sending stops now (SIGINT or SIGTERM): every turn is
    /// [`Turn::Done`], and what was not sent is not counted unsent (the
    /// run was cut short, not behind).
    pub(super) fn interrupt(&mut self) {
        self.interrupted = true;
    }

    /// The send [`Pacer::turn`] asked for went out.
    #[inline]
    pub(super) fn sent(&mut self, orders: u64) {
        self.sent += orders;
        self.schedule.advance(orders);
    }

    /// Orders due before the end that were never sent: the generator was
    /// still behind at the deadline (0 otherwise). For Poisson arrivals
    /// the mean count.
    pub(super) fn unsent(&self, planned: u64) -> u64 {
        if self.cut {
            planned.saturating_sub(self.sent)
        } else {
            0
        }
    }

    /// The schedule's span, seconds (see [`Schedule::seconds`]).
    pub(super) fn seconds(&self) -> f64 {
        self.schedule.seconds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rate: u64, poisson: bool) -> LoadArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        let mut a = Cli::parse_from(["load"]).load;
        (a.rate, a.poisson) = (rate, poisson);
        a
    }

    /// Runs a pacer at 1,000 orders/s for 1 s with a 500 ms drain, the loop
    /// waking every 100 us except between `stall` (ms); returns the sends'
    /// (intended, actual) times in us and the orders never sent.
    fn paced(stall: std::ops::Range<u64>, mut a: LoadArgs) -> (Vec<(u64, u64)>, u64) {
        (a.rate, a.duration, a.drain_ms, a.count) = (1_000, 1, 500, 1_000_000);
        let mut p = Pacer::new(&a);
        let mut sends = Vec::new();
        let mut t = 0;
        loop {
            if stall.contains(&(t / 1_000_000)) {
                t = stall.end * 1_000_000;
            }
            match p.turn(t) {
                Turn::Send { due, orders } => {
                    sends.push((due / 1_000, t / 1_000));
                    p.sent(orders);
                }
                Turn::Wait => t += 100_000,
                Turn::Done => break,
            }
        }
        (sends, p.unsent(planned(&a)))
    }

    #[test]
    fn a_stall_at_the_end_delays_the_orders_due_in_it_and_drops_none() {
        // Stalled from 980 ms to 1,200 ms, past the run's end.
        let (sends, unsent) = paced(980..1_200, args(1_000, false));
        assert_eq!((sends.len(), unsent), (1_000, 0));
        let last = *sends.last().unwrap();
        assert_eq!(last, (999_000, 1_200_000), "sent late, timed from 999 ms");
        // The stalled orders keep their intended times.
        assert_eq!(
            sends.iter().filter(|(due, at)| at - due >= 200_000).count(),
            20
        );
    }

    #[test]
    fn a_generator_behind_past_the_deadline_counts_what_it_never_sent() {
        // Stalled from 500 ms to 2 s: the deadline (1.5 s) passes first.
        let (sends, unsent) = paced(500..2_000, args(1_000, false));
        assert_eq!(sends.len(), 500);
        assert_eq!(unsent, 500);
        // Without a stall every order goes out on time.
        let (sends, unsent) = paced(5_000..5_001, args(1_000, false));
        assert_eq!((sends.len(), unsent), (1_000, 0));
        assert!(sends.iter().all(|(due, at)| at - due < 100));
    }

    #[test]
    fn an_interrupted_pacer_sends_nothing_more_and_counts_nothing_unsent() {
        let mut a = args(1_000, false);
        (a.duration, a.drain_ms) = (1, 500);
        let mut p = Pacer::new(&a);
        assert!(matches!(p.turn(0), Turn::Send { .. }));
        p.sent(1);
        p.interrupt();
        for t in [1_000_000, 500_000_000, 2_000_000_000] {
            assert_eq!(p.turn(t), Turn::Done, "at {t}");
        }
        assert_eq!(p.unsent(planned(&a)), 0);
    }

    #[test]
    fn the_flow_is_sized_by_the_planned_orders_not_the_count() {
        let mut a = args(50_000, false);
        (a.count, a.duration) = (1_000_000_000, 10);
        assert_eq!(planned(&a), 500_000);
        a.count = 7;
        assert_eq!(planned(&a), 7);
    }

    #[test]
    fn a_constant_schedule_spaces_sends_by_their_order_count_whatever_the_answers() {
        let mut s = Schedule::new(&args(1_000_000, false));
        assert_eq!(s.next_due(), 0);
        s.advance(16);
        assert_eq!(s.next_due(), 16_000);
        s.advance(1);
        assert_eq!(s.next_due(), 17_000);
    }

    #[test]
    fn poisson_gaps_keep_the_mean_rate() {
        let mut s = Schedule::new(&args(100_000, true));
        let mut gaps = Vec::new();
        for _ in 0..100_000 {
            let before = s.next_due();
            s.advance(1);
            gaps.push(s.next_due() - before);
        }
        let mean = s.seconds() * 1e9 / 100_000.0;
        assert!((mean - 10_000.0).abs() < 200.0, "mean gap {mean} ns");
        assert!(gaps.iter().any(|&g| g < 2_000) && gaps.iter().any(|&g| g > 30_000));
    }
}
