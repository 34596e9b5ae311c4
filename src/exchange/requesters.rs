//! Who may ask the retransmission server for market data, and how often
//! (sans-IO): a token bucket per requesting host, in a table of bounded
//! size that a sender of forged addresses cannot empty.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::gateway::TokenBucket;

/// Requests per second each host may make, and its burst.
const RATE: u32 = 1_000;
const BURST: u32 = 200;

/// Per-host request buckets, at most `capacity` hosts.
pub(crate) struct Requesters {
    buckets: HashMap<Ipv4Addr, TokenBucket>,
    capacity: usize,
}

impl Requesters {
    pub(crate) fn new(capacity: usize) -> Requesters {
        Requesters {
            buckets: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `host` may have a request answered now (and takes its
    /// token). A new host finding the table full takes the place of a host
    /// whose bucket has filled up again (it has not asked for a while, and
    /// a full bucket is what it would start with anyway); if every host is
    /// still drawing on its bucket, the new one is refused. The table is
    /// never emptied: requests from thousands of forged addresses must not
    /// give a busy host its burst back.
    pub(crate) fn admit(&mut self, host: Ipv4Addr, now_ns: u64) -> bool {
        if !self.buckets.contains_key(&host)
            && self.buckets.len() >= self.capacity
            && !self.make_room(now_ns)
        {
            return false;
        }
        self.buckets
            .entry(host)
            .or_insert_with(|| TokenBucket::new(RATE, BURST))
            .take(now_ns)
    }

    /// Drops the hosts whose buckets are full again; whether any was.
    fn make_room(&mut self, now_ns: u64) -> bool {
        let before = self.buckets.len();
        self.buckets.retain(|_, b| !b.is_full(now_ns));
        self.buckets.len() < before
    }

    #[cfg(test)]
    fn hosts(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_host_gets_its_burst_then_its_rate() {
        let mut r = Requesters::new(16);
        let h = Ipv4Addr::new(198, 18, 0, 2);
        let t = 1_000 * MS;
        assert_eq!((0..300).filter(|_| r.admit(h, t)).count(), BURST as usize);
        // 10 ms later: 10 more at 1,000 a second.
        assert_eq!((0..300).filter(|_| r.admit(h, t + 10 * MS)).count(), 10);
    }

    #[test]
    fn forged_sources_cannot_give_a_busy_host_its_burst_back() {
        let mut r = Requesters::new(64);
        let busy = Ipv4Addr::new(198, 18, 0, 2);
        let t = 1_000 * MS;
        while r.admit(busy, t) {}
        for i in 0..10_000u32 {
            r.admit(Ipv4Addr::from(0x0a00_0000 + i), t);
        }
        assert!(r.hosts() <= 64);
        assert!(!r.admit(busy, t), "still empty");
    }

    #[test]
    fn a_host_that_stopped_asking_makes_room_for_a_new_one() {
        let mut r = Requesters::new(1);
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3));
        let t = 1_000 * MS;
        assert!(r.admit(a, t));
        assert!(!r.admit(b, t), "a is still drawing on its bucket");
        // After a second a's bucket is full again: b takes its place.
        assert!(r.admit(b, t + 1_000 * MS));
        assert_eq!(r.hosts(), 1);
    }
}
