//! The exchange configuration file (`config/tokex.toml`).
//!
//! Owns the TOML schema, its defaults (DESIGN.md "Defaults") and validation.
//! Every value has a default, so an empty file is a working lab config; a
//! wrong key or value is an error naming it. Does not start anything.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::journal::Durability;

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory of contract files.
    pub contracts: PathBuf,
    pub network: NetworkConfig,
    pub xdp: XdpConfig,
    pub runtime: RuntimeConfig,
    pub engine: EngineLimits,
    pub gateway: GatewayConfig,
    pub journal: JournalConfig,
    pub latency: LatencyConfig,
    pub risk: RiskConfig,
    #[serde(rename = "session")]
    pub sessions: Vec<SessionConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            contracts: PathBuf::from("contracts"),
            network: NetworkConfig::default(),
            xdp: XdpConfig::default(),
            runtime: RuntimeConfig::default(),
            engine: EngineLimits::default(),
            gateway: GatewayConfig::default(),
            journal: JournalConfig::default(),
            latency: LatencyConfig::default(),
            risk: RiskConfig::default(),
            sessions: demo_sessions(),
        }
    }
}

/// Which transport carries order entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// AF_XDP through xsk-rs; falls back to `Udp` with a message if it cannot start.
    Xdp,
    /// The kernel UDP stack (recvmmsg/sendmmsg).
    Udp,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub transport: TransportKind,
    /// How market data leaves: the kernel multicast socket (`udp`) or AF_XDP
    /// TX on the order port (`xdp`). `xdp` needs `transport = "xdp"` (with
    /// `udp` it is refused); if AF_XDP order entry then cannot start and
    /// falls back to kernel UDP, market data falls back to the kernel
    /// socket too, and the exchange says so.
    pub md_transport: TransportKind,
    /// Namespace the exchange runs in (informational; `tokex demo` starts it there).
    pub namespace: String,
    pub interface: String,
    pub address: Ipv4Addr,
    /// Order entry over UDP (AF_XDP or kernel).
    pub order_port: u16,
    /// Order entry over plain SoupBinTCP/TCP.
    pub tcp_port: u16,
    pub md_group: Ipv4Addr,
    pub md_port: u16,
    pub retransmit_port: u16,
    /// MoldUDP64 session name, exactly 10 characters.
    pub md_session: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            transport: TransportKind::Xdp,
            md_transport: TransportKind::Udp,
            namespace: "tokex-ex".into(),
            interface: "tkx-ex".into(),
            address: Ipv4Addr::new(198, 18, 0, 1),
            order_port: 9000,
            tcp_port: 9002,
            md_group: Ipv4Addr::new(239, 198, 0, 1),
            md_port: 9100,
            retransmit_port: 9101,
            md_session: "TOKEX00001".into(),
        }
    }
}

impl NetworkConfig {
    /// The MoldUDP64 session name as it goes on the wire: 10 bytes, space
    /// padded (a validated config's name is exactly 10 ASCII characters).
    pub fn md_session_name(&self) -> [u8; 10] {
        let mut s = [b' '; 10];
        let b = self.md_session.as_bytes();
        let n = b.len().min(10);
        s[..n].copy_from_slice(&b[..n]);
        s
    }
}

/// XDP attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Try native (driver) mode, fall back to generic (SKB).
    Auto,
    Native,
    Generic,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct XdpConfig {
    pub mode: XdpMode,
    /// Ask for zero-copy; falls back to copy mode when the driver cannot.
    pub zero_copy: bool,
    pub frame_count: u32,
    pub frame_size: u32,
    pub rx_ring: u32,
    pub tx_ring: u32,
    pub fill_ring: u32,
    pub completion_ring: u32,
    pub queue: u32,
    /// Drop (and count) datagrams whose UDP checksum is wrong. AF_XDP gets
    /// frames as they arrived, unchecked by the kernel; a veth peer with
    /// checksum offload on sends partial checksums, so `tokex lab up` turns
    /// it off.
    pub verify_udp_checksum: bool,
}

impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            mode: XdpMode::Auto,
            zero_copy: true,
            frame_count: 4096,
            frame_size: 2048,
            rx_ring: 2048,
            tx_ring: 2048,
            fill_ring: 2048,
            completion_ring: 2048,
            queue: 0,
            verify_udp_checksum: true,
        }
    }
}

