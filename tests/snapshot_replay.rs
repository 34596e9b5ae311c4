//! Snapshots against full replay (no network, no root): over random order
//! flow from several sessions (logins good and bad, enters, cancels,
//! replaces, duplicate tokens, logouts, idle timeouts, rate limits, the
//! contracts' schedules with their call auctions), a snapshot taken by
//! `tokex snapshot`'s code at a random journal position, plus replay of the
//! journal after it, must give exactly the state full replay gives, and
//! the same OUCH and ITCH output for what comes next. Corrupt, truncated,
//! foreign and mismatched snapshots are skipped for older ones or full
//! replay.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use zerocopy::IntoBytes;

use tokex::config::Config;
use tokex::contract::ContractSet;
use tokex::engine::Event;
use tokex::gateway::{JournalSink, Peer};
use tokex::journal::{self, Durability, JournalWriter, Position};
use tokex::snapshot::{self, Replica};
use tokex::types::{Nanos, Price, Qty, Side, Symbol, Tif};
use tokex::wire::{ouch, soupbin};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("tokex-snaptest-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn setup(dir: &Path) -> (Config, ContractSet) {
    let mut cfg = Config {
        contracts: root().join("contracts"),
        ..Config::default()
    };
    cfg.journal.path = dir.join("day.journal");
    // Small enough that a burst meets the rate limit and the re-request
    // window wraps.
    cfg.gateway.rate_per_sec = 2_000;
    cfg.gateway.rate_burst = 40;
    cfg.gateway.resend_window = 64;
    cfg.engine.max_orders = 4096;
    let contracts = ContractSet::load_dir(&cfg.contracts).unwrap();
    (cfg, contracts)
}

struct Writer(JournalWriter);

impl JournalSink for Writer {
    fn record(&mut self, kind: u8, now: Nanos, payload: &[u8]) {
        self.0.append(kind, now, payload).unwrap();
    }
}

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

fn peer(i: usize) -> Peer {
    Peer::Udp(SocketAddrV4::new(
        Ipv4Addr::new(198, 18, 0, 2),
        40_000 + i as u16,
    ))
}

/// One client action, as bytes from a peer at a time.
struct Step {
    now: u64,
    peer: Peer,
    bytes: Vec<u8>,
}

