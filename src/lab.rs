//! The lab network and tokex processes inside it, for the commands that
//! orchestrate runs (`tokex demo`, `tokex bench transport`): `tools/lab.sh`,
//! a guard that tears the lab down, child processes started with
//! `ip netns exec` that are interrupted (then killed) when dropped, and
//! readiness files. No trading or network logic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::runtime::Stop;

/// Namespaces of the lab (DESIGN.md defaults).
pub const EXCHANGE_NS: &str = "tokex-ex";
pub const CLIENT_NS: &str = "tokex-cl";

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

/// Tears the lab down when dropped, unless told to keep it.
pub struct LabGuard {
    pub keep: bool,
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = lab("down") {
                eprintln!("tokex demo: lab teardown: {e:#}");
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
        let logf =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(args)
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
        stopped: impl Fn() -> bool,
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
