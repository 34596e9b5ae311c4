//! Benchmark harnesses shared by the criterion benches, the allocation test
//! and `tokex bench`: flow models and runners, never used by the exchange.

pub mod codec;
pub mod engine;
pub mod feed_net;
pub mod gateway;
pub mod hiccups;
pub mod recovery;
pub mod suite;
pub mod transport;
