//! The session layer on arbitrary datagrams from a few peers: logins,
//! orders, cancels, replaces, garbage. Nothing may panic, and the engine's
//! book must stay consistent with what the gateway reports.
#![no_main]
use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tokex::config::{demo_sessions, GatewayConfig};
use tokex::contract::ContractSet;
use tokex::engine::{Engine, EngineConfig, Event};
use tokex::gateway::{Gateway, Peer};
use tokex::types::Nanos;

fn contracts() -> &'static ContractSet {
    static SET: OnceLock<ContractSet> = OnceLock::new();
    SET.get_or_init(|| {
        ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts")).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let set = contracts();
    // Small stores and token limits: each input builds a fresh gateway, and
    // the default day-sized reservations (megabytes per session, poisoned
    // and unpoisoned by AddressSanitizer every time) held it to ~150
    // inputs a second; small limits are also reached by the inputs.
    let cfg = GatewayConfig {
        resend_window: 64,
        max_tokens_per_session: 64,
        ..GatewayConfig::default()
    };
    let mut gw = Gateway::new(&cfg, &demo_sessions(), set, *b"TOKEX00001");
    let mut engine = Engine::new(set, EngineConfig { max_orders: 256 });
    let mut md: Vec<Event> = Vec::new();
    let mut out = Vec::new();
    // Datagrams separated by 0xA5; the first byte of each picks the peer.
    for (i, d) in data.split(|&b| b == 0xA5).enumerate() {
        let Some((&who, rest)) = d.split_first() else {
            continue;
        };
        let peer = Peer::Udp(SocketAddrV4::new(
            [198, 18, 0, 2].into(),
            40_000 + u16::from(who % 4),
        ));
        gw.on_datagram(
            Nanos(i as u64 * 1_000_000),
            peer,
            rest,
            &mut engine,
            &mut md,
            &mut (),
            &mut out,
        );
        out.clear();
    }
    let _ = gw.counters();
});
