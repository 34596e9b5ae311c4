//! Codec throughput in ns/message: decode + dispatch of a realistic ITCH
//! mix (the engine's own output on the mixed flow), side by side with the
//! `itchy` crate parsing the same buffer (`tokex` is the dispatch by
//! groups of four messages, `tokex_stream` the one-message iterator); OUCH Enter/Cancel inside
//! SoupBinTCP; encoding the publisher's mix into MoldUDP64 packets; and
//! the AF_XDP receive path's frame check of a datagram of 16 orders, with
//! and without verifying its UDP checksum.
//!
//! The ITCH group runs twice: in wall-clock time and in the thread's CPU
//! time (`itch_decode_dispatch_cpu/*`, which other load on the shared
//! machine does not inflate). Two diagnostics run next to it, not to be
//! compared with itchy: `tokex_grouped_by_type` decodes the same messages
//! grouped by type (the type branch never mispredicts) and
//! `tokex_l2_resident` the first 8,192 messages only (about 250 KB, in L2;
//! 32 passes an iteration). The CPU-time group decodes eight times per
//! iteration so that each lasts many scheduler ticks.

use std::hint::black_box;
use std::path::Path;

use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokex::bench::codec;
use tokex::contract::ContractSet;
use tokex::types::{Price, Qty, Side, Symbol, Tif};
use tokex::wire::ethernet::{write_udp_headers, Endpoints, UdpFrame, HEADERS_LEN};
use tokex::wire::itch;
use tokex::wire::{moldudp64, ouch, soupbin};
use zerocopy::IntoBytes;

fn itch_decode<M: Measurement + 'static>(c: &mut Criterion<M>, group: &str, passes: usize) {
    let set =
        ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap();
    let (buf, n) = codec::itch_stream(&set, 200_000, 9);
    let grouped = codec::grouped_by_type(&buf);
    let (mix, repeats) = codec::type_mix(&buf);
    eprintln!("{group}: {n} messages {mix:?}, {repeats} of the same type as the one before");
    // `passes` decodes of the buffer per iteration (throughput counts them all).
    let run = |f: &dyn Fn() -> u64| (0..passes).fold(0u64, |acc, _| acc.wrapping_add(f()));
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements((n * passes) as u64));
    g.bench_function("tokex", |b| {
        b.iter(|| run(&|| codec::decode_tokex(black_box(&buf))))
    });
    // tokex's plain iterator, one jump per message.
    g.bench_function("tokex_stream", |b| {
        b.iter(|| run(&|| codec::decode_tokex_stream(black_box(&buf))))
    });
    g.bench_function("itchy", |b| {
        b.iter(|| run(&|| codec::decode_itchy(black_box(&buf))))
    });
    // Not a comparison with itchy: the same messages grouped by type, so the
    // branch on the type always predicts (the floor without mispredictions).
    g.bench_function("tokex_grouped_by_type", |b| {
        b.iter(|| run(&|| codec::decode_tokex(black_box(&grouped))))
    });
    let small = codec::first_messages(&buf, 8_192);
    g.throughput(Throughput::Elements((8_192 * 32 * passes) as u64));
    g.bench_function("tokex_l2_resident", |b| {
        b.iter(|| {
            run(&|| {
                (0..32).fold(0u64, |acc, _| {
                    acc.wrapping_add(codec::decode_tokex(black_box(small)))
                })
            })
        })
    });
    g.finish();
}

fn itch_decode_wall(c: &mut Criterion) {
    itch_decode(c, "itch_decode_dispatch", 1);
}

fn itch_decode_cpu(c: &mut Criterion<ThreadCpuTime>) {
    // Eight passes an iteration: schedstat moves at scheduler ticks (4 ms),
    // so an iteration must be much longer than one tick to be measured.
    itch_decode(c, "itch_decode_dispatch_cpu", 8);
}

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::ThreadCpuTime;