/// How the exchange's threads are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// One pinned thread: receive, parse, session, match, ack, publish.
    RunToCompletion,
    /// A receive thread hands decoded messages over an SPSC ring to the engine thread.
    Pipelined,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub topology: Topology,
    /// Core of the engine thread (the one busy-spinning thread in run-to-completion).
    pub engine_core: usize,
    /// Core of the receive thread in the pipelined topology.
    pub rx_core: usize,
    /// The pipelined receive thread spins when idle (for a core of its
    /// own) instead of blocking in poll(2).
    pub rx_busy_poll: bool,
    /// SCHED_FIFO priority of the blocking receive thread, 1-99 (0: normal
    /// scheduling): it then runs the moment a datagram arrives, even on a
    /// core a busy thread holds.
    pub rx_realtime: u8,
    /// Busy-poll (lowest latency, one core at 100 %) or sleep briefly when idle.
    pub busy_poll: bool,
    /// Most frames or datagrams taken per receive batch.
    pub batch: usize,
    /// Follow each contract's trading schedule by the wall clock (UTC
    /// times of day, as in contracts/*.toml). Off by default: the lab demo
    /// trades continuously whatever the hour.
    pub follow_schedules: bool,
    /// Make the stores that fill as the day goes (each session's re-request
    /// window, the market-data retransmission store, the token lists)
    /// resident at start-up, so the engine thread takes no page fault on
    /// its first pass through them: a few hundred MB touched once, in
    /// about a tenth of a second.
    pub prefault: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            topology: Topology::RunToCompletion,
            engine_core: 1,
            rx_core: 0,
            rx_busy_poll: false,
            rx_realtime: 10,
            busy_poll: true,
            batch: 64,
            follow_schedules: false,
            prefault: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineLimits {
    /// Live orders the arena holds; beyond it orders are rejected.
    pub max_orders: u32,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_orders: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Server heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// A session that sends nothing for this long is logged out.
    pub idle_timeout_ms: u64,
    /// Sustained inbound messages per second per session.
    pub rate_per_sec: u32,
    /// Burst allowance of the per-session token bucket.
    pub rate_burst: u32,
    /// Failed logins from one source before it is made to wait.
    pub login_failures_before_backoff: u32,
    /// First back-off after repeated failures, doubled each time, milliseconds.
    pub login_backoff_ms: u64,
    /// Sequenced outbound messages kept per session for re-request.
    pub resend_window: u32,
    /// Order tokens a session may use in a day (each is remembered for the
    /// day: 44 bytes in the order they are numbered, up to
    /// `gateway::TOKEN_BYTES_AT_MOST` out of it, counted in the start-up
    /// memory check; beyond it Enter and Replace are rejected).
    pub max_tokens_per_session: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            heartbeat_ms: 1000,
            idle_timeout_ms: 15_000,
            rate_per_sec: 200_000,
            rate_burst: 20_000,
            login_failures_before_backoff: 3,
            login_backoff_ms: 500,
            resend_window: 1 << 16,
            max_tokens_per_session: 1 << 22,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    pub path: PathBuf,
    pub durability: Durability,
    /// Snapshots of the journal kept by `tokex snapshot` (the newest first).
    pub snapshots_keep: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            path: PathBuf::from("out/journal/tokex.journal"),
            durability: Durability::Write,
            snapshots_keep: crate::snapshot::DEFAULT_KEEP,
        }
    }
}

/// `durability = "write"`: the journal's durability as the config file
/// spells it, for the exchange's start-up line.
pub fn durability_setting(d: Durability) -> String {
    let value = match d {
        Durability::None => "none",
        Durability::Write => "write",
        Durability::Fsync => "fsync",
    };
    format!("durability = \"{value}\"")
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    /// Directory for the per-stage `.hgrm` and `.hlog` files.
    pub dir: PathBuf,
    /// Interval of the `.hlog` interval log, milliseconds.
    pub interval_ms: u64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            dir: PathBuf::from("out/latency"),
            interval_ms: 1000,
        }
    }
}

/// Pre-trade limits of every account (the credit limit is per session).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Most live (resting) orders per account at once; 0 = no limit.
    pub max_live_orders: u32,
    /// Reject orders of accounts that have no session (and so no limits).
    pub require_registration: bool,
}

