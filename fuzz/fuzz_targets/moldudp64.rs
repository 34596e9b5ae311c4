//! MoldUDP64 packets on arbitrary bytes, through the feed handler's
//! sequencing and gap logic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tokex::feed::handler::FeedHandler;
use tokex::types::Nanos;
use tokex::wire::moldudp64;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = moldudp64::Packet::parse(data) {
        let _ = p.messages().count();
    }
    let mut h = FeedHandler::new();
    for (i, chunk) in data.split(|&b| b == 0xA5).enumerate() {
        h.on_packet(Nanos(i as u64), chunk);
        let _ = h.poll_request(Nanos(i as u64 * 50_000_000));
    }
});
