//! Price protection beyond the daily limits: the dynamic price band and
//! the circuit breaker of GH/GB-style contracts.
//!
//! Owns two small per-contract state machines, both allocation-free:
//! - [`Band`]: around an anchor (the last trade, the reference price before
//!   any), a buy priced above `anchor × (1 + pct)` or a sell priced below
//!   `anchor × (1 − pct)` is refused. Passive orders further away are
//!   fine: the band stops aggressive fat fingers, it does not thin the book.
//! - [`Breaker`]: remembers the lowest and highest trade price of the last
//!   window in a ring of time buckets (the window is `window` long, measured
//!   to bucket granularity, `window / BUCKETS`); it trips on a trade more
//!   than `pct` away from any trade of the window: above the lowest by
//!   more than `pct` of it, or below the highest by more than `pct` of
//!   it, so a rise and a fall of the same percentage trip alike. What a
//!   trip does (halt, reopening call) is the engine's business.

use serde::{Deserialize, Serialize};

use crate::types::Side;

/// A dynamic price band; disabled when `pct == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Band {
    pct: u32,
    lo: u32,
    hi: u32,
}

impl Band {
    pub fn new(pct: u32, anchor: u32) -> Band {
        let mut b = Band {
            pct,
            lo: 0,
            hi: u32::MAX,
        };
        b.reanchor(anchor);
        b
    }

    /// Moves the band around a new anchor price (raw).
    #[inline]
    pub fn reanchor(&mut self, anchor: u32) {
        if self.pct == 0 {
            return;
        }
        let a = u64::from(anchor);
        let d = u64::from(self.pct);
        self.hi = u32::try_from(a * (100 + d) / 100).unwrap_or(u32::MAX);
        self.lo = u32::try_from((a * (100 - d)).div_ceil(100)).unwrap_or(0);
    }

    /// Whether an order on `side` at raw `price` is inside the band.
    #[inline]
    pub fn allows(&self, side: Side, price: u32) -> bool {
        match side {
            Side::Buy => price <= self.hi,
            Side::Sell => price >= self.lo,
        }
    }

    /// (lowest sell, highest buy) allowed, raw; `None` when disabled.
    pub fn limits(&self) -> Option<(u32, u32)> {
        (self.pct > 0).then_some((self.lo, self.hi))
    }
}

/// Buckets in a breaker window.
pub const BUCKETS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    /// `time / bucket_ns` of the trades in it; `u64::MAX` = empty.
    epoch: u64,
    lo: u32,
    hi: u32,
}

const EMPTY: Bucket = Bucket {
    epoch: u64::MAX,
    lo: u32::MAX,
    hi: 0,
};

/// A circuit breaker; disabled when `pct == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    pct: u32,
    bucket_ns: u64,
    buckets: [Bucket; BUCKETS],
}

impl Breaker {
    pub fn new(pct: u32, window_ns: u64) -> Breaker {
        Breaker {
            pct,
            bucket_ns: (window_ns / BUCKETS as u64).max(1),
            buckets: [EMPTY; BUCKETS],
        }
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.pct > 0
    }

    /// Records a trade at raw `price` at time `now` (ns).
    #[inline]
    pub fn record(&mut self, now: u64, price: u32) {
        let epoch = now / self.bucket_ns;
        let b = &mut self.buckets[(epoch % BUCKETS as u64) as usize];
        if b.epoch != epoch {
            *b = Bucket {
                epoch,
                lo: price,
                hi: price,
            };
        } else {
            b.lo = b.lo.min(price);
            b.hi = b.hi.max(price);
        }
    }

    /// Lowest and highest trade price of the window ending at `now`.
    pub fn range(&self, now: u64) -> Option<(u32, u32)> {
        let epoch = now / self.bucket_ns;
        let oldest = epoch.saturating_sub(BUCKETS as u64 - 1);
        let mut out: Option<(u32, u32)> = None;
        for b in &self.buckets {
            if b.epoch != u64::MAX && b.epoch >= oldest && b.epoch <= epoch {
                out = Some(out.map_or((b.lo, b.hi), |(lo, hi)| (lo.min(b.lo), hi.max(b.hi))));
            }
        }
        out
    }

    /// Whether new trades at raw prices from `lowest` to `highest`
    /// (recorded; a single trade gives its price twice, a sweep its first
    /// and last fills) hold one more than `pct` away from a trade of the
    /// window ending at `now`: measured from the extreme it moved away
    /// from, the window's lowest for a rise and its highest for a fall.
    pub fn tripped(&self, now: u64, lowest: u32, highest: u32) -> bool {
        let pct = u64::from(self.pct);
        let (low, high) = (u64::from(lowest), u64::from(highest));
        self.enabled()
            && self.range(now).is_some_and(|(lo, hi)| {
                let (lo, hi) = (u64::from(lo), u64::from(hi));
                high.saturating_sub(lo) * 100 > lo * pct || hi.saturating_sub(low) * 100 > hi * pct
            })
    }

    /// Forgets every trade (a halt starts a fresh window).
    pub fn clear(&mut self) {
        self.buckets = [EMPTY; BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_refuses_aggressive_prices_only() {
        let b = Band::new(5, 21_500);
        assert_eq!(b.limits(), Some((20_425, 22_575)));
        assert!(b.allows(Side::Buy, 22_575));
        assert!(!b.allows(Side::Buy, 22_576));
        assert!(b.allows(Side::Sell, 20_425));
        assert!(!b.allows(Side::Sell, 20_424));
        // Passive orders far away are fine.
        assert!(b.allows(Side::Buy, 1));
        assert!(b.allows(Side::Sell, u32::MAX));
        assert!(Band::new(0, 21_500).allows(Side::Buy, u32::MAX));
    }

    #[test]
    fn breaker_forgets_trades_older_than_the_window() {
        let s = 1_000_000_000u64;
        let mut br = Breaker::new(10, 160 * s); // 10 s buckets
        br.record(0, 20_000);
        br.record(25 * s, 21_000);
        assert!(!br.tripped(25 * s, 21_000, 21_000));
        br.record(100 * s, 22_100); // 10.5% above 20,000
        assert!(br.tripped(100 * s, 22_100, 22_100));
        // 170 s later the 20,000 trade's bucket is out of the window.
        assert_eq!(br.range(170 * s), Some((21_000, 22_100)));
        assert!(!br.tripped(170 * s, 22_100, 22_100));
        br.clear();
        assert_eq!(br.range(170 * s), None);
    }

    #[test]
    fn a_fall_and_a_rise_of_the_same_percentage_trip_alike() {
        let s = 1_000_000_000u64;
        // +9.5 %: 2.000 -> 2.190.
        let mut up = Breaker::new(10, 300 * s);
        up.record(0, 20_000);
        up.record(s, 21_900);
        assert!(!up.tripped(s, 21_900, 21_900));
        // -9.5 %: 2.190 -> 1.982 (0.208 below 2.190; 10.49 % of 1.982).
        let mut down = Breaker::new(10, 300 * s);
        down.record(0, 21_900);
        down.record(s, 19_820);
        assert!(
            !down.tripped(s, 19_820, 19_820),
            "a 9.5 % fall trips a 10 % breaker"
        );
        // -10.5 %: 2.190 -> 1.960 trips.
        down.record(2 * s, 19_600);
        assert!(down.tripped(2 * s, 19_600, 19_600));
    }
}