/// Random order flow: 6 sessions, 3 contracts, starting 08:53 UTC so the
/// TK contracts go through their 08:55 call auction and 09:00 uncross.
fn flow(seed: u64, steps: usize) -> Vec<Step> {
    let mut seed = seed | 1;
    let symbols = [("TK2612", 6500u32), ("TK2701", 6320), ("GH2612", 2150)];
    let mut now = 19_700u64 * 86_400 * 1_000_000_000 + (8 * 3600 + 53 * 60) * 1_000_000_000;
    let mut out = Vec::with_capacity(steps);
    let mut tokens: Vec<Vec<ouch::Token>> = vec![Vec::new(); 6];
    let mut b = [0u8; 128];
    for i in 0..steps {
        let r = lcg(&mut seed);
        now += match r % 50 {
            0 => 20_000_000_000, // idle: sessions time out
            1..=3 => 40_000_000_000,
            _ => (r % 7) * 50_000_000 + 1_000,
        };
        let s = (lcg(&mut seed) % 6) as usize;
        let kind = lcg(&mut seed) % 100;
        let n = if i < 6 || kind < 4 {
            let s = if i < 6 { i } else { s };
            let name = format!("demo{:02}", s + 1);
            let pass = if kind == 1 { "wrong" } else { name.as_str() };
            let seq = if kind == 2 {
                1 + lcg(&mut seed) % 80
            } else {
                0
            };
            soupbin::write_login_request(&mut b, name.as_bytes(), pass.as_bytes(), b"", seq)
                .unwrap()
        } else if kind < 6 {
            soupbin::write_empty(&mut b, soupbin::kind::LOGOUT_REQUEST).unwrap()
        } else if kind < 30 && !tokens[s].is_empty() {
            let k = (lcg(&mut seed) as usize) % tokens[s].len();
            let t = tokens[s][k];
            let q = if kind < 20 { 0 } else { lcg(&mut seed) % 3 } as u32;
            soupbin::write_unsequenced(&mut b, ouch::CancelOrder::new(t, Qty::new(q)).as_bytes())
                .unwrap()
        } else if kind < 40 && !tokens[s].is_empty() {
            let k = (lcg(&mut seed) as usize) % tokens[s].len();
            let old = tokens[s][k];
            let new = ouch::token(format!("R{s}x{i}").as_bytes()).unwrap();
            tokens[s].push(new);
            let (_, reference) = symbols[(lcg(&mut seed) % 3) as usize];
            let price = reference - 10 + (lcg(&mut seed) % 21) as u32;
            let m = ouch::ReplaceOrder::new(
                old,
                new,
                Qty::new(1 + (lcg(&mut seed) % 6) as u32),
                Price::from_raw(price * 10),
            );
            soupbin::write_unsequenced(&mut b, m.as_bytes()).unwrap()
        } else {
            let token = if kind < 43 && !tokens[s].is_empty() {
                // A token used before: a re-send or a duplicate.
                tokens[s][(lcg(&mut seed) as usize) % tokens[s].len()]
            } else {
                let t = ouch::token(format!("N{s}x{i}").as_bytes()).unwrap();
                tokens[s].push(t);
                t
            };
            let (symbol, reference) = symbols[(lcg(&mut seed) % 3) as usize];
            let side = if lcg(&mut seed) & 1 == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let price = reference - 10 + (lcg(&mut seed) % 21) as u32;
            let tif = match lcg(&mut seed) % 10 {
                0 => Tif::Ioc,
                1 => Tif::Fok,
                _ => Tif::Day,
            };
            let m = ouch::EnterOrder::new(
                token,
                side,
                Qty::new(1 + (lcg(&mut seed) % 6) as u32),
                Symbol::new(symbol).unwrap(),
                Price::from_raw(price * 10),
                tif,
            );
            soupbin::write_unsequenced(&mut b, m.as_bytes()).unwrap()
        };
        // Now and then a burst from one session (the rate limit).
        let copies = if lcg(&mut seed).is_multiple_of(40) {
            50
        } else {
            1
        };
        for _ in 0..copies {
            out.push(Step {
                now,
                peer: peer(s.min(5)),
                bytes: b[..n].to_vec(),
            });
        }
    }
    out
}

/// Runs the flow as the live exchange would (journaling every input),
/// calling `at(records)` after each step; returns the live replica.
fn run_live(
    cfg: &Config,
    contracts: &ContractSet,
    steps: &[Step],
    mut at: impl FnMut(u64, &Config),
) -> Replica {
    let mut live = Replica::new(cfg, contracts, 1 << 16);
    live.start_of_day(Nanos(steps[0].now));
    let (w, _) =
        JournalWriter::open(&cfg.journal.path, Durability::Write, 1 << 16, |_| {}).unwrap();
    let mut j = Writer(w);
    let mut out: Vec<(Peer, Vec<u8>)> = Vec::new();
    live.gateway.follow_schedules(
        Nanos(steps[0].now),
        &mut live.engine,
        &mut live.publisher,
        &mut j,
        &mut out,
    );
    for st in steps {
        let now = Nanos(st.now);
        live.publisher.set_time(now);
        live.gateway
            .on_clock(now, &mut live.engine, &mut live.publisher, &mut j, &mut out);
        live.gateway.on_timer(now, &mut j, &mut out);
        live.gateway.on_datagram(
            now,
            st.peer,
            &st.bytes,
            &mut live.engine,
            &mut live.publisher,
            &mut j,
            &mut out,
        );
        live.publisher.discard_pending();
        out.clear();
        j.0.commit().unwrap();
        at(j.0.records(), cfg);
    }
    live
}

