//! Snapshots on the lab network (needs root): `tokex snapshot` runs twice
//! while the exchange is taking orders (reading the journal it appends
//! to), the exchange is killed with SIGKILL, and the restart loads the
//! newest snapshot and replays only the journal after it. It must come
//! back with every acknowledged order and the market-data sequence where
//! full replay puts them: the same book and the same next sequence as a
//! restart from the journal alone, and a late-joining feed handler gets
//! every message from sequence 1 (the archive from before the restart is
//! kept) and rebuilds the exchange's book. Uses its own lab namespaces
//! (`tksnap-ex`/`tksnap-cl`) and removes them even when it fails.

use std::path::Path;
use std::time::Duration;

mod common;

use common::{number_after, number_before, scratch, start_exchange, stop, tokex, wait_for, Lab};

const PREFIX: &str = "tksnap";

#[test]
fn restart_from_a_snapshot_taken_under_load_keeps_acknowledged_orders_and_the_feed() {
    let lab = Lab::up(PREFIX);
    let (dir, config) = scratch("snapshot");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let contracts = root.join("contracts");
    let cfg = config.to_str().unwrap();
    let (ex_ns, cl_ns) = (lab.exchange_ns(), lab.client_ns());
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let exchange = |n: usize, fresh: bool| {
        let book = p(&format!("book{n}.csv"));
        let args = ["--transport", "udp", "--book-out", &book];
        start_exchange(&ex_ns, cfg, &dir, n, &args, fresh)
    };
    let load = |n: u32, count: &str| {
        tokex(
            &cl_ns,
            &[
                "load",
                "--rate",
                "3000",
                "--duration",
                "2",
                "--count",
                count,
                "--no-progress",
                "--drain-ms",
                "500",
                "--out",
                &p(&format!("load{n}")),
                "--contracts",
                contracts.to_str().unwrap(),
            ],
            &dir.join(format!("load{n}.log")),
        )
    };
    let snapshot = |n: u32| {
        let log = dir.join(format!("snap{n}.log"));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_tokex"))
            .args(["snapshot", "--config", cfg])
            .current_dir(root)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("snap{n}.err"))).unwrap())
            .status()
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(status.success(), "{text}");
        text
    };
    let acked = |n: u32| {
        let log = std::fs::read_to_string(dir.join(format!("load{n}.log"))).unwrap();
        number_after(&log, "answered", "accepted")
    };

    // 1. A fresh day; a first load, then a second one with two snapshots
    //    taken while it runs, and a short third one after them (so that
    //    the journal has a tail past the newest snapshot even when a slow
    //    machine took it after the second load ended); SIGKILL after it.
    let mut ex = exchange(1, true);
    assert!(load(1, "6000").wait().unwrap().success());
    let mut l2 = load(2, "6000");
    std::thread::sleep(Duration::from_millis(600));
    let s1 = snapshot(1);
    std::thread::sleep(Duration::from_millis(500));
    let s2 = snapshot(2);
    assert!(l2.wait().unwrap().success());
    assert!(load(3, "600").wait().unwrap().success());
    assert!(
        s1.contains("from the start of the journal") && s1.contains("wrote"),
        "{s1}"
    );
    assert!(
        s2.contains("snapshot: from") && s2.contains("wrote"),
        "{s2}"
    );
    std::thread::sleep(Duration::from_millis(200));
    ex.kill().unwrap();
    ex.wait().unwrap();
    let acked = acked(1) + acked(2) + acked(3);
    assert!(acked > 4000, "the loads ran: {acked} acknowledged");
    let journal = dir.join("journal").join("tokex.journal");
    let snaps = tokex::snapshot::list(&journal);
    assert_eq!(snaps.len(), 2, "two snapshots kept");

    // 2. Restart: from the newest snapshot, the journal tail after it.
    let mut ex = exchange(2, false);
    let ex2 = std::fs::read_to_string(dir.join("ex2.log")).unwrap();
    assert!(ex2.contains("recovery: loaded snapshot"), "{ex2}");
    assert!(!ex2.contains("skipping snapshot"), "{ex2}");
    let tail = number_before(&ex2, "recovery: from snapshot", "journal");
    assert!(
        tail > 0,
        "the journal after the snapshot was replayed: {ex2}"
    );
    let seq2 = number_after(&ex2, "recovery: from snapshot", "sequence");
    // A late-joining feed handler: everything from sequence 1, the part
    // from before the restart out of the kept archive.
    let mut feed = tokex(
        &cl_ns,
        &[
            "feed",
            "--quiet",
            "--duration",
            "30",
            "--ready-file",
            &p("feed.ready"),
            "--book-out",
            &p("feed-book.csv"),
            "--csv",
            &p("feed.csv"),
            "--contracts",
            contracts.to_str().unwrap(),
        ],
        &dir.join("feed.log"),
    );
    wait_for(&dir.join("feed.ready"), &mut feed, "feed handler");
    // Time to ask for and receive everything before the clean stop (the
    // exchange also keeps answering for 2 s after End of Session).
    std::thread::sleep(Duration::from_secs(3));
    stop(&mut ex);
    let status = feed.wait().unwrap();
    let feed_log = std::fs::read_to_string(dir.join("feed.log")).unwrap();
    assert!(status.success(), "{feed_log}");
    assert!(feed_log.contains("end of session, complete"), "{feed_log}");
    let csv = std::fs::read_to_string(dir.join("feed.csv")).unwrap();
    let seqs: Vec<u64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        seqs.len() as u64,
        seq2 - 1,
        "every message before the restart"
    );
    assert!(seqs.iter().enumerate().all(|(i, &s)| s == i as u64 + 1));
    let book2 = std::fs::read_to_string(dir.join("book2.csv")).unwrap();
    assert!(book2.lines().count() > 1, "orders rest after recovery");
    assert_eq!(
        book2,
        std::fs::read_to_string(dir.join("feed-book.csv")).unwrap()
    );

    // 3. The same journal without snapshots (full replay): the same book,
    //    the same market-data sequence, and every acknowledged order.
    for (_, s) in tokex::snapshot::list(&journal) {
        std::fs::rename(&s, s.with_extension("moved")).unwrap();
    }
    let mut ex = exchange(3, false);
    stop(&mut ex);
    let ex3 = std::fs::read_to_string(dir.join("ex3.log")).unwrap();
    assert!(!ex3.contains("loaded snapshot"), "{ex3}");
    assert_eq!(number_after(&ex3, "recovery: replayed", "sequence"), seq2);
    let restored = number_before(&ex3, "recovery: replayed", "orders");
    assert!(
        restored >= acked,
        "{restored} orders restored, {acked} were acknowledged"
    );
    assert_eq!(
        book2,
        std::fs::read_to_string(dir.join("book3.csv")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
