//! End to end on the lab network (needs root: creates and removes the
//! tokex-ex/tokex-cl namespaces): `tokex demo` starts the exchange, a feed
//! handler and the load generator; every order is answered, and the feed
//! handler's rebuilt book equals the exchange's own (the demo fails otherwise),
//! over the kernel UDP path and over AF_XDP (orders and market data).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Both tests use the default lab namespaces: one at a time.
static LAB: Mutex<()> = Mutex::new(());

/// Runs `tokex demo` at 5,000 orders/s for 2 s with `extra` arguments;
/// returns its output directory and standard output. Fails if the demo does.
fn demo(name: &str, extra: &[&str]) -> (PathBuf, String) {
    let out = std::env::temp_dir().join(format!("tokex-e2e-{name}-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_tokex"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--rate", "5000", "--duration", "2"])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("running tokex demo");
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "demo failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("the feed handler rebuilt all"), "{stdout}");
    // The closing latency table covers the client, the exchange and the feed.
    for row in ["| roundtrip-", "| end_to_end |", "| feed-latency |"] {
        assert!(stdout.contains(row), "no {row:?} row\n{stdout}");
    }
    (out, stdout)
}

/// The words of the first line of `text` starting with `prefix`.
fn words_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line"));
    line.split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .collect()
}

/// The number `offset` words away from `word`.
fn number(words: &[&str], word: &str, offset: isize) -> u64 {
    let i = words
        .iter()
        .position(|w| *w == word)
        .unwrap_or_else(|| panic!("no {word:?} in {words:?}"));
    words[(i as isize + offset) as usize].parse().unwrap()
}

#[test]
fn demo_trades_over_the_lab_and_the_feed_rebuilds_the_exchange_book() {
    let _lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let (out, stdout) = demo("plain", &["--transport", "udp"]);
    assert!(stdout.contains("transport: kernel UDP on"), "{stdout}");
    // The day-long stores were made resident before serving, and the exit
    // report says what the kernel counted against the engine thread.
    let memory = words_of(&stdout, "memory: ");
    assert!(number(&memory, "MB", -1) > 0, "{memory:?}");
    let engine = words_of(&stdout, "engine thread while serving: ");
    number(&engine, "page", -1);
    number(&engine, "involuntary", -1);
    let feed = words_of(&stdout, "runtime: feed handler thread while receiving: ");
    number(&feed, "voluntary", -1);
    let load = words_of(&stdout, "load: generator thread while sending: ");
    number(&load, "page", -1);
    // Every order sent was answered (the 2 s bound may cut the last few sends).
    let load = words_of(&stdout, "sent ");
    assert!(number(&load, "sent", 1) >= 9_900, "{load:?}");
    assert_eq!(
        number(&load, "answered", 1),
        number(&load, "sent", 1),
        "{load:?}"
    );
    assert_eq!(number(&load, "lost", 1), 0, "{load:?}");
    assert!(
        stdout.contains("probe ok: login, enter, cancel and logout over SoupBinTCP/TCP"),
        "{stdout}"
    );
    assert!(stdout.contains("end of session, complete"), "{stdout}");
    // The feed's CSV has a row per message, contiguous sequence numbers.
    let csv = std::fs::read_to_string(out.join("feed-messages.csv")).unwrap();
    let seqs: Vec<u64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.len() > 1000, "{} rows", seqs.len());
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers contiguous"
    );
    // The lab is gone afterwards.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ns.stdout).contains("tokex-ex"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn feed_behind_five_percent_loss_recovers_every_gap_and_rebuilds_the_same_book() {
    let _lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let (out, stdout) = demo("loss", &["--transport", "udp", "--feed-loss", "5"]);
    let feed = words_of(&stdout, "feed: ");
    assert!(
        number(&feed, "gaps", -1) > 1,
        "5 % loss must open gaps: {feed:?}"
    );
    assert!(number(&feed, "recovered", -2) > 0, "{feed:?}");
    assert!(stdout.contains("end of session, complete"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn demo_with_af_xdp_at_both_ends_and_market_data_on_af_xdp_tx_rebuilds_the_same_book() {
    let _lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let (out, stdout) = demo(
        "xdp",
        &[
            "--transport",
            "xdp",
            "--md-transport",
            "xdp",
            "--client-transport",
            "xdp",
        ],
    );
    assert!(
        stdout.contains("transport: AF_XDP on tkx-ex queue 0"),
        "{stdout}"
    );
    assert!(stdout.contains("through AF_XDP TX"), "{stdout}");
    // The load generator ran over AF_XDP on the client's veth, and the feed
    // handler beside it still got the multicast (the client's XDP program
    // passes it to the kernel).
    assert!(
        stdout.contains("4 sessions over AF_XDP on tkx-cl"),
        "{stdout}"
    );
    let load = words_of(&stdout, "sent ");
    assert!(number(&load, "sent", 1) >= 9_900, "{load:?}");
    assert_eq!(number(&load, "lost", 1), 0, "{load:?}");
    // The TCP compatibility port works while the XDP program is attached.
    assert!(
        stdout.contains("probe ok: login, enter, cancel and logout over SoupBinTCP/TCP"),
        "{stdout}"
    );
    assert!(stdout.contains("end of session, complete"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn two_feed_handlers_one_dropping_five_percent_both_rebuild_the_exchange_book() {
    let _lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let (out, stdout) = demo("two-feeds", &["--transport", "xdp", "--lossy-feed", "5"]);
    assert!(
        stdout.contains("== books: the feed handler rebuilt all"),
        "{stdout}"
    );
    assert!(
        stdout.contains("== books: the lossy feed handler rebuilt all"),
        "{stdout}"
    );
    // The lossy one's statistics follow its log heading.
    let lossy = stdout
        .split("---- lossy feed handler")
        .nth(1)
        .expect("the lossy handler's log");
    let feed = words_of(lossy, "feed: ");
    assert!(number(&feed, "gaps", -1) > 1, "{feed:?}");
    assert!(number(&feed, "recovered", -2) > 0, "{feed:?}");
    assert!(lossy.contains("end of session, complete"), "{lossy}");
    let _ = std::fs::remove_dir_all(&out);
}
