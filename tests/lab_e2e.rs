//! End to end on the lab network (needs root: creates and removes the
//! tokex-ex/tokex-cl namespaces): `tokex demo` starts the exchange, a feed
//! handler and the load generator; every order is answered, and the feed
//! handler's rebuilt book equals the exchange's own (the demo fails otherwise).

use std::process::Command;
use std::sync::Mutex;

/// Both tests use the default lab namespaces: one at a time.
static LAB: Mutex<()> = Mutex::new(());

#[test]
fn demo_trades_over_the_lab_and_the_feed_rebuilds_the_exchange_book() {
    let _lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::env::temp_dir().join(format!("tokex-e2e-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_tokex"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "demo",
            "--rate",
            "5000",
            "--duration",
            "2",
            "--transport",
            "udp",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("running tokex demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "demo failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("the feed handler rebuilt all"), "{stdout}");
    // Every order sent was answered (the 2 s bound may cut the last few sends).
    let line = stdout
        .lines()
        .find(|l| l.starts_with("sent "))
        .expect("load summary");
    let num = |w: &str| -> u64 {
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|x| *x == w).unwrap();
        words[i + 1].trim_end_matches(',').parse().unwrap()
    };
    assert!(num("sent") >= 9_900, "{line}");
    assert_eq!(num("answered"), num("sent"), "{line}");
    assert_eq!(num("lost"), 0, "{line}");
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
    let out = std::env::temp_dir().join(format!("tokex-e2e-loss-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_tokex"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "demo",
            "--rate",
            "5000",
            "--duration",
            "2",
            "--transport",
            "udp",
            "--feed-loss",
            "5",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("running tokex demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "demo failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("the feed handler rebuilt all"), "{stdout}");
    let feed = stdout
        .lines()
        .find(|l| l.starts_with("feed: "))
        .expect("feed statistics");
    let number_before = |word: &str| -> u64 {
        let words: Vec<&str> = feed.split_whitespace().collect();
        let i = words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .unwrap();
        words[i - 1].parse().unwrap()
    };
    assert!(number_before("gaps") > 1, "5 % loss must open gaps: {feed}");
    let words: Vec<&str> = feed.split_whitespace().collect();
    let recovered: u64 = words[words.iter().position(|w| *w == "recovered").unwrap() - 2]
        .parse()
        .unwrap();
    assert!(recovered > 0, "{feed}");
    assert!(feed.contains("end of session, complete"), "{feed}");
    let _ = std::fs::remove_dir_all(&out);
}
