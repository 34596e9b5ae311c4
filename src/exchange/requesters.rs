//! Who may ask the retransmission server for market data, how often, and
//! how much it answers per tick (sans-IO): a token bucket per requesting
//! host (its IPv4 address, whatever its source port: a host that asked
//! from many ports would otherwise get a burst for each), in a table of
//! bounded size that a sender of forged addresses cannot empty, and a
//! budget of requests and messages per engine tick.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::gateway::TokenBucket;

/// Requests per second each host may make, and its burst.
const RATE: u32 = 1_000;
const BURST: u32 = 200;

/// Requests read per tick at most (the rest wait in the socket's buffer,
/// and the kernel drops beyond it).
pub(crate) const REQUESTS_PER_TICK: usize = 64;
/// Messages re-sent per tick at most: answers run on the engine core, and
/// a request can ask for 4,096 messages read from the archive (~0.4 ms);
/// 2,048 a millisecond tick is 2 M messages/s of recovery for feed
/// handlers and at most about a fifth of the core.
pub(crate) const MESSAGES_PER_TICK: u64 = 2_048;
/// Messages one request is answered with at most (the handler asks again
/// for the rest).
pub(crate) const MESSAGES_PER_REQUEST: u16 = 4_096;

/// What one tick may still spend on retransmission.
pub(crate) struct TickBudget {
    requests: usize,
    messages: u64,
}

impl TickBudget {
    pub(crate) fn new() -> TickBudget {
        TickBudget {
            requests: REQUESTS_PER_TICK,
            messages: MESSAGES_PER_TICK,
        }
    }

    /// Whether another request may be read this tick, and if so the most
    /// messages its answer may have.
    pub(crate) fn next_request(&mut self) -> Option<u16> {
        if self.requests == 0 || self.messages == 0 {
            return None;
        }
        self.requests -= 1;
        Some(self.messages.min(u64::from(MESSAGES_PER_REQUEST)) as u16)
    }

    /// An answer of `messages` was sent.
    pub(crate) fn spent(&mut self, messages: u64) {
        self.messages = self.messages.saturating_sub(messages);
    }
}

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

    /// Whether a request from `src` may be answered now (and takes a token
    /// from its host's bucket: every source port of one address draws on
    /// the same one). A new host finding the table full takes the place of a host
    /// whose bucket has filled up again (it has not asked for a while, and
    /// a full bucket is what it would start with anyway); if every host is
    /// still drawing on its bucket, the new one is refused. The table is
    /// never emptied: requests from thousands of forged addresses must not
    /// give a busy host its burst back.
    pub(crate) fn admit(&mut self, src: SocketAddrV4, now_ns: u64) -> bool {
        let host = *src.ip();
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

    #[test]
    fn a_tick_answers_at_most_its_message_budget_however_large_the_requests() {
        let mut b = TickBudget::new();
        let mut sent = 0;
        let mut answered = 0;
        while let Some(cap) = b.next_request() {
            // Every request asks for 4,096 and gets what it may.
            let n = u64::from(cap.min(4_096));
            sent += n;
            answered += 1;
            b.spent(n);
        }
        assert_eq!(sent, MESSAGES_PER_TICK);
        assert_eq!(answered, 1);
        // Requests answered with nothing (unanswerable, other sessions)
        // stop at the request cap.
        let mut b = TickBudget::new();
        let mut read = 0;
        while b.next_request().is_some() {
            read += 1;
            b.spent(0);
        }
        assert_eq!(read, REQUESTS_PER_TICK);
    }

    const MS: u64 = 1_000_000;

    /// A request from `host`, port 40000.
    fn from(host: Ipv4Addr) -> SocketAddrV4 {
        SocketAddrV4::new(host, 40_000)
    }

    #[test]
    fn a_host_gets_its_burst_then_its_rate() {
        let mut r = Requesters::new(16);
        let h = Ipv4Addr::new(198, 18, 0, 2);
        let t = 1_000 * MS;
        assert_eq!(
            (0..300).filter(|_| r.admit(from(h), t)).count(),
            BURST as usize
        );
        // 10 ms later: 10 more at 1,000 a second.
        assert_eq!(
            (0..300).filter(|_| r.admit(from(h), t + 10 * MS)).count(),
            10
        );
    }

    #[test]
    fn a_host_asking_from_many_source_ports_shares_one_bucket() {
        let mut r = Requesters::new(16);
        let h = Ipv4Addr::new(198, 18, 0, 2);
        let t = 1_000 * MS;
        // A new source port for every request: still one burst in all.
        let admitted = (0..1_000u16)
            .filter(|&i| r.admit(SocketAddrV4::new(h, 20_000 + i), t))
            .count();
        assert_eq!(admitted, BURST as usize);
        assert_eq!(r.hosts(), 1);
        // Another host has a bucket of its own.
        assert!(r.admit(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 3), 20_000), t));
    }

    #[test]
    fn forged_sources_cannot_give_a_busy_host_its_burst_back() {
        let mut r = Requesters::new(64);
        let busy = Ipv4Addr::new(198, 18, 0, 2);
        let t = 1_000 * MS;
        while r.admit(from(busy), t) {}
        for i in 0..10_000u32 {
            r.admit(from(Ipv4Addr::from(0x0a00_0000 + i)), t);
        }
        assert!(r.hosts() <= 64);
        assert!(!r.admit(from(busy), t), "still empty");
    }

    #[test]
    fn a_host_that_stopped_asking_makes_room_for_a_new_one() {
        let mut r = Requesters::new(1);
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3));
        let t = 1_000 * MS;
        assert!(r.admit(from(a), t));
        assert!(!r.admit(from(b), t), "a is still drawing on its bucket");
        // After a second a's bucket is full again: b takes its place.
        assert!(r.admit(from(b), t + 1_000 * MS));
        assert_eq!(r.hosts(), 1);
    }
}
