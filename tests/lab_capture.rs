//! A capture of the market data taken on the lab network during a run
//! (needs root, tcpdump and tshark from tools/install-deps.sh): the
//! exchange, a live feed handler and a short bounded load run in their own
//! namespaces (`tkcap-ex`/`tkcap-cl`, removed again even when the test
//! fails); tcpdump captures in the client namespace; tshark's moldudp64
//! dissector decodes the capture with contiguous sequence numbers up to End
//! of Session; and `tokex feed --pcap` on it rebuilds exactly the book the
//! exchange wrote at shutdown (and the live feed handler rebuilt).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "tkcap";
const EX_NS: &str = "tkcap-ex";
const CL_NS: &str = "tkcap-cl";
/// The client side of the veth pair (tools/lab.sh names it after the prefix).
const CL_IF: &str = "tkcap-cl";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lab namespaces, and every process started in them: the processes
/// are killed and the namespaces removed when this is dropped, also when
/// an assertion fails half-way.
struct Lab {
    children: Vec<(&'static str, Child)>,
}

impl Lab {
    fn up() -> Lab {
        let lab = Lab {
            children: Vec::new(),
        };
        let ok = Command::new("bash")
            .args(["tools/lab.sh", "up"])
            .env("LAB_PREFIX", PREFIX)
            .current_dir(root())
            .status()
            .unwrap()
            .success();
        assert!(ok, "lab up failed (root needed)");
        lab
    }

    /// Starts `program args` inside `ns` with its output in `log`; returns
    /// its index.
    fn spawn(
        &mut self,
        name: &'static str,
        ns: &str,
        program: &str,
        args: &[&str],
        log: &Path,
    ) -> usize {
        let f = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.children.push((name, child));
        self.children.len() - 1
    }

