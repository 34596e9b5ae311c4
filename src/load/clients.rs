//! How the load generator's sessions reach the exchange: a kernel UDP
//! socket per session watched by one epoll set, or one AF_XDP socket for
//! all of them ([`XdpClients`]).

use anyhow::Context;

use super::{ClientTransport, LoadArgs};
use crate::client::{ClientEvent, ClientSession, UdpClient, XdpClients};
use crate::config::XdpConfig;
use crate::text::plural;

/// The generator's sessions and how their datagrams travel.
pub(super) enum Clients {
    /// A kernel UDP socket per session, watched by one epoll set.
    Kernel(Vec<UdpClient>, Readiness),
    /// One AF_XDP socket for every session.
    Xdp(Box<XdpClients>),
}

impl Clients {
    pub(super) fn open(args: &LoadArgs, sessions: Vec<ClientSession>) -> anyhow::Result<Clients> {
        Ok(match args.transport {
            ClientTransport::Udp => {
                let clients = sessions
                    .into_iter()
                    .map(|s| UdpClient::new(s, args.target))
                    .collect::<Result<Vec<_>, _>>()
                    .context("opening a client socket")?;
                let ready = Readiness::new(&clients)?;
                Clients::Kernel(clients, ready)
            }
            ClientTransport::Xdp => {
                // The exchange's default rings and UMEM; copy mode at once
                // (veth, the lab's link, has no zero-copy).
                let cfg = XdpConfig {
                    zero_copy: false,
                    ..XdpConfig::default()
                };
                let x = XdpClients::open(&args.interface, args.target, sessions, &cfg)
                    .with_context(|| format!("opening AF_XDP on {}", args.interface))?;
                Clients::Xdp(Box::new(x))
            }
        })
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Clients::Kernel(c, _) => plural(c.len(), "kernel UDP socket", "kernel UDP sockets"),
            Clients::Xdp(x) => format!(
                "{} over {}",
                plural(x.len(), "session", "sessions"),
                x.describe()
            ),
        }
    }

    pub(super) fn session(&mut self, s: usize) -> &mut ClientSession {
        match self {
            Clients::Kernel(c, _) => &mut c[s].session,
            Clients::Xdp(x) => x.session(s),
        }
    }

    pub(super) fn sessions(&self) -> Box<dyn Iterator<Item = &ClientSession> + '_> {
        match self {
            Clients::Kernel(c, _) => Box::new(c.iter().map(|c| &c.session)),
            Clients::Xdp(x) => Box::new(x.sessions().iter()),
        }
    }

    /// Sends what session `s` has queued.
    pub(super) fn flush(&mut self, s: usize) -> anyhow::Result<()> {
        match self {
            Clients::Kernel(c, _) => c[s].flush()?,
            Clients::Xdp(x) => x.flush(s),
        }
        Ok(())
    }

    /// Hands every answer waiting to `f(session, event)`.
    pub(super) fn poll(
        &mut self,
        t: u64,
        f: &mut impl FnMut(usize, ClientEvent),
    ) -> anyhow::Result<()> {
        match self {
            Clients::Kernel(clients, readiness) => {
                // One epoll_wait finds the sockets with answers waiting: a
                // receive on each of the sessions' sockets costs a system
                // call per socket per turn even when nothing has come.
                let ready = readiness.ready()?;
                for (s, c) in clients.iter_mut().enumerate() {
                    if ready & (1 << s) != 0 {
                        c.poll(t, &mut |e| f(s, e))?;
                    }
                }
            }
            Clients::Xdp(x) => {
                x.poll(t, f);
            }
        }
        Ok(())
    }

    /// Receive, due timers, send: the login phase's turn.
    pub(super) fn drive(
        &mut self,
        t: u64,
        f: &mut impl FnMut(usize, ClientEvent),
    ) -> anyhow::Result<()> {
        match self {
            Clients::Kernel(clients, _) => {
                for (s, c) in clients.iter_mut().enumerate() {
                    c.drive(t, &mut |e| f(s, e))?;
                }
            }
            Clients::Xdp(x) => {
                x.drive(t, f);
            }
        }
        Ok(())
    }

    pub(super) fn xdp_stats(&self) -> Option<String> {
        match self {
            Clients::Kernel(..) => None,
            Clients::Xdp(x) => Some(x.stats()),
        }
    }
}

/// The sessions' sockets in one epoll set: which have datagrams waiting
/// is one `epoll_wait` that reads the ready list. (`poll(2)` built a list
/// of every socket each turn and visited each in the kernel: a tenth of
/// the generator's time at 700,000 orders/s.)
pub(super) struct Readiness(nix::sys::epoll::Epoll);

impl Readiness {
    fn new(clients: &[UdpClient]) -> anyhow::Result<Readiness> {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
        for (s, c) in clients.iter().enumerate() {
            epoll
                .add(c.socket(), EpollEvent::new(EpollFlags::EPOLLIN, s as u64))
                .context("adding a client socket to the epoll set")?;
        }
        Ok(Readiness(epoll))
    }

    /// Which sessions' sockets have datagrams waiting, as a bit mask (at
    /// most 8 sessions); does not wait.
    fn ready(&self) -> anyhow::Result<u32> {
        use nix::sys::epoll::{EpollEvent, EpollTimeout};
        let mut events = [EpollEvent::empty(); 8];
        let n = match self.0.wait(&mut events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0, // next turn
            Err(e) => return Err(e).context("epoll_wait on the client sockets"),
        };
        Ok(events[..n].iter().fold(0, |m, e| m | 1 << e.data()))
    }
}
