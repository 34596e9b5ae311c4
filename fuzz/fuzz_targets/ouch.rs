//! OUCH 4.2 inbound and outbound decoders on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tokex::wire::ouch;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ouch::Inbound::parse(data) {
        match m {
            ouch::Inbound::Enter(e) => {
                let _ = (
                    e.token(),
                    e.side(),
                    e.qty(),
                    e.symbol().as_str().len(),
                    e.price(),
                    e.tif(),
                );
            }
            ouch::Inbound::Replace(r) => {
                let _ = (
                    r.existing_token(),
                    r.replacement_token(),
                    r.qty(),
                    r.price(),
                );
            }
            ouch::Inbound::Cancel(c) => {
                let _ = (c.token(), c.qty());
            }
            ouch::Inbound::Modify(m) => {
                let _ = (m.token(), m.side(), m.qty());
            }
        }
    }
    let _ = ouch::Outbound::parse(data);
});