/// Full replay of the journal, as recovery does it (the first record
/// starts the day).
fn full_replay(cfg: &Config, contracts: &ContractSet) -> Replica {
    let mut r = Replica::new(cfg, contracts, 1 << 16);
    journal::scan(&cfg.journal.path, |rec| r.apply(rec)).unwrap();
    r
}

/// What recovery does: the newest usable snapshot, then the journal after it.
fn recover(cfg: &Config, contracts: &ContractSet) -> (Replica, Option<u64>, Vec<String>) {
    let mut skipped = Vec::new();
    let (mut r, base) = snapshot::resume_replica(cfg, contracts, 1 << 16, &mut skipped);
    let from = base.as_ref().map_or(Position::START, |(_, h)| h.journal);
    journal::scan_from(&cfg.journal.path, from, |rec| r.apply(rec)).unwrap();
    (
        r,
        base.map(|(_, h)| h.journal.records),
        skipped.into_iter().map(|(_, why)| why).collect(),
    )
}

/// What both replicas answer to the same further input: every reply
/// byte, every engine event, every market-data packet.
/// Replies (peer, bytes), and market-data packets then the engine events.
type Outputs = (Vec<(Peer, Vec<u8>)>, Vec<Vec<u8>>);

fn continue_with(r: &mut Replica, steps: &[Step]) -> Outputs {
    let mut out: Vec<(Peer, Vec<u8>)> = Vec::new();
    let mut md = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    for st in steps {
        let now = Nanos(st.now);
        r.publisher.set_time(now);
        r.gateway
            .on_clock(now, &mut r.engine, &mut r.publisher, &mut (), &mut out);
        r.gateway.on_datagram(
            now,
            st.peer,
            &st.bytes,
            &mut r.engine,
            &mut tokex::engine::Tee(&mut r.publisher, &mut events),
            &mut (),
            &mut out,
        );
        r.publisher.flush(&mut |p| md.push(p.to_vec()));
    }
    md.push(format!("{events:?}").into_bytes());
    (out, md)
}

fn assert_same(a: &Replica, b: &Replica, what: &str) {
    let (sa, sb) = (a.state().unwrap(), b.state().unwrap());
    // Serialized byte for byte, and field by field for a readable failure.
    assert_eq!(
        bincode::serialize(&sa).unwrap(),
        bincode::serialize(&sb).unwrap(),
        "{what}: serialized state differs"
    );
    assert_eq!(sa, sb, "{what}");
}

/// 12 cases by default; `PROPTEST_CASES=N` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn snapshot_plus_tail_replay_equals_full_replay(
        seed in any::<u64>(),
        cuts in proptest::collection::vec(0.0f64..1.0, 1..3),
    ) {
        let d = Scratch::new("prop");
        let (cfg, contracts) = setup(&d.0);
        let steps = flow(seed, 500);
        let (day, tail) = steps.split_at(steps.len() - 40);
        // Every session logs in again asking for its messages from 1 (the
        // re-request window), then the flow goes on.
        let t = tail[0].now;
        let mut more: Vec<Step> = (0..6)
            .map(|s| {
                let mut b = [0u8; 64];
                let name = format!("demo{:02}", s + 1);
                let n = soupbin::write_login_request(&mut b, name.as_bytes(), name.as_bytes(), b"", 1)
                    .unwrap();
                Step { now: t, peer: peer(s), bytes: b[..n].to_vec() }
            })
            .collect();
        more.extend(tail.iter().map(|s| Step { now: s.now, peer: s.peer, bytes: s.bytes.clone() }));
        let more = &more[..];
        let mut cut_steps: Vec<usize> = cuts.iter().map(|c| (c * day.len() as f64) as usize).collect();
        cut_steps.sort();
        let mut k = 0usize;
        let mut taken = Vec::new();
        run_live(&cfg, &contracts, day, |records, cfg| {
            if cut_steps.contains(&k) {
                let t = snapshot::take(cfg, &contracts, 3).unwrap();
                taken.push((records, t.journal.records, t.written.is_some()));
            }
            k += 1;
        });
        for &(records, covered, _) in &taken {
            prop_assert_eq!(records, covered);
        }
        let mut full = full_replay(&cfg, &contracts);
        let (mut rec, base, skipped) = recover(&cfg, &contracts);
        prop_assert!(skipped.is_empty(), "{:?}", skipped);
        prop_assert_eq!(base, taken.iter().filter(|t| t.2).map(|t| t.1).max());
        assert_same(&full, &rec, "snapshot + tail vs full replay");
        // And they go on the same way.
        let a = continue_with(&mut full, more);
        let b = continue_with(&mut rec, more);
        prop_assert!(!a.0.is_empty());
        prop_assert_eq!(a, b);
        assert_same(&full, &rec, "after the same further input");
    }
}

