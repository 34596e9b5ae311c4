//! Market data: engine events to ITCH 5.0 ([`itch_encoder`]), MoldUDP64
//! packets with retransmission ([`publisher`]), and the feed handler's
//! order-by-order books rebuilt from ITCH ([`book`]), live ([`cli`]) or from
//! a capture ([`pcap`]).

pub mod book;
pub mod cli;
pub mod handler;
pub mod itch_encoder;
pub mod pcap;
pub mod publisher;
