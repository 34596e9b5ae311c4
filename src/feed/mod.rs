//! Market data: engine events to ITCH 5.0 ([`itch_encoder`]), MoldUDP64
//! packets with retransmission ([`publisher`]) backed by the day's messages
//! on disk ([`archive`]), and the feed handler's
//! order-by-order books rebuilt from ITCH ([`book`]), live ([`cli`]) or from
//! a capture ([`pcap`]).

pub mod archive;
pub mod book;
pub mod cli;
pub mod handler;
pub mod itch_encoder;
pub mod pcap;
pub mod publisher;