#[test]
fn a_full_replay_sequences_the_same_market_data_as_the_live_day_timestamps_included() {
    let d = Scratch::new("sod");
    let (cfg, contracts) = setup(&d.0);
    let live = run_live(&cfg, &contracts, &flow(11, 300), |_, _| {});
    let replayed = full_replay(&cfg, &contracts);
    let (store, again) = (live.publisher.store(), replayed.publisher.store());
    assert_eq!(again.next_sequence(), store.next_sequence());
    assert!(store.next_sequence() > 20);
    // Every message byte for byte, the start of day's (system event, stock
    // directory: the first messages) included, so a retransmission after
    // a restart serves what was multicast.
    for seq in 1..store.next_sequence() {
        assert_eq!(again.get(seq), store.get(seq), "message {seq}");
    }
}

/// A journal with snapshots at 3 points (the state at each kept).
fn day_with_snapshots(cfg: &Config, contracts: &ContractSet) -> Vec<PathBuf> {
    let steps = flow(7, 400);
    let mut k = 0;
    run_live(cfg, contracts, &steps, |_, cfg| {
        if k == 100 || k == 200 || k == 300 {
            snapshot::take(cfg, contracts, 3).unwrap();
        }
        k += 1;
    });
    let all: Vec<PathBuf> = snapshot::list(&cfg.journal.path)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(all.len(), 3);
    all
}

#[test]
fn corrupt_truncated_and_foreign_snapshots_fall_back_to_older_ones_then_full_replay() {
    let d = Scratch::new("fallback");
    let (cfg, contracts) = setup(&d.0);
    let snaps = day_with_snapshots(&cfg, &contracts);
    let full = full_replay(&cfg, &contracts);
    let covered = |p: &Path| {
        snapshot::decode(&std::fs::read(p).unwrap())
            .unwrap()
            .header
            .journal
            .records
    };
    let (newest, middle, oldest) = (covered(&snaps[0]), covered(&snaps[1]), covered(&snaps[2]));
    assert!(newest > middle && middle > oldest);

    let (r, base, skipped) = recover(&cfg, &contracts);
    assert_eq!((base, skipped.len()), (Some(newest), 0));
    assert_same(&full, &r, "newest");

    // A flipped bit in the body of the newest: CRC.
    let mut bytes = std::fs::read(&snaps[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&snaps[0], &bytes).unwrap();
    let (r, base, skipped) = recover(&cfg, &contracts);
    assert_eq!(base, Some(middle));
    assert!(skipped[0].contains("CRC"), "{skipped:?}");
    assert_same(&full, &r, "after a corrupt newest snapshot");

    // The middle one torn short (a crash while it was written without the
    // rename would leave no file; a torn disk write could).
    let bytes = std::fs::read(&snaps[1]).unwrap();
    std::fs::write(&snaps[1], &bytes[..bytes.len() - 100]).unwrap();
    let (r, base, skipped) = recover(&cfg, &contracts);
    assert_eq!(base, Some(oldest));
    assert!(skipped[1].contains("truncated"), "{skipped:?}");
    assert_same(&full, &r, "after a truncated snapshot");

    // Another config (a session's credit changed): not this day's state.
    let mut other = cfg.clone();
    other.sessions[0].credit += 1;
    let (_, base, skipped) = recover(&other, &contracts);
    assert_eq!(base, None);
    assert!(skipped[2].contains("config"), "{skipped:?}");

    // Not a snapshot at all, and a future version.
    let mut bytes = std::fs::read(&snaps[2]).unwrap();
    bytes[8..12].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&snaps[2], &bytes).unwrap();
    let (r, base, skipped) = recover(&cfg, &contracts);
    assert_eq!(base, None);
    assert!(skipped[2].contains("version 99"), "{skipped:?}");
    assert_same(&full, &r, "full replay when no snapshot is usable");
    std::fs::write(&snaps[2], [&b"TOKEXJNL"[..], &[0u8; 100]].concat()).unwrap();
    let (_, base, skipped) = recover(&cfg, &contracts);
    assert_eq!(base, None);
    assert!(skipped[2].contains("magic"), "{skipped:?}");
}