    fn running(&mut self, i: usize) -> bool {
        matches!(self.children[i].1.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for process `i` to exit; true if it succeeded.
    fn wait(&mut self, i: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let (name, child) = &mut self.children[i];
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "the {name} did not finish within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT (`ip netns exec` execs the program, so the pid is its own),
    /// then waits.
    fn interrupt(&mut self, i: usize, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-INT", &self.children[i].1.id().to_string()])
            .status();
        self.wait(i, limit)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = Command::new("bash")
            .args(["tools/lab.sh", "down"])
            .env("LAB_PREFIX", PREFIX)
            .current_dir(root())
            .status();
    }
}

/// Waits until `path` exists (or, if `needle` is given, contains it) while
/// process `i` runs.
fn wait_for(lab: &mut Lab, i: usize, path: &Path, needle: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = match needle {
            None => path.exists(),
            Some(n) => std::fs::read_to_string(path).is_ok_and(|s| s.contains(n)),
        };
        if ready {
            return;
        }
        let name = lab.children[i].0;
        assert!(
            lab.running(i),
            "the {name} exited early: {}",
            std::fs::read_to_string(path.with_extension("log")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "the {name} was not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// (sequence, count) of every MoldUDP64 packet to the feed port, as
/// tshark's dissector reads them.
fn tshark_sequences(capture: &Path) -> Vec<(u64, u32)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .args([
            "-d",
            "udp.port==9100,moldudp64",
            "-Y",
            "udp.dstport==9100",
            "-T",
            "fields",
            "-e",
            "moldudp64.sequence",
            "-e",
            "moldudp64.count",
        ])
        .output()
        .expect("tshark (install it with tools/install-deps.sh)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (s, c) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("not decoded as MoldUDP64: {l:?}"));
            (s.parse().unwrap(), c.parse().unwrap())
        })
        .collect()
}

#[test]
fn captured_market_data_decodes_contiguously_and_rebuilds_the_exchange_book() {
    let dir: PathBuf = std::env::temp_dir().join(format!("tokex-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let config = dir.join("tokex.toml");
    std::fs::write(
        &config,
        format!(
            "contracts = \"{}\"\n[network]\nnamespace = \"{EX_NS}\"\ninterface = \"{PREFIX}-ex\"\n[journal]\npath = \"{}\"\n[latency]\ndir = \"{}\"\n",
            root().join("contracts").display(),
            p("journal"),
            p("latency"),
        ),
    )
    .unwrap();
    let tokex = env!("CARGO_BIN_EXE_tokex");
    let mut lab = Lab::up();

    // tcpdump in the client namespace, on the lab veth, unbuffered (-U),
    // as root (-Z) so that it may write the file; ready once it listens.
    // Started before the exchange, so that the capture holds the start of
    // day from sequence 1.
    let capture = dir.join("md.pcap");
    let dump = lab.spawn(
        "tcpdump",
        CL_NS,
        "tcpdump",
        &[
            "-i",
            CL_IF,
            "-n",
            "-U",
            "-Z",
            "root",
            "-w",
            capture.to_str().unwrap(),
            "udp",
        ],
        &dir.join("tcpdump.log"),
    );
    wait_for(
        &mut lab,
        dump,
        &dir.join("tcpdump.log"),
        Some("listening on"),
    );

    let ex = lab.spawn(
        "exchange",
        EX_NS,
        tokex,
        &[
            "exchange",
            "--config",
            config.to_str().unwrap(),
            "--fresh",
            "--transport",
            "udp",
            "--ready-file",
            &p("exchange.ready"),
            "--book-out",
            &p("exchange-book.csv"),
            "--max-seconds",
            "60",
        ],
        &dir.join("exchange.log"),
    );
    wait_for(&mut lab, ex, &dir.join("exchange.ready"), None);

    let feed = lab.spawn(
        "feed handler",
        CL_NS,
        tokex,
        &[
            "feed",
            "--quiet",
            "--duration",
            "40",
            "--ready-file",
            &p("feed.ready"),
            "--book-out",
            &p("feed-book.csv"),
        ],
        &dir.join("feed.log"),
    );
    wait_for(&mut lab, feed, &dir.join("feed.ready"), None);

    // A few seconds of load, bounded in count and time.
    let load = lab.spawn(
        "load generator",
        CL_NS,
        tokex,
        &[
            "load",
            "--rate",
            "4000",
            "--duration",
            "2",
            "--count",
            "8000",
            "--drain-ms",
            "500",
            "--no-progress",
            "--out",
            &p("load"),
            "--contracts",
            root().join("contracts").to_str().unwrap(),
        ],
        &dir.join("load.log"),
    );
    assert!(
        lab.wait(load, Duration::from_secs(30)),
        "{}",
        log_of(&dir, "load.log")
    );
    // Shutdown publishes End of Session; the live handler completes.
    assert!(
        lab.interrupt(ex, Duration::from_secs(20)),
        "{}",
        log_of(&dir, "exchange.log")
    );
    assert!(
        lab.wait(feed, Duration::from_secs(20)),
        "{}",
        log_of(&dir, "feed.log")
    );
    // Let the last datagrams reach the file, then stop the capture.
    std::thread::sleep(Duration::from_millis(300));
    lab.interrupt(dump, Duration::from_secs(10));
    drop(lab);

    let ex_book = log_of(&dir, "exchange-book.csv");
    assert!(
        ex_book.lines().count() > 100,
        "the load must leave a book:\n{}",
        log_of(&dir, "load.log")
    );
    assert_eq!(
        log_of(&dir, "feed-book.csv"),
        ex_book,
        "live feed handler vs exchange"
    );

    // tshark: every packet to the feed port is MoldUDP64, in sequence, with
    // no hole, ending with End of Session at the next sequence number.
    let packets = tshark_sequences(&capture);
    assert!(packets.len() > 10, "{} packets captured", packets.len());
    let mut next = 1;
    let mut messages = 0;
    let mut ended = false;
    for (i, &(seq, count)) in packets.iter().enumerate() {
        let at = || {
            format!(
                "packet {i} of {}: {:?}",
                packets.len(),
                &packets[i.saturating_sub(3)..(i + 3).min(packets.len())]
            )
        };
        assert_eq!(seq, next, "{}", at());
        match count {
            0 => assert!(!ended, "heartbeat after End of Session: {}", at()),
            // The exchange repeats End of Session; nothing else follows it.
            0xFFFF => ended = true,
            n => {
                assert!(!ended, "data after End of Session: {}", at());
                next += u64::from(n);
                messages += u64::from(n);
            }
        }
    }
    assert!(ended, "the capture ends with End of Session");
    assert!(messages > 1000, "{messages} messages");

    // tokex feed --pcap rebuilds the exchange's book from the capture alone.
    let out = Command::new(tokex)
        .current_dir(root())
        .args(["feed", "--quiet", "--pcap"])
        .arg(&capture)
        .args(["--book-out", &p("pcap-book.csv")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("none missing"), "{stdout}");
    assert!(
        stdout.contains(&format!("{messages} messages, 0 gaps")),
        "{stdout}"
    );
    assert_eq!(
        log_of(&dir, "pcap-book.csv"),
        ex_book,
        "pcap rebuild vs exchange"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
