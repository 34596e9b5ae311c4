//! Market data: engine events to ITCH 5.0 ([`itch_encoder`]) and the feed
//! handler's order-by-order books rebuilt from ITCH ([`book`]).

pub mod book;
pub mod itch_encoder;
