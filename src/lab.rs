//! The lab network and tokex processes inside it, for the commands that
//! orchestrate runs (`tokex demo`, `tokex bench transport|throughput|feed|all`):
//! `tools/lab.sh`, the check that nobody else's process runs in the lab
//! before a run takes it over, the run's own exchange config (its journal
//! under the run's directory, never the operator's), a guard that tears the
//! lab down, child processes started with `ip netns exec` that are
//! interrupted (then killed) when dropped, waits that give up as soon as a
//! process the run depends on has failed, and readiness files. No trading
//! or network logic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::Config;
use crate::runtime::Stop;

/// Namespaces of the lab (DESIGN.md defaults).
pub const EXCHANGE_NS: &str = "tokex-ex";
pub const CLIENT_NS: &str = "tokex-cl";
/// The client namespace's end of the veth (198.18.0.2/24).
pub const CLIENT_IF: &str = "tkx-cl";

/// Runs `tools/lab.sh ACTION` from the repository.
pub fn lab(action: &str) -> anyhow::Result<()> {
    let script = repo_file("tools/lab.sh")?;
    let status = Command::new("bash")
        .arg(&script)
        .arg(action)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} {action} failed ({status})", script.display());
    }
    Ok(())
}

/// A file of the repository, found from the current directory.
pub fn repo_file(rel: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(rel);
    if p.exists() {
        return Ok(p);
    }
    bail!("{rel} not found: run tokex from the repository's top directory")
}

/// A process running inside one of the lab's namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabProcess {
    pub ns: String,
    pub pid: u32,
    /// Its command line, arguments separated by spaces.
    pub cmdline: String,
}

/// The pids `ip netns pids NS` printed, one a line.
pub fn parse_pids(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// The processes running in the lab's namespaces (none when the lab is
/// down), as `ip netns pids` finds them.
pub fn lab_processes() -> Vec<LabProcess> {
    let mut all = Vec::new();
    for ns in [EXCHANGE_NS, CLIENT_NS] {
        if !Path::new("/run/netns").join(ns).exists() {
            continue;
        }
        let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
            continue;
        };
        for pid in parse_pids(&String::from_utf8_lossy(&out.stdout)) {
            // Gone since (or a zombie, whose command line reads empty).
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if raw.is_empty() {
                continue;
            }
            let cmdline = String::from_utf8_lossy(&raw)
                .split('\0')
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            all.push(LabProcess {
                ns: ns.to_string(),
                pid,
                cmdline,
            });
        }
    }
    all
}

/// Why `command` will not start while `procs` run in the lab, or `None`
/// when none does. A run brings the lab up and tears it down at its end,
/// and its exchange binds the lab's ports: with another process in there
/// it failed on the ports taken, and the teardown left that process
/// running in a namespace nobody could see any more.
pub fn busy_lab_refusal(command: &str, procs: &[LabProcess]) -> Option<String> {
    if procs.is_empty() {
        return None;
    }
    let mut s = format!(
        "{command}: not started: {} already running in the lab (a run would take over its ports and tear the lab down under {}):",
        if procs.len() == 1 {
            "a process is"
        } else {
            "processes are"
        },
        if procs.len() == 1 { "it" } else { "them" }
    );
    for p in procs {
        s += &format!("\n  pid {} in {}: {}", p.pid, p.ns, p.cmdline);
    }
    let pids: Vec<String> = procs.iter().map(|p| p.pid.to_string()).collect();
    s += &format!(
        "\nStop {} first (Ctrl-C where {} runs, or `kill -INT {}`), or run `tokex lab down`, which stops every process in the lab and removes it.",
        if procs.len() == 1 { "it" } else { "them" },
        if procs.len() == 1 { "it" } else { "each" },
        pids.join(" ")
    );
    Some(s)
}

/// Refuses to go on (before anything touches the lab) while another
/// process runs in the lab's namespaces; see [`busy_lab_refusal`].
pub fn ensure_lab_idle(command: &str) -> anyhow::Result<()> {
    match busy_lab_refusal(command, &lab_processes()) {
        Some(why) => bail!("{why}"),
        None => Ok(()),
    }
}

/// The name of the derived config in a run's directory.
pub const RUN_CONFIG: &str = "exchange.toml";