#[test]
fn a_snapshot_of_another_journal_is_not_used() {
    let d = Scratch::new("foreign");
    let (cfg, contracts) = setup(&d.0);
    day_with_snapshots(&cfg, &contracts);
    // A new day's journal under the same name, with the old snapshots left
    // behind: none of them describes it.
    std::fs::remove_file(&cfg.journal.path).unwrap();
    run_live(&cfg, &contracts, &flow(99, 350), |_, _| {});
    let full = full_replay(&cfg, &contracts);
    let (r, base, skipped) = recover(&cfg, &contracts);
    assert_eq!(base, None, "{skipped:?}");
    assert_eq!(skipped.len(), 3);
    assert!(skipped.iter().all(|s| s.contains("journal")), "{skipped:?}");
    assert_same(&full, &r, "full replay");
}

#[test]
fn taking_a_snapshot_twice_without_new_records_writes_nothing_and_old_ones_are_pruned() {
    let d = Scratch::new("prune");
    let (cfg, contracts) = setup(&d.0);
    let steps = flow(3, 200);
    let (mut k, mut taken_at, mut written) = (0, None, 0);
    run_live(&cfg, &contracts, &steps, |records, cfg| {
        if k % 50 == 49 {
            // Written when the journal grew since the last one (traffic
            // from timed-out sessions is not journaled, so it may not).
            let t = snapshot::take(cfg, &contracts, 2).unwrap();
            assert_eq!(t.written.is_some(), taken_at != Some(records), "{t}");
            written += usize::from(t.written.is_some());
            taken_at = Some(records);
            assert!(snapshot::list(&cfg.journal.path).len() <= 2);
        }
        k += 1;
    });
    assert!(written >= 2, "{written} snapshots written");
    // A write cut short by a crash left its temporary file: the next
    // snapshot written removes it.
    let mut stale = cfg.journal.path.as_os_str().to_os_string();
    stale.push(".123.snap.tmp4000000");
    let stale = PathBuf::from(stale);
    std::fs::write(&stale, b"half a snapshot").unwrap();
    let t = snapshot::take(&cfg, &contracts, 2).unwrap();
    assert!(t.written.is_some() && t.base.is_some(), "{t}");
    assert!(!stale.exists(), "the stale temporary file is still there");
    let t = snapshot::take(&cfg, &contracts, 2).unwrap();
    assert!(t.written.is_none(), "{t}");
    assert_eq!(t.replayed, 0);
    assert_eq!(snapshot::list(&cfg.journal.path).len(), 2);
}
