//! tokex: a low-latency exchange for AI-compute futures.
//!
//! Orders arrive as OUCH 4.2 messages in SoupBinTCP packets (over AF_XDP, kernel
//! UDP or TCP), are matched by a sans-IO price-time engine, acknowledged to their
//! session, and published as ITCH 5.0 market data in MoldUDP64 packets.
//!
//! Module map (see README.md, "Architecture"):
//! - [`types`]: fixed-point prices, lots, sides and identifiers shared by every layer.
//! - [`bench`]: benchmark flows and runners (engine vs a peer order book).
//! - [`config`]: the exchange's TOML configuration and its lab defaults.
//! - [`contract`]: contract specifications loaded from `contracts/*.toml`.
//! - [`engine`]: the sans-IO matching core (books, matching, events).
//! - [`feed`]: engine events to ITCH 5.0, and the feed handler's rebuilt books.
//! - [`gateway`]: order-entry sessions (SoupBinTCP logins, OUCH in, acks out), sans-IO.
//! - [`wire`]: byte layouts of OUCH 4.2, SoupBinTCP, ITCH 5.0, MoldUDP64, Ethernet/IPv4/UDP.
//! - [`net`]: transports (AF_XDP, kernel UDP) and the lab network.
//! - [`journal`]: the append-only input journal (group commit, CRC, torn-tail recovery).
//! - [`latency`]: per-stage HdrHistogram recorders and their `.hgrm`/`.hlog`/JSON outputs.
//! - [`runtime`]: threads, core pinning, shutdown, the pipelined hand-off ring.
//! - [`replay`]: runs the engine over an order-flow CSV file (`tokex replay`).
//!
//! `unsafe` is denied crate-wide; the only exception is the AF_XDP transport.

pub mod bench;
pub mod config;
pub mod contract;
pub mod engine;
pub mod feed;
pub mod gateway;
pub mod journal;
pub mod latency;
pub mod net;
pub mod replay;
pub mod runtime;
pub mod types;
pub mod wire;