/// The config text `base_text` (the file `base_name`) with everything the
/// exchange keeps from one start to the next moved under `dir`: the
/// journal, and with it its snapshots, its lock and the market-data
/// archive (all named after the journal, beside it), and the latency
/// directory. Runs start their exchange with `--fresh`, which on the
/// config's own journal reset the operator's day. Checked as the exchange
/// would check it.
pub fn derive_config(base_text: &str, base_name: &str, dir: &Path) -> anyhow::Result<String> {
    let mut table: toml::Table = base_text
        .parse()
        .with_context(|| format!("reading {base_name}"))?;
    let path = |p: PathBuf| -> anyhow::Result<toml::Value> {
        p.to_str()
            .map(|s| toml::Value::String(s.to_string()))
            .with_context(|| format!("{} is not UTF-8", p.display()))
    };
    let section = |table: &mut toml::Table, name: &str| -> anyhow::Result<toml::Table> {
        match table.remove(name) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t),
            Some(_) => bail!("{base_name}: `{name}` is not a table"),
        }
    };
    let mut journal = section(&mut table, "journal")?;
    journal.insert(
        "path".into(),
        path(dir.join("journal").join("tokex.journal"))?,
    );
    table.insert("journal".into(), toml::Value::Table(journal));
    let mut latency = section(&mut table, "latency")?;
    latency.insert("dir".into(), path(dir.join("exchange-latency"))?);
    table.insert("latency".into(), toml::Value::Table(latency));
    let text = format!(
        "# Written by tokex for this run: {base_name} with the journal (its snapshots\n# and market-data archive beside it) and the latency files moved here.\n{}",
        toml::to_string(&table).context("writing the run's config")?
    );
    Config::parse(
        &format!("{base_name} (derived for {})", dir.display()),
        &text,
    )?;
    Ok(text)
}

