//! What the load generator sends and when: the engine benchmark's mixed
//! flow on the first two contracts, mapped onto client requests, and the
//! open-loop schedule of intended send times.

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
        let ops = contracts
            .iter()
            .enumerate()
            .map(|(k, c)| {
                mixed_flow_with(
                    args.count as usize / contracts.len() + 1,
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
