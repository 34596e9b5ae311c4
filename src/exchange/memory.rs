//! The memory the config's capacities commit the exchange to, checked at
//! start-up against what the machine has available, before any of it is
//! allocated: a mistyped `engine.max_orders` or `gateway.resend_window` is
//! an error that names the key, not an allocation failure or, once the
//! stores are made resident, the kernel's out-of-memory killer.

use std::fmt;

use anyhow::{bail, Context};

use crate::config::{Config, TransportKind};
use crate::engine::book::Arena;
use crate::feed::publisher::RetransmitStore;
use crate::gateway::{OutboundStore, TOKEN_BYTES_AT_MOST};

/// The bytes of the stores sized by the config (the largest allocations;
/// the rest of the process is a few tens of MB more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stores {
    /// The order arena: `engine.max_orders`.
    pub arena: u64,
    /// Every session's re-request window: `gateway.resend_window`.
    pub resend: u64,
    /// The market-data retransmission store.
    pub md_store: u64,
    /// The AF_XDP UMEM (`xdp.frame_count` × `xdp.frame_size`), when order
    /// entry is on AF_XDP.
    pub umem: u64,
    /// Every session's tokens of the day at most
    /// (`gateway.max_tokens_per_session`): they grow as clients use them,
    /// and a client that uses them all must not take the machine's memory.
    pub tokens: u64,
}

impl Stores {
    pub fn of(cfg: &Config, md_store_capacity: usize) -> Stores {
        let x = &cfg.xdp;
        Stores {
            arena: Arena::bytes_for(cfg.engine.max_orders),
            resend: cfg.sessions.len() as u64
                * OutboundStore::bytes_for(cfg.gateway.resend_window as usize),
            md_store: RetransmitStore::bytes_for(md_store_capacity),
            umem: match cfg.network.transport {
                TransportKind::Xdp => u64::from(x.frame_count) * u64::from(x.frame_size),
                TransportKind::Udp => 0,
            },
            tokens: cfg.sessions.len() as u64
                * u64::from(cfg.gateway.max_tokens_per_session)
                * TOKEN_BYTES_AT_MOST,
        }
    }

    pub fn total(&self) -> u64 {
        self.arena + self.resend + self.md_store + self.umem + self.tokens
    }

    /// Refuses stores that need more than `available` bytes.
    pub fn check(&self, available: u64) -> anyhow::Result<()> {
        if self.total() <= available {
            return Ok(());
        }
        bail!(
            "the config's stores need {} but this machine has {} available (MemAvailable): {self}; \
             lower engine.max_orders, gateway.resend_window or gateway.max_tokens_per_session",
            mib(self.total()),
            mib(available),
        )
    }
}

impl fmt::Display for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "order arena (engine.max_orders) {}, re-request windows (gateway.resend_window, every session) {}, \
             market-data store {}, AF_XDP UMEM {}, order tokens at most (gateway.max_tokens_per_session, every session) {}",
            mib(self.arena),
            mib(self.resend),
            mib(self.md_store),
            mib(self.umem),
            mib(self.tokens)
        )
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes.div_ceil(1 << 20))
}

/// The start-up line for the stores made resident (`runtime.prefault`),
/// in megabytes of 10^6 bytes, rounded: the unit it says (the lab tests
/// read the number before `MB`).
pub(super) fn resident_line(bytes: u64, ms: u128) -> String {
    format!(
        "memory: {} MB of session and market-data stores made resident in {ms} ms",
        (bytes + 500_000) / 1_000_000
    )
}

/// The memory available for new allocations (`MemAvailable` in
/// /proc/meminfo: free memory plus what the kernel can reclaim).
pub(super) fn available() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    parse_available(&text).context("no MemAvailable line in /proc/meminfo")
}

fn parse_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kb: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn stores(toml: &str) -> Stores {
        Stores::of(&Config::parse("t.toml", toml).unwrap(), 1 << 22)
    }

    #[test]
    fn the_default_config_needs_a_few_hundred_mib_and_its_tokens_at_most_a_few_gib() {
        let s = stores("");
        assert_eq!(s.arena, (1 << 20) * 68);
        assert_eq!(s.resend, 8 * (1 << 16) * 81);
        assert_eq!(s.md_store, (1 << 22) * 51);
        assert_eq!(s.umem, 4096 * 2048);
        assert!(s.total() - s.tokens < GIB / 2, "{s}");
        assert_eq!(s.tokens, 8 * (1 << 22) * TOKEN_BYTES_AT_MOST);
        s.check(6 * GIB).unwrap();
    }

    #[test]
    fn every_sessions_daily_tokens_count_at_their_most() {
        // 2^25 tokens for each of 8 sessions, all out of order, would
        // need 40 GiB: refused on a machine with 24.
        let s = stores("[gateway]\nmax_tokens_per_session = 33554432\n");
        let e = s.check(24 * GIB).unwrap_err().to_string();
        assert!(e.contains("gateway.max_tokens_per_session"), "{e}");
    }

    #[test]
    fn the_umem_counts_only_with_order_entry_on_af_xdp() {
        assert_eq!(stores("[network]\ntransport = \"udp\"\n").umem, 0);
    }

    #[test]
    fn too_many_orders_for_the_machine_is_an_error_naming_the_key() {
        let s = stores("[engine]\nmax_orders = 100000000\n");
        assert_eq!(s.arena, 6_800_000_000);
        let e = s.check(4 * GIB).unwrap_err().to_string();
        assert!(e.contains(&format!("need {}", mib(s.total()))), "{e}");
        assert!(e.contains("4096 MiB available"), "{e}");
        assert!(e.contains("engine.max_orders"), "{e}");
        s.check(16 * GIB).unwrap();
    }

    #[test]
    fn a_huge_resend_window_counts_once_per_session() {
        let s = stores("[gateway]\nresend_window = 10000000\n");
        assert_eq!(s.resend, 8 * 10_000_000 * 81);
        assert!(s.check(4 * GIB).is_err());
    }

    #[test]
    fn the_resident_stores_are_said_in_megabytes_of_a_million_bytes() {
        // 266 MiB is 279 MB, not "266 MB".
        assert_eq!(
            resident_line(266 << 20, 95),
            "memory: 279 MB of session and market-data stores made resident in 95 ms"
        );
        assert!(resident_line(499_999, 0).starts_with("memory: 0 MB "));
        assert!(resident_line(1_500_000, 0).starts_with("memory: 2 MB "));
    }

    #[test]
    fn mem_available_is_read_in_kib() {
        let text =
            "MemTotal:       24578048 kB\nMemFree:        1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_available(text), Some(20_000_000 * 1024));
        assert_eq!(parse_available("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_available("MemAvailable: x kB\n"), None);
        assert!(available().unwrap() > 0);
    }
}
