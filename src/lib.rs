//! tokex: a low-latency exchange for AI-compute futures.
//!
//! Orders arrive as OUCH 4.2 messages in SoupBinTCP packets (over AF_XDP, kernel
//! UDP or TCP), are matched by a sans-IO price-time engine, acknowledged to their
//! session, and published as ITCH 5.0 market data in MoldUDP64 packets.
//!
//! Module map (see README.md, "Architecture"):
//! - [`types`]: fixed-point prices, lots, sides and identifiers shared by every layer.
//! - [`bitmap`]: the occupancy bitmap of the engine's and the feed's price ladders.
//! - [`slot_ring`]: the newest messages of a numbered stream, kept for re-requests and retransmission.
//! - [`bench`](mod@bench): benchmark flows and runners (engine vs a peer order book).
//! - [`client`]: an order-entry client session (sans-IO) and its UDP shell.
//! - [`load`]: `tokex load`, the open-loop constant-rate load generator.
//! - [`config`]: the exchange's TOML configuration and its lab defaults.
//! - [`contract`]: contract specifications loaded from `contracts/*.toml`.
//! - [`demo`]: `tokex demo`, the end-to-end run on the lab network.
//! - [`lab`]: the lab network and tokex processes in its namespaces (for demo and bench).
//! - [`engine`]: the sans-IO matching core (books, matching, events).
//! - [`exchange`]: `tokex exchange`, the server loop around the sans-IO cores.
//! - [`feed`]: engine events to ITCH 5.0, and the feed handler's rebuilt books.
//! - [`gateway`]: order-entry sessions (SoupBinTCP logins, OUCH in, acks out), sans-IO.
//! - [`wire`]: byte layouts of OUCH 4.2, SoupBinTCP, ITCH 5.0, MoldUDP64, Ethernet/IPv4/UDP.
//! - [`net`]: transports (AF_XDP, kernel UDP) and the lab network.
//! - [`journal`]: the append-only input journal (group commit, CRC, torn-tail recovery).
//! - [`latency`]: per-stage HdrHistogram recorders and their `.hgrm`/`.hlog`/JSON outputs.
//! - [`report`]: `tokex report`, percentile plots (PNG) and markdown tables.
//! - [`runtime`]: threads, core pinning, shutdown, the pipelined hand-off ring.
//! - [`probe`]: `tokex probe`, a connectivity check over the TCP port.
//! - [`replay`]: runs the engine over an order-flow CSV file (`tokex replay`).
//! - [`schedule`]: trading schedules (phase by time of day) of the contract files.
//! - [`accounts`]: positions, P&L, margin and limits per account (sans-IO, called by the engine).
//! - [`settlement`]: the daily settlement price and each account's variation margin.
//! - [`text`]: counts with their nouns for the sentences the commands print (`1 gap`, `2 gaps`).
//!
//! `unsafe` is denied crate-wide; the only exceptions are the AF_XDP
//! transport (`net::xdp`, `net::xdp_prog`) and the journal file's mapping
//! (`journal::mapped`).

pub mod accounts;
pub mod bench;
pub mod bitmap;
pub mod chunked;
pub mod client;
pub mod config;
pub mod contract;
pub mod demo;
pub mod engine;
pub mod exchange;
pub mod feed;
pub mod gateway;
pub mod journal;
pub mod lab;
pub mod latency;
pub mod load;
pub mod net;
pub mod probe;
pub mod replay;
pub mod report;
pub mod runtime;
pub mod schedule;
pub mod settlement;
mod sharded;
pub mod slot_ring;
pub mod snapshot;
#[cfg(test)]
mod test_dir;
pub mod text;
pub mod types;
pub mod wire;