/// One order-entry login.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// SoupBinTCP username, at most 6 characters.
    pub username: String,
    /// SoupBinTCP password, at most 10 characters.
    pub password: String,
    /// Credit limit for the margin check, in the quote currency (0 = no check).
    #[serde(default)]
    pub credit: u64,
}

/// The lab's demo logins: `demo01` .. `demo08`, password = username.
/// Lab only: anyone who reads the README knows them.
pub fn demo_sessions() -> Vec<SessionConfig> {
    (1..=8)
        .map(|i| {
            let name = format!("demo{i:02}");
            SessionConfig {
                username: name.clone(),
                password: name,
                credit: 0,
            }
        })
        .collect()
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {error}")]
    Io { file: String, error: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: key `{key}`: {reason}")]
    Invalid {
        file: String,
        key: &'static str,
        reason: String,
    },
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            file: file.clone(),
            error,
        })?;
        Config::parse(&file, &text)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(file)?;
        Ok(config)
    }

    /// Checks every value against what the exchange can run with; `file`
    /// names the source in errors. [`Config::parse`] calls it; call it
    /// again after changing a parsed config (command-line overrides).
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: String| ConfigError::Invalid {
            file: file.to_string(),
            key,
            reason,
        };
        let n = &self.network;
        if !is_lab_unicast(n.address) && !n.address.is_loopback() {
            return Err(bad(
                "network.address",
                format!(
                    "{} is outside the lab range 198.18.0.0/24 and loopback",
                    n.address
                ),
            ));
        }
        let o = n.md_group.octets();
        if !(o[0] == 239 && o[1] == 198) {
            return Err(bad(
                "network.md_group",
                format!(
                    "{} is outside the lab multicast range 239.198.0.0/16",
                    n.md_group
                ),
            ));
        }
        if n.md_session.len() != 10 || !n.md_session.is_ascii() {
            return Err(bad(
                "network.md_session",
                "must be exactly 10 ASCII characters".into(),
            ));
        }
        if n.md_transport == TransportKind::Xdp && n.transport == TransportKind::Udp {
            return Err(bad(
                "network.md_transport",
                "\"xdp\" needs transport = \"xdp\": market data on AF_XDP leaves through the AF_XDP order port's socket, and transport = \"udp\" (kernel UDP order entry) opens none. Set md_transport = \"udp\" (the kernel multicast socket) or transport = \"xdp\" (on the command line: --md-transport udp or --transport xdp)".into(),
            ));
        }
        let ports = [
            ("network.order_port", n.order_port),
            ("network.tcp_port", n.tcp_port),
            ("network.md_port", n.md_port),
            ("network.retransmit_port", n.retransmit_port),
        ];
        for (i, &(key, p)) in ports.iter().enumerate() {
            if p == 0 {
                return Err(bad(key, "port 0".into()));
            }
            if let Some((other, _)) = ports[..i].iter().find(|&&(_, q)| q == p) {
                return Err(bad(key, format!("port {p} is {other} already")));
            }
        }
        let x = &self.xdp;
        for (key, v) in [
            ("xdp.frame_count", x.frame_count),
            ("xdp.rx_ring", x.rx_ring),
            ("xdp.tx_ring", x.tx_ring),
            ("xdp.fill_ring", x.fill_ring),
            ("xdp.completion_ring", x.completion_ring),
        ] {
            if !v.is_power_of_two() {
                return Err(bad(key, format!("{v} is not a power of two")));
            }
        }
        if x.frame_size != 2048 && x.frame_size != 4096 {
            return Err(bad("xdp.frame_size", "must be 2048 or 4096".into()));
        }
        // The UMEM's frames: `fill_ring` for receiving, the rest for
        // transmitting; every ring must hold the frames that can be in it.
        if x.frame_count <= x.fill_ring {
            return Err(bad(
                "xdp.frame_count",
                format!(
                    "{} must exceed fill_ring ({}): the frames beyond it transmit",
                    x.frame_count, x.fill_ring
                ),
            ));
        }
        let tx_frames = x.frame_count - x.fill_ring;
        for (key, v, need) in [
            ("xdp.rx_ring", x.rx_ring, x.fill_ring),
            ("xdp.tx_ring", x.tx_ring, tx_frames),
            ("xdp.completion_ring", x.completion_ring, tx_frames),
        ] {
            if v < need {
                return Err(bad(
                    key,
                    format!("{v} cannot hold the {need} frames that may be in it (frame_count - fill_ring transmit, fill_ring receive)"),
                ));
            }
        }
        if self.runtime.batch == 0 || self.runtime.batch > crate::net::udp::BATCH {
            return Err(bad(
                "runtime.batch",
                format!(
                    "{}: between 1 and {} (datagrams per receive call)",
                    self.runtime.batch,
                    crate::net::udp::BATCH
                ),
            ));
        }
        let rt = &self.runtime;
        if rt.topology == Topology::Pipelined && rt.rx_busy_poll && rt.rx_core == rt.engine_core {
            return Err(bad(
                "runtime.rx_core",
                format!(
                    "a busy-polling receive thread on the engine thread's core {} would make two spinning threads share one core (rx_busy_poll = false blocks instead)",
                    rt.engine_core
                ),
            ));
        }
        if rt.rx_realtime > 99 {
            return Err(bad(
                "runtime.rx_realtime",
                "a SCHED_FIFO priority runs from 1 to 99 (0: normal scheduling)".into(),
            ));
        }
        if self.engine.max_orders == 0 || self.engine.max_orders > MAX_ORDERS_LIMIT {
            return Err(bad(
                "engine.max_orders",
                format!(
                    "{}: between 1 and {MAX_ORDERS_LIMIT} (an arena of {} GiB)",
                    self.engine.max_orders,
                    crate::engine::book::Arena::bytes_for(MAX_ORDERS_LIMIT) >> 30
                ),
            ));
        }
        let window = self.gateway.resend_window;
        if window == 0 || window > RESEND_WINDOW_LIMIT {
            return Err(bad(
                "gateway.resend_window",
                format!(
                    "{window}: between 1 and {RESEND_WINDOW_LIMIT} ({} MiB a session)",
                    crate::gateway::OutboundStore::bytes_for(RESEND_WINDOW_LIMIT as usize) >> 20
                ),
            ));
        }
        if self.gateway.rate_per_sec == 0 || self.gateway.rate_burst == 0 {
            return Err(bad(
                "gateway.rate_per_sec",
                "rate and burst must be positive".into(),
            ));
        }
        // SoupBinTCP has the server heartbeat every second when idle; the
        // client library takes three missed intervals (3 s) for a lost
        // session, so a slower heartbeat would make quiet clients log in
        // again and again.
        let hb = self.gateway.heartbeat_ms;
        if hb == 0 || hb > crate::client::SERVER_HEARTBEAT_NS / 1_000_000 {
            return Err(bad(
                "gateway.heartbeat_ms",
                format!("{hb}: between 1 and 1000 (SoupBinTCP clients expect a heartbeat every second when idle)"),
            ));
        }
        // A client that heartbeats every second must not be timed out
        // between two of them (the client library takes three missed
        // server heartbeats for a lost session; the server waits as long).
        let min_idle =
            crate::client::MISSED_HEARTBEATS * crate::client::SERVER_HEARTBEAT_NS / 1_000_000;
        let idle = self.gateway.idle_timeout_ms;
        if idle < min_idle.max(hb + 1) {
            return Err(bad(
                "gateway.idle_timeout_ms",
                format!("{idle}: at least {min_idle} (three of a client's one-second heartbeats) and more than heartbeat_ms"),
            ));
        }
        if self.journal.snapshots_keep == 0 {
            return Err(bad(
                "journal.snapshots_keep",
                "at least 1 (the newest snapshot)".into(),
            ));
        }
        if self.latency.interval_ms == 0 {
            return Err(bad(
                "latency.interval_ms",
                "the interval log needs an interval of at least 1 ms".into(),
            ));
        }
        if self.gateway.max_tokens_per_session == 0 {
            return Err(bad(
                "gateway.max_tokens_per_session",
                "a session needs at least one token a day".into(),
            ));
        }
        if self.sessions.is_empty() {
            return Err(bad("session", "at least one [[session]] is needed".into()));
        }
        for (i, s) in self.sessions.iter().enumerate() {
            if s.username.is_empty() || s.username.len() > 6 || !s.username.is_ascii() {
                return Err(bad(
                    "session.username",
                    format!("{:?}: 1 to 6 ASCII characters", s.username),
                ));
            }
            if s.password.is_empty() || s.password.len() > 10 || !s.password.is_ascii() {
                return Err(bad(
                    "session.password",
                    format!("for {:?}: 1 to 10 ASCII characters", s.username),
                ));
            }
            if self.sessions[..i].iter().any(|o| o.username == s.username) {
                return Err(bad(
                    "session.username",
                    format!("{:?} defined twice", s.username),
                ));
            }
        }
        Ok(())
    }
}

