//! Crash recovery on the lab network (needs root): the exchange is killed
//! with SIGKILL in the middle of a constant-rate load, restarted from its
//! journal, and must come back with every order any client saw
//! acknowledged; restarting again from the same journal gives exactly the
//! same book (recovery is deterministic). Uses its own lab namespaces
//! (`tkrec-ex`/`tkrec-cl`) and removes them even when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "tkrec";

struct Lab;

impl Lab {
    fn up() -> Lab {
        let ok = Command::new("bash")
            .args(["tools/lab.sh", "up"])
            .env("LAB_PREFIX", PREFIX)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "lab up failed (root needed)");
        Lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args(["tools/lab.sh", "down"])
            .env("LAB_PREFIX", PREFIX)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
    }
}

fn tokex(ns: &str, args: &[&str], log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_tokex")])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap()
}

fn wait_for(path: &Path, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(child.try_wait().unwrap().is_none(), "{what} exited early");
        assert!(Instant::now() < deadline, "{what} not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("exchange did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The number just after `word` on the first line containing `prefix`.
fn number_after(text: &str, prefix: &str, word: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| w.trim_end_matches(',') == word)
        .unwrap();
    words[i + 1].trim_end_matches(',').parse().unwrap()
}

/// The number just before `word` on the first line containing `prefix`.
fn number_before(text: &str, prefix: &str, word: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| w.trim_end_matches(',') == word)
        .unwrap();
    words[i - 1].trim_end_matches(',').parse().unwrap()
}

#[test]
fn killed_exchange_recovers_every_acknowledged_order_from_its_journal() {
    let _lab = Lab::up();
    let dir: PathBuf = std::env::temp_dir().join(format!("tokex-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = dir.join("tokex.toml");
    std::fs::write(
        &config,
        format!(
            "contracts = \"{}\"\n[journal]\npath = \"{}\"\n[latency]\ndir = \"{}\"\n",
            root.join("contracts").display(),
            dir.join("journal").display(),
            dir.join("latency").display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let ex_ns = format!("{PREFIX}-ex");
    let cl_ns = format!("{PREFIX}-cl");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();

    // 1. A fresh day under load; SIGKILL half-way through.
    let mut ex = tokex(
        &ex_ns,
        &[
            "exchange",
            "--config",
            cfg,
            "--fresh",
            "--transport",
            "udp",
            "--ready-file",
            &p("r1"),
        ],
        &dir.join("ex1.log"),
    );
    wait_for(&dir.join("r1"), &mut ex, "exchange");
    let mut load = tokex(
        &cl_ns,
        &[
            "load",
            "--rate",
            "5000",
            "--duration",
            "3",
            "--count",
            "15000",
            "--no-progress",
            "--drain-ms",
            "500",
            "--out",
            &p("load"),
            "--contracts",
            root.join("contracts").to_str().unwrap(),
        ],
        &dir.join("load.log"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    ex.kill().unwrap();
    ex.wait().unwrap();
    assert!(
        load.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(dir.join("load.log")).unwrap()
    );
    let load_log = std::fs::read_to_string(dir.join("load.log")).unwrap();
    let acked = number_after(&load_log, "answered", "accepted");
    let lost = number_after(&load_log, "answered", "lost");
    assert!(acked > 1000, "the load ran before the kill: {load_log}");
    assert!(lost > 0, "the kill happened during the load: {load_log}");

    // 2. Restart from the journal: every acknowledged order is back.
    let mut ex = tokex(
        &ex_ns,
        &[
            "exchange",
            "--config",
            cfg,
            "--transport",
            "udp",
            "--ready-file",
            &p("r2"),
            "--book-out",
            &p("book2.csv"),
        ],
        &dir.join("ex2.log"),
    );
    wait_for(&dir.join("r2"), &mut ex, "restarted exchange");
    stop(&mut ex);
    let ex2 = std::fs::read_to_string(dir.join("ex2.log")).unwrap();
    let restored = number_before(&ex2, "recovery: replayed", "orders");
    assert!(
        restored >= acked,
        "{restored} orders restored, {acked} were acknowledged\n{ex2}"
    );

    // 3. Recovery is deterministic: a second restart gives the same book.
    let mut ex = tokex(
        &ex_ns,
        &[
            "exchange",
            "--config",
            cfg,
            "--transport",
            "udp",
            "--ready-file",
            &p("r3"),
            "--book-out",
            &p("book3.csv"),
        ],
        &dir.join("ex3.log"),
    );
    wait_for(&dir.join("r3"), &mut ex, "second restart");
    stop(&mut ex);
    let b2 = std::fs::read_to_string(dir.join("book2.csv")).unwrap();
    let b3 = std::fs::read_to_string(dir.join("book3.csv")).unwrap();
    assert!(b2.lines().count() > 1, "orders rest after recovery");
    assert_eq!(b2, b3);
    let _ = std::fs::remove_dir_all(&dir);
}
