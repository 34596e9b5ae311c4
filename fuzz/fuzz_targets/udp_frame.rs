//! Ethernet/IPv4/UDP frames as AF_XDP hands them over, on arbitrary bytes:
//! the header checks and the UDP checksum never panic, a frame that passes
//! is rebuilt from its addresses and payload, and the rebuilt frame parses
//! back to the same datagram with a checksum that verifies. Each input is
//! tried as it is and with its IPv4 header checksum made right, so the
//! checks behind that one are reached without a seed corpus.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tokex::wire::ethernet::{
    checksum, write_udp_headers, Endpoints, UdpFrame, ETH_LEN, HEADERS_LEN, IPV4_LEN,
};

fn check(data: &[u8]) {
    let Ok(f) = UdpFrame::parse(data) else {
        return;
    };
    let _ = f.checksum_ok();
    let ep = Endpoints {
        src_mac: f.eth.src,
        dst_mac: f.eth.dst,
        src: f.src(),
        dst: f.dst(),
    };
    let mut frame = vec![0u8; HEADERS_LEN + f.payload.len()];
    frame[HEADERS_LEN..].copy_from_slice(f.payload);
    let n = write_udp_headers(&mut frame, &ep, f.ip.ttl, f.ip.ident.get(), f.payload.len())
        .expect("the buffer holds headers and payload");
    let back = UdpFrame::parse(&frame[..n]).expect("a built frame parses");
    assert_eq!(back.payload, f.payload);
    assert_eq!((back.src(), back.dst()), (f.src(), f.dst()));
    assert!(back.checksum_ok());
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut fixed = data.to_vec();
    let ihl = usize::from(fixed.get(ETH_LEN).copied().unwrap_or(0) & 0x0f) * 4;
    if ihl >= IPV4_LEN && fixed.len() >= ETH_LEN + ihl {
        let header = ETH_LEN..ETH_LEN + ihl;
        fixed[ETH_LEN + 10..ETH_LEN + 12].fill(0);
        let c = checksum(&fixed[header], 0);
        fixed[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&c.to_be_bytes());
        check(&fixed);
    }
});
