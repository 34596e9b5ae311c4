//! SoupBinTCP packets and the TCP stream reassembler on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tokex::wire::soupbin;

fuzz_target!(|data: &[u8]| {
    for p in soupbin::packets(data) {
        if let Ok(soupbin::Packet::LoginRequest(r)) = p {
            let _ = (
                r.username(),
                r.password(),
                r.requested_session(),
                r.requested_sequence(),
            );
        }
        if let Ok(soupbin::Packet::LoginAccepted(a)) = p {
            let _ = (a.session(), a.next_sequence());
        }
    }
    let mut r = soupbin::Reassembler::new(4096, 1024);
    for chunk in data.chunks(7) {
        if r.extend(chunk).is_err() {
            break;
        }
        while let Ok(Some(p)) = r.next_packet() {
            let _ = soupbin::Packet::parse(p);
        }
    }
});