/// The most live orders `engine.max_orders` may ask for (the arena's slot
/// numbers are u32; start-up also checks the arena fits the machine).
pub const MAX_ORDERS_LIMIT: u32 = 1 << 28;
/// The largest `gateway.resend_window` (messages kept per session).
pub const RESEND_WINDOW_LIMIT: u32 = 1 << 24;

/// Whether `a` is in the lab's unicast range, 198.18.0.0/24.
pub fn is_lab_unicast(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 198 && o[1] == 18 && o[2] == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_design_defaults() {
        let c = Config::parse("t.toml", "").unwrap();
        assert_eq!(c.network.address, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(c.network.order_port, 9000);
        assert_eq!(c.network.tcp_port, 9002);
        assert_eq!(c.network.md_group, Ipv4Addr::new(239, 198, 0, 1));
        assert_eq!(c.network.md_port, 9100);
        assert_eq!(c.network.retransmit_port, 9101);
        assert_eq!(c.sessions.len(), 8);
        assert_eq!(c.sessions[0].username, "demo01");
        assert_eq!(c.sessions[7].password, "demo08");
        assert_eq!(c.journal.durability, Durability::Write);
    }

    #[test]
    fn shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tokex.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.sessions.len(), 8);
    }

    #[test]
    fn risk_limits_are_read() {
        let c = Config::parse(
            "t.toml",
            "[risk]\nmax_live_orders = 50\n[[session]]\nusername = \"a\"\npassword = \"b\"\ncredit = 2000000\n",
        )
        .unwrap();
        assert_eq!(c.risk.max_live_orders, 50);
        assert!(!c.risk.require_registration);
        assert_eq!(c.sessions[0].credit, 2_000_000);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("t.toml", "[network]\nprot = 1\n").unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
        assert!(err.to_string().contains("t.toml"), "{err}");
    }

    #[test]
    fn addresses_outside_the_lab_are_refused() {
        let err = Config::parse("t.toml", "[network]\naddress = \"203.0.113.9\"\n").unwrap_err();
        assert!(err.to_string().contains("network.address"), "{err}");
        let err = Config::parse("t.toml", "[network]\nmd_group = \"239.1.1.1\"\n").unwrap_err();
        assert!(err.to_string().contains("md_group"), "{err}");
    }

    #[test]
    fn a_server_heartbeat_slower_than_a_second_is_refused() {
        let err = Config::parse("t.toml", "[gateway]\nheartbeat_ms = 5000\n").unwrap_err();
        assert!(err.to_string().contains("gateway.heartbeat_ms"), "{err}");
        assert!(Config::parse("t.toml", "[gateway]\nheartbeat_ms = 500\n").is_ok());
    }

    /// The key an invalid `text` is refused for (the test fails if it
    /// parses).
    fn refused_key(text: &str) -> String {
        match Config::parse("t.toml", text) {
            Err(ConfigError::Invalid { key, .. }) => key.to_string(),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn values_the_exchange_cannot_run_with_are_refused_by_key() {
        for (text, key) in [
            (
                "[gateway]\nidle_timeout_ms = 0\n",
                "gateway.idle_timeout_ms",
            ),
            (
                "[gateway]\nidle_timeout_ms = 2999\n",
                "gateway.idle_timeout_ms",
            ),
            ("[xdp]\nfill_ring = 4096\n", "xdp.frame_count"),
            ("[xdp]\nrx_ring = 256\n", "xdp.rx_ring"),
            ("[xdp]\ncompletion_ring = 256\n", "xdp.completion_ring"),
            ("[runtime]\nbatch = 65\n", "runtime.batch"),
            ("[journal]\nsnapshots_keep = 0\n", "journal.snapshots_keep"),
            ("[latency]\ninterval_ms = 0\n", "latency.interval_ms"),
            ("[network]\ntcp_port = 9000\n", "network.tcp_port"),
            ("[network]\nmd_port = 0\n", "network.md_port"),
            ("[engine]\nmax_orders = 0\n", "engine.max_orders"),
            ("[engine]\nmax_orders = 268435457\n", "engine.max_orders"),
            ("[gateway]\nresend_window = 0\n", "gateway.resend_window"),
            (
                "[gateway]\nresend_window = 16777217\n",
                "gateway.resend_window",
            ),
        ] {
            assert_eq!(refused_key(text), key, "{text:?}");
        }
        let err = Config::parse("t.toml", "[network]\nretransmit_port = 9100\n").unwrap_err();
        assert!(err.to_string().contains("network.md_port already"), "{err}");
        assert!(Config::parse("t.toml", "[gateway]\nidle_timeout_ms = 3000\n").is_ok());
        assert!(Config::parse("t.toml", "[runtime]\nbatch = 64\n").is_ok());
        assert!(Config::parse("t.toml", "[engine]\nmax_orders = 268435456\n").is_ok());
        assert!(Config::parse("t.toml", "[gateway]\nresend_window = 16777216\n").is_ok());
    }

    #[test]
    fn a_receive_thread_priority_beyond_sched_fifo_is_refused() {
        let err = Config::parse("t.toml", "[runtime]\nrx_realtime = 120\n").unwrap_err();
        assert!(err.to_string().contains("runtime.rx_realtime"), "{err}");
        let c = Config::parse("t.toml", "[runtime]\nrx_realtime = 0\n").unwrap();
        assert_eq!(c.runtime.rx_realtime, 0);
    }

    #[test]
    fn two_spinning_threads_on_one_core_are_refused() {
        let spin = "[runtime]\ntopology = \"pipelined\"\nrx_core = 1\nengine_core = 1\nrx_busy_poll = true\n";
        let err = Config::parse("t.toml", spin).unwrap_err();
        assert!(err.to_string().contains("runtime.rx_core"), "{err}");
        // A blocking receive thread may share the engine's core.
        let block = spin.replace("rx_busy_poll = true", "rx_busy_poll = false");
        assert!(Config::parse("t.toml", &block).is_ok());
    }

    #[test]
    fn the_durability_is_printed_as_the_config_file_spells_it() {
        assert_eq!(
            durability_setting(Durability::Write),
            "durability = \"write\""
        );
        // What is printed reads back as the same setting.
        for d in [Durability::None, Durability::Write, Durability::Fsync] {
            let text = format!("[journal]\n{}\n", durability_setting(d));
            assert_eq!(
                Config::parse("t.toml", &text).unwrap().journal.durability,
                d
            );
        }
    }

    #[test]
    fn market_data_on_af_xdp_with_kernel_udp_order_entry_is_refused() {
        let both = "[network]\ntransport = \"udp\"\nmd_transport = \"xdp\"\n";
        let err = Config::parse("t.toml", both).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "network.md_transport",
                    ..
                }
            ),
            "{err}"
        );
        let why = err.to_string();
        assert!(why.contains("needs transport = \"xdp\""), "{why}");
        assert!(
            why.contains("--md-transport udp or --transport xdp"),
            "{why}"
        );
        // AF_XDP for both, or the kernel for both, or AF_XDP orders only.
        for ok in [
            "[network]\ntransport = \"xdp\"\nmd_transport = \"xdp\"\n",
            "[network]\ntransport = \"udp\"\nmd_transport = \"udp\"\n",
            "[network]\ntransport = \"xdp\"\nmd_transport = \"udp\"\n",
        ] {
            assert!(Config::parse("t.toml", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn ring_sizes_must_be_powers_of_two() {
        let err = Config::parse("t.toml", "[xdp]\nrx_ring = 1000\n").unwrap_err();
        assert!(err.to_string().contains("xdp.rx_ring"), "{err}");
    }

    #[test]
    fn sessions_are_validated() {
        let two = "[[session]]\nusername = \"a\"\npassword = \"b\"\n";
        let err = Config::parse("t.toml", &format!("{two}{two}")).unwrap_err();
        assert!(err.to_string().contains("defined twice"), "{err}");
        let err = Config::parse(
            "t.toml",
            "[[session]]\nusername = \"toolongname\"\npassword = \"b\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("session.username"), "{err}");
    }
}
