//! Helpers shared by the lab tests: a lab of their own (namespaces
//! `PREFIX-ex`/`PREFIX-cl`, removed on drop even when the test fails),
//! tokex processes inside it, and numbers read from their logs.
#![allow(dead_code)] // each test file uses a different subset

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

/// Tests of one file that run an exchange and a load generator hold this
/// while they run: each busy-polls a core, and two of each on a 2-core
/// machine would break the one-spinning-thread-per-core rule (and time
/// each other out).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits until no other test of this file holds the machine's cores.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A lab network of the test's own; `tools/lab.sh down` on drop.
pub struct Lab {
    prefix: &'static str,
}

impl Lab {
    pub fn up(prefix: &'static str) -> Lab {
        // The guard first: `up` can fail part-way (after `ip netns add`),
        // and the panic below then still takes the namespaces down.
        let lab = Lab { prefix };
        let ok = Command::new("bash")
            .args(["tools/lab.sh", "up"])
            .env("LAB_PREFIX", prefix)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "lab up failed (root needed)");
        lab
    }

    pub fn exchange_ns(&self) -> String {
        format!("{}-ex", self.prefix)
    }

    pub fn client_ns(&self) -> String {
        format!("{}-cl", self.prefix)
    }

    /// The client-side interface (tools/lab.sh's naming).
    pub fn client_if(&self) -> String {
        format!("{}-cl", &self.prefix[..self.prefix.len().min(12)])
    }

    /// The exchange-side interface (tools/lab.sh's naming).
    pub fn exchange_if(&self) -> String {
        format!("{}-ex", &self.prefix[..self.prefix.len().min(12)])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args(["tools/lab.sh", "down"])
            .env("LAB_PREFIX", self.prefix)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
    }
}

/// Moves the calling thread into network namespace `ns` until the guard
/// is dropped (test threads may be reused).
pub fn enter_ns(ns: &str) -> NsGuard {
    let home = File::open("/proc/thread-self/ns/net").expect("own namespace");
    let f = File::open(format!("/var/run/netns/{ns}")).expect("namespace file");
    setns(f, CloneFlags::CLONE_NEWNET).expect("setns (root needed)");
    NsGuard(home)
}

pub struct NsGuard(File);

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = setns(&self.0, CloneFlags::CLONE_NEWNET);
    }
}

/// A scratch directory with a config whose journal and latency files go
/// there (the journal in a subdirectory the exchange has to create, as on a
/// fresh checkout); removed by the caller at the end of a passing test.
pub fn scratch(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tokex-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = dir.join("tokex.toml");
    std::fs::write(
        &config,
        format!(
            "contracts = \"{}\"\n[journal]\npath = \"{}\"\n[latency]\ndir = \"{}\"\n",
            root.join("contracts").display(),
            dir.join("journal").join("tokex.journal").display(),
            dir.join("latency").display()
        ),
    )
    .unwrap();
    (dir, config)
}

/// A process started by a test; killed when dropped if still running, so
/// a failing test leaves no spinning exchange behind.
pub struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `program ARGS` in namespace `ns`, output to `log`.
pub fn spawn_in(ns: &str, program: &str, args: &[&str], log: &Path) -> Running {
    let f = std::fs::File::create(log).unwrap();
    Running(
        Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}")),
    )
}

/// Runs `tokex ARGS` in namespace `ns`, output to `log`.
pub fn tokex(ns: &str, args: &[&str], log: &Path) -> Running {
    spawn_in(ns, env!("CARGO_BIN_EXE_tokex"), args, log)
}

/// Starts run `n` of `tokex exchange --config config` in `ns` with `args`
/// (plus `--fresh` when `fresh`), ready file `ready{n}` and log `ex{n}.log`
/// in `dir`; returns once it is ready.
pub fn start_exchange(
    ns: &str,
    config: &str,
    dir: &Path,
    n: usize,
    args: &[&str],
    fresh: bool,
) -> Running {
    let ready = dir.join(format!("ready{n}"));
    let ready_arg = ready.to_str().unwrap();
    let mut all = vec!["exchange", "--config", config, "--ready-file", ready_arg];
    all.extend_from_slice(args);
    if fresh {
        all.push("--fresh");
    }
    let mut ex = tokex(ns, &all, &dir.join(format!("ex{n}.log")));
    wait_for(&ready, &mut ex, "exchange");
    ex
}

/// Waits (at most 20 s) until the file at `path` contains `needle`, while
/// `child` runs.
pub fn wait_for_text(path: &Path, needle: &str, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
        assert!(child.try_wait().unwrap().is_none(), "{what} exited early");
        assert!(Instant::now() < deadline, "{what} not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a fresh exchange (new day) in the lab on `transport` with the
/// scratch `config`, logging to `dir/exchange.log`; returns once it is ready.
pub fn fresh_exchange(lab: &Lab, transport: &str, config: &Path, dir: &Path) -> Running {
    let ready = dir.join("ready");
    let _ = std::fs::remove_file(&ready);
    let mut ex = tokex(
        &lab.exchange_ns(),
        &[
            "exchange",
            "--config",
            config.to_str().unwrap(),
            "--fresh",
            "--transport",
            transport,
            "--interface",
            &lab.exchange_if(),
            "--ready-file",
            ready.to_str().unwrap(),
        ],
        &dir.join("exchange.log"),
    );
    wait_for(&ready, &mut ex, "exchange");
    ex
}

/// Waits (at most 20 s) for `path` to exist while `child` runs.
pub fn wait_for(path: &Path, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(child.try_wait().unwrap().is_none(), "{what} exited early");
        assert!(Instant::now() < deadline, "{what} not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGINT (`ip netns exec` execs the program, so the pid is its own), then
/// wait (at most 30 s) for the process to end; its exit status.
pub fn stop(child: &mut Child) -> std::process::ExitStatus {
    tokex::lab::interrupt(child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command in namespace `ns`; whether it succeeded.
pub fn in_ns(ns: &str, cmd: &[&str]) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The words of the first line containing `prefix`, trailing commas cut.
fn words<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"))
        .split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .collect()
}

/// The number `offset` words away from `word` on the first line
/// containing `prefix`.
fn number_near(text: &str, prefix: &str, word: &str, offset: isize) -> u64 {
    let w = words(text, prefix);
    let i = w
        .iter()
        .position(|x| *x == word)
        .unwrap_or_else(|| panic!("no {word:?} in {w:?}"));
    w[(i as isize + offset) as usize].parse().unwrap()
}

/// The number just after `word` on the first line containing `prefix`.
pub fn number_after(text: &str, prefix: &str, word: &str) -> u64 {
    number_near(text, prefix, word, 1)
}

/// The number just before `word` on the first line containing `prefix`.
pub fn number_before(text: &str, prefix: &str, word: &str) -> u64 {
    number_near(text, prefix, word, -1)
}

/// The number of values in each interval of an HdrHistogram interval log
/// (`.hlog`), decoded with hdrhistogram's own reader.
pub fn hlog_interval_counts(path: &Path) -> Vec<u64> {
    use base64::Engine;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::Histogram;
    let bytes = std::fs::read(path).unwrap();
    IntervalLogIterator::new(&bytes)
        .map(|e| e.unwrap())
        .filter_map(|e| match e {
            LogEntry::Interval(i) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .unwrap();
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut raw.as_slice())
                    .unwrap();
                Some(h.len())
            }
            _ => None,
        })
        .collect()
}
