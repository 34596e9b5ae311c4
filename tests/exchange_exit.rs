//! `tokex exchange` as a process, on loopback (kernel UDP and TCP, no lab
//! needed): how it stops, what its exit report counts, and how a second
//! one on the same journal is refused.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A free loopback port (UDP and TCP both free at the time asked).
fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A small loopback config with its journal in `dir`.
fn config(dir: &Path) -> PathBuf {
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts");
    let text = format!(
        r#"contracts = "{contracts}"
[network]
transport = "udp"
address = "127.0.0.1"
order_port = {order}
tcp_port = {tcp}
retransmit_port = {retrans}
md_port = {md}
[runtime]
engine_core = 0
busy_poll = false
prefault = false
[engine]
max_orders = 4096
[gateway]
resend_window = 1024
max_tokens_per_session = 4096
[journal]
path = "{journal}"
[latency]
dir = "{latency}"
"#,
        contracts = contracts.display(),
        order = free_port(),
        tcp = free_port(),
        retrans = free_port(),
        md = free_port(),
        journal = dir.join("day.journal").display(),
        latency = dir.join("latency").display(),
    );
    let path = dir.join("tokex.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running exchange and its stdout, line by line.
struct Exchange {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Exchange {
    fn start(config: &Path, fresh: bool) -> Exchange {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokex"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["exchange", "--max-seconds", "60", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if fresh {
            cmd.arg("--fresh");
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Exchange {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `limit` for a line starting with `prefix`.
    fn line(&mut self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return Some(l.clone());
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(l) = self.lines.recv_timeout(left) else {
                break;
            };
            self.seen.push(l.clone());
            if l.starts_with(prefix) {
                return Some(l);
            }
        }
        None
    }

    fn interrupt(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT).unwrap();
    }

    /// Waits up to `limit` for the process to end; the rest of its stdout.
    fn ended_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const READY: Duration = Duration::from_secs(30);

#[test]
fn a_ctrl_c_says_it_is_stopping_and_a_second_one_cuts_the_wait_short_with_the_report() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exchange_exit_ctrl_c");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(&dir);
    let mut ex = Exchange::start(&cfg, true);
    assert!(ex.line("ready:", READY).is_some(), "{:?}", ex.seen);
    ex.interrupt();
    let said = ex.line("stopping:", Duration::from_secs(1));
    assert_eq!(
        said.as_deref(),
        Some("stopping: sending End of Session (Ctrl-C again to stop at once)"),
        "{:?}",
        ex.seen
    );
    let t = Instant::now();
    ex.interrupt();
    assert!(ex.ended_within(Duration::from_secs(3)), "{:?}", ex.seen);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert!(ex.child.wait().unwrap().success(), "{:?}", ex.seen);
    assert!(
        ex.seen.iter().any(|l| l == "== exchange counters"),
        "no exit report: {:?}",
        ex.seen
    );
    // Never busy: no rate made of a division by zero.
    let core = ex.line("engine core:", Duration::ZERO).unwrap();
    assert!(
        core.ends_with(", - OUCH messages per busy second"),
        "{core}"
    );
}

#[test]
fn a_restart_reports_its_replay_apart_and_a_second_exchange_names_the_first_ones_pid() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exchange_exit_restart");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(&dir);
    let mut first = Exchange::start(&cfg, true);
    assert!(first.line("ready:", READY).is_some(), "{:?}", first.seen);
    first.interrupt();
    first.interrupt();
    assert!(first.ended_within(Duration::from_secs(5)));

    let mut live = Exchange::start(&cfg, false);
    assert!(live.line("ready:", READY).is_some(), "{:?}", live.seen);
    // A second one on the same journal, also with --fresh: refused for the
    // journal, naming the live one, before it binds a port.
    for fresh in [false, true] {
        let mut second = Exchange::start(&cfg, fresh);
        assert!(second.ended_within(Duration::from_secs(10)));
        let mut err = String::new();
        std::io::Read::read_to_string(second.child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(
            err.contains(&format!(
                "another exchange (pid {}) is using this journal",
                live.child.id()
            )),
            "{err}"
        );
        assert!(!err.contains("binding"), "{err}");
    }
    live.interrupt();
    live.interrupt();
    assert!(live.ended_within(Duration::from_secs(5)));
    let replayed = live.line("replayed ", Duration::ZERO);
    assert!(
        replayed
            .as_deref()
            .is_some_and(|l| l.starts_with("replayed 1 journal record at start-up")),
        "{:?}",
        live.seen
    );
    let counters = live.line("datagrams ", Duration::ZERO).unwrap();
    assert!(
        counters.starts_with("datagrams 0, SoupBinTCP packets 0, OUCH messages 0, logins 0,"),
        "{counters}"
    );
}