fn ouch_decode(c: &mut Criterion) {
    let sym = Symbol::new("TK2612").unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 128];
    let n = 10_000;
    for i in 0..n {
        let t = ouch::token(format!("T{i}").as_bytes()).unwrap();
        let len = if i % 2 == 0 {
            let m = ouch::EnterOrder::new(
                t,
                Side::Buy,
                Qty::new(5),
                sym,
                Price::from_raw(65_000 + i as u32 % 50 * 10),
                Tif::Day,
            );
            soupbin::write_packet(&mut tmp, soupbin::kind::UNSEQUENCED_DATA, m.as_bytes()).unwrap()
        } else {
            let m = ouch::CancelOrder::new(t, Qty::ZERO);
            soupbin::write_packet(&mut tmp, soupbin::kind::UNSEQUENCED_DATA, m.as_bytes()).unwrap()
        };
        buf.extend_from_slice(&tmp[..len]);
    }
    let mut g = c.benchmark_group("ouch_decode_dispatch");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("tokex_enter_cancel_in_soupbin", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for p in soupbin::packets(black_box(&buf)) {
                if let Ok(soupbin::Packet::UnsequencedData(m)) = p {
                    acc = acc.wrapping_add(match ouch::Inbound::parse(m) {
                        Ok(ouch::Inbound::Enter(e)) => {
                            u64::from(e.price().raw())
                                ^ u64::from(e.qty().lots())
                                ^ u64::from(e.token[1])
                        }
                        Ok(ouch::Inbound::Cancel(x)) => {
                            u64::from(x.qty().lots()) ^ u64::from(x.token[1])
                        }
                        Ok(_) => 1,
                        Err(_) => 0,
                    });
                }
            }
            acc
        })
    });
    g.finish();
}

fn publish_encode(c: &mut Criterion) {
    let sym = Symbol::new("TK2612").unwrap();
    let h = itch::Header {
        stock_locate: 1,
        tracking_number: 0,
        timestamp: 34_200_000_000_000,
    };
    let n = 10_000u64;
    let mut g = c.benchmark_group("publish_encode");
    g.throughput(Throughput::Elements(n));
    g.bench_function("tokex_add_exec_delete_into_moldudp64", |b| {
        let mut p = moldudp64::PacketBuilder::new(*b"TOKEX00001", 1, moldudp64::MAX_PACKET);
        b.iter(|| {
            let mut seq = 1u64;
            let mut packets = 0u64;
            for i in 0..n {
                let add;
                let exec;
                let del;
                let m: &[u8] = match i % 3 {
                    0 => {
                        add = itch::AddOrder::new(
                            h,
                            i,
                            Side::Buy,
                            Qty::new(5),
                            sym,
                            Price::from_raw(65_000),
                        );
                        add.as_bytes()
                    }
                    1 => {
                        exec = itch::OrderExecuted::new(h, i, Qty::new(2), i);
                        exec.as_bytes()
                    }
                    _ => {
                        del = itch::OrderDelete::new(h, i);
                        del.as_bytes()
                    }
                };
                if p.push(m).is_err() {
                    black_box(p.bytes());
                    seq += u64::from(p.count());
                    p.reset(seq);
                    packets += 1;
                    let _ = p.push(m);
                }
            }
            packets
        })
    });
    g.finish();
}

fn udp_frame(c: &mut Criterion) {
    let sym = Symbol::new("TK2612").unwrap();
    let mut frame = [0u8; 2048];
    let mut len = 0;
    for i in 0..16 {
        let t = ouch::token(format!("T{i}").as_bytes()).unwrap();
        let m = ouch::EnterOrder::new(
            t,
            Side::Buy,
            Qty::new(5),
            sym,
            Price::from_raw(65_000),
            Tif::Day,
        );
        let at = HEADERS_LEN + len;
        len += soupbin::write_packet(
            &mut frame[at..],
            soupbin::kind::UNSEQUENCED_DATA,
            m.as_bytes(),
        )
        .unwrap();
    }
    let ep = Endpoints {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        src: "198.18.0.2:40000".parse().unwrap(),
        dst: "198.18.0.1:9000".parse().unwrap(),
    };
    let n = write_udp_headers(&mut frame, &ep, 64, 1, len).unwrap();
    let frame = &frame[..n];
    let mut g = c.benchmark_group(format!("udp_frame_{n}_bytes_16_orders"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| {
        b.iter(|| UdpFrame::parse(black_box(frame)).map(|f| f.payload.len()))
    });
    g.bench_function("parse_and_verify_checksum", |b| {
        b.iter(|| UdpFrame::parse(black_box(frame)).map(|f| f.checksum_ok()))
    });
    g.finish();
}

criterion_group!(
    benches,
    itch_decode_wall,
    ouch_decode,
    publish_encode,
    udp_frame
);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = itch_decode_cpu
}
criterion_main!(benches, cpu_benches);