/// Writes the run's own config, [`derive_config`] of `base`, to
/// `dir/exchange.toml` and returns its path.
pub fn run_config(base: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let text =
        std::fs::read_to_string(base).with_context(|| format!("reading {}", base.display()))?;
    let derived = derive_config(&text, &base.display().to_string(), dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(RUN_CONFIG);
    std::fs::write(&path, derived).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Parses `argv` (a `tokex` subcommand's name, then its arguments) with
/// that subcommand's own argument definitions, so a run can refuse a
/// command line its child would refuse before it brings the lab up.
pub fn parse_command<A: clap::Args + clap::FromArgMatches>(argv: &[String]) -> anyhow::Result<A> {
    let (_, rest) = argv.split_first().context("an empty command line")?;
    let cmd = A::augment_args(
        clap::Command::new("tokex")
            .no_binary_name(true)
            .disable_help_flag(true),
    );
    let refused = |e: clap::Error| {
        // Clap's first line ("error: invalid value ..."), without its
        // pointer to --help (the child's help is not the user's).
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        anyhow::anyhow!("`tokex {}` would be refused: {first}", shell_line(argv))
    };
    let m = cmd.try_get_matches_from(rest).map_err(refused)?;
    A::from_arg_matches(&m).map_err(refused)
}

/// A command line as one shell line, each argument quoted where the shell
/// would split or expand it.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:,=@%+".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Tears the lab down when dropped, unless told to keep it.
pub struct LabGuard {
    pub keep: bool,
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = lab("down") {
                eprintln!("lab teardown: {e:#}");
            }
        }
    }
}

/// A child process that is interrupted, then killed, when dropped.
pub struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(
        name: &'static str,
        ns: &str,
        args: &[String],
        log: &Path,
    ) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("locating the tokex binary")?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(exe).args(args);
        Proc::start(name, cmd, log)
    }

    /// Starts `cmd` with its output going to `log`.
    pub fn start(name: &'static str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let logf =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        Ok(Proc {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Sends SIGINT and waits up to `grace` for a clean exit.
    pub fn interrupt(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        // `ip netns exec` execs the program, so the pid is tokex's own.
        interrupt(self.child.id());
        self.wait(grace)
    }

    pub fn wait(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        self.wait_until(limit, || false)
    }

    /// As [`Proc::wait`], but gives up ("interrupted") as soon as `stop` is
    /// set (SIGINT or SIGTERM to the demo): the process is then interrupted
    /// when dropped, and the lab torn down by its guard.
    pub fn wait_unless(&mut self, stop: &Stop, limit: Duration) -> anyhow::Result<ExitStatus> {
        self.wait_until(limit, || stop.is_set())
    }

    fn wait_until(
        &mut self,
        limit: Duration,
        mut stopped: impl FnMut() -> bool,
    ) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if stopped() {
                bail!("interrupted");
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let status = self.child.wait()?;
                bail!(
                    "the {} did not stop within {limit:?} and was killed ({status})",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// As [`Proc::wait_unless`], but also gives up as soon as one of
    /// `deps`, processes the run depends on (the exchange under a load,
    /// the feed handler beside a sender), has exited with a failure:
    /// waiting on would only wait out `limit` for a run already lost (the
    /// feed bench waited 90 s for a sender that had failed at once). The
    /// tail of that process's log is printed and the error names it and
    /// its exit status. A dependency that ends well (a feed handler that
    /// has the whole session while the sender still lingers for requests)
    /// does not stop the wait.
    pub fn wait_watching(
        &mut self,
        deps: &mut [&mut Proc],
        stop: &Stop,
        limit: Duration,
    ) -> anyhow::Result<ExitStatus> {
        let mut failed = None;
        let status = self.wait_until(limit, || {
            if stop.is_set() {
                return true;
            }
            for d in deps.iter_mut() {
                match d.child.try_wait() {
                    Ok(Some(status)) if !status.success() => {
                        failed = Some((d.name, d.log.clone(), status));
                        return true;
                    }
                    _ => {}
                }
            }
            false
        });
        match (status, failed) {
            (_, Some((name, log, status))) => {
                print_log_tail(&format!("{name} log"), &log, 20);
                bail!(
                    "the {name} exited ({status}) while the {} was still running",
                    self.name
                )
            }
            (status, None) => status,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.interrupt(Duration::from_secs(3));
        }
    }
}

/// Waits until `path` exists (a process's "ready" file), the process exits,
/// `stop` is set, or `limit` passes; on failure prints the end of the
/// process's log.
pub fn wait_ready(p: &mut Proc, path: &Path, stop: &Stop, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let failed = |why: String, p: &Proc| {
        print_log_tail(&format!("{} log", p.name), &p.log, 30);
        Err(anyhow::anyhow!(why))
    };
    while !path.exists() {
        if stop.is_set() {
            bail!("interrupted");
        }
        if !p.running() {
            return failed(format!("the {} exited before it was ready", p.name), p);
        }
        if Instant::now() >= deadline {
            return failed(format!("the {} was not ready within {limit:?}", p.name), p);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Prints the last `lines` lines of a process's log, leaving out backtraces
/// (with `RUST_BACKTRACE` set they would push the error message itself out
/// of the tail).
pub fn print_log_tail(title: &str, path: &Path, lines: usize) {
    if let Ok(text) = std::fs::read_to_string(path) {
        let mut in_backtrace = false;
        let all: Vec<&str> = text
            .lines()
            .filter(|l| {
                if l.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("stack backtrace:")
                {
                    in_backtrace = true;
                } else if l.trim().is_empty() {
                    in_backtrace = false;
                }
                !in_backtrace
            })
            .collect();
        println!("---- {title} ({}) ----", path.display());
        for l in &all[all.len().saturating_sub(lines)..] {
            println!("{l}");
        }
    }
}

/// Sends SIGINT to process `pid` (a system call: no `kill` program needed).
pub fn interrupt(pid: u32) {
    use nix::sys::signal::{kill, Signal};
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGINT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_with_a_process_in_it_is_refused_naming_the_process_and_how_to_stop_it() {
        assert_eq!(parse_pids("4242\n17\n\n"), vec![4242, 17]);
        assert_eq!(busy_lab_refusal("tokex demo", &[]), None);
        let procs = [LabProcess {
            ns: EXCHANGE_NS.into(),
            pid: 4242,
            cmdline: "tokex exchange --config config/tokex.toml".into(),
        }];
        let why = busy_lab_refusal("tokex demo", &procs).expect("refused");
        assert!(why.starts_with("tokex demo: not started"), "{why}");
        assert!(
            why.contains("pid 4242 in tokex-ex: tokex exchange --config config/tokex.toml"),
            "{why}"
        );
        assert!(why.contains("kill -INT 4242"), "{why}");
        assert!(why.contains("tokex lab down"), "{why}");
    }

    #[test]
    fn the_run_config_moves_the_journal_its_snapshots_and_archive_under_the_run_directory() {
        let shipped = std::fs::read_to_string("config/tokex.toml").unwrap();
        let dir = Path::new("out/bench/transport");
        let text = derive_config(&shipped, "config/tokex.toml", dir).unwrap();
        let derived = Config::parse("derived", &text).unwrap();
        let original = Config::parse("shipped", &shipped).unwrap();
        let journal = &derived.journal.path;
        assert!(journal.starts_with(dir), "{}", journal.display());
        assert_ne!(journal, &original.journal.path);
        // Snapshots (`<journal>.<n>.snap`), the lock and the market-data
        // archive (`<journal stem>.md`) are named after the journal, beside it.
        assert!(journal.with_extension("md").starts_with(dir));
        assert!(journal.parent().unwrap().starts_with(dir));
        assert!(derived.latency.dir.starts_with(dir));
        // Everything else is the operator's config as it is.
        let same = Config {
            journal: original.journal.clone(),
            latency: original.latency.clone(),
            ..derived.clone()
        };
        assert_eq!(same, original);
        assert_eq!(derived.journal.durability, original.journal.durability);
        // A config without the sections gets them.
        let text = derive_config("contracts = \"contracts\"\n", "min.toml", dir).unwrap();
        assert!(Config::parse("min", &text)
            .unwrap()
            .journal
            .path
            .starts_with(dir));
    }

    #[test]
    fn a_command_line_is_checked_with_the_subcommand_s_own_arguments() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok: crate::load::LoadArgs =
            parse_command(&argv(&["load", "--rate", "1000", "--batch", "4"])).unwrap();
        assert_eq!((ok.rate, ok.batch), (1000, 4));
        let err = parse_command::<crate::load::LoadArgs>(&argv(&["load", "--batch", "0"]))
            .expect_err("the load generator refuses --batch 0");
        let text = err.to_string();
        assert!(
            text.contains("`tokex load --batch 0` would be refused"),
            "{text}"
        );
        assert!(text.contains("--batch"), "{text}");
    }

    #[test]
    fn an_echoed_command_line_quotes_what_the_shell_would_split() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shell_line(&argv(&[
                "exchange",
                "--config",
                "out/demo/exchange.toml",
                "--fresh"
            ])),
            "exchange --config out/demo/exchange.toml --fresh"
        );
        assert_eq!(
            shell_line(&argv(&["--out", "my dir", "it's", ""])),
            "--out 'my dir' 'it'\\''s' ''"
        );
    }

    /// A child that is not in a namespace (for the waits).
    fn sh(name: &'static str, script: &str, log: &Path) -> Proc {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Proc::start(name, cmd, log).unwrap()
    }

    #[test]
    fn a_wait_gives_up_as_soon_as_a_process_the_run_depends_on_has_exited() {
        let dir = crate::test_dir::TempDir::new("lab-wait-watching");
        let mut sender = sh("sender", "exec sleep 30", &dir.join("sender.log"));
        let mut feed = sh(
            "feed handler",
            "echo 'Address already in use (os error 98)'; exit 1",
            &dir.join("feed.log"),
        );
        let started = Instant::now();
        let err = sender
            .wait_watching(&mut [&mut feed], &Stop::new(), Duration::from_secs(60))
            .expect_err("the feed handler failed");
        // Not the 60 s limit, nor the sender's 30 s (no timing assertion
        // beyond that: the machine is shared).
        assert!(started.elapsed() < Duration::from_secs(25));
        let text = err.to_string();
        assert!(
            text.contains("the feed handler exited") && text.contains("while the sender"),
            "{text}"
        );
        drop(sender);
        // Without a failing dependency the main process's own end counts,
        // also when a dependency has ended well before it.
        let mut sender = sh("sender", "sleep 0.5; exit 0", &dir.join("sender2.log"));
        let mut feed = sh("feed handler", "exit 0", &dir.join("feed2.log"));
        let mut exchange = sh("exchange", "exec sleep 30", &dir.join("exchange.log"));
        let status = sender
            .wait_watching(
                &mut [&mut feed, &mut exchange],
                &Stop::new(),
                Duration::from_secs(20),
            )
            .unwrap();
        assert!(status.success());
    }
}
