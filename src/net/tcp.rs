//! The SoupBinTCP compatibility port: plain TCP through the kernel, for
//! clients and tools that only speak TCP.
//!
//! Owns the listener and the connections on a thread of its own, which
//! blocks in poll(2) when idle (it never takes a core away from the engine
//! or spins on accept). Whole SoupBinTCP packets go to the engine thread
//! through a bounded ring, tagged with the connection number; replies come
//! back through another ring ([`TcpReplies`]), whose producer wakes the
//! thread through a socket pair after a batch of replies. A connection that
//! closes, for whatever reason, is reported as a Logout Request so its
//! session is released at once (the last packet the engine has from a
//! connection is always a Logout Request); a client's own Logout Request
//! (exactly that packet, with no payload) is the last packet handed over
//! from its connection, which the engine then closes (SoupBinTCP 3.0).
//! Nothing read from a connection after its Logout Request or the engine's
//! close is handed over: it is read and dropped, so that the close does not
//! reset the connection (which would drop the replies still in the kernel).
//!
//! Neither thread ever waits for the other in both directions at once: the
//! engine never waits for room in the reply ring (replies it has no room
//! for wait in order on the engine's side, see [`TcpReplies`]), so the TCP
//! thread's wait for room in the inbound ring always ends. One connection
//! cannot hold the thread: it reads at most [`READ_BUDGET`] bytes from each
//! connection per turn. Connections are bounded in number (in all and per
//! host), in unsent bytes (each, and all together) and in time: one that
//! sends nothing for the idle limit (a client stalled in the middle of a
//! packet), or on which no login was accepted within the idle limit of its
//! accept (whatever else it sends, heartbeats and refused logins
//! included), is closed, and
//! the engine closes one whose session it timed out.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::runtime::{Handoff, Stop};
use crate::wire::soupbin::{self, Reassembler};

/// A packet to a TCP connection (by its number); an empty packet closes
/// the connection once what it holds is written (see [`TcpReplies::close`]).
pub type TcpPacket = (u32, Vec<u8>);

/// A packet from a TCP connection: its number, the client's host (for the
/// login back-off, which counts failures per host) and the packet.
pub type TcpInbound = (u32, Ipv4Addr, Vec<u8>);

/// Largest packet accepted from a client (the longest OUCH message is 49 bytes).
const MAX_PACKET: usize = 1024;

/// Most bytes read from one connection in one turn of the thread.
const READ_BUDGET: usize = 64 << 10;

/// A Logout Request: the only packet that ends a client's side of its
/// connection (one with a payload is not a Logout Request; the engine
/// counts it malformed).
const LOGOUT: [u8; 3] = [0, 1, soupbin::kind::LOGOUT_REQUEST];

struct Conn {
    stream: TcpStream,
    host: Ipv4Addr,
    rx: Reassembler,
    tx: Vec<u8>,
    /// When the connection last sent a byte handed to the engine (or was
    /// accepted).
    last_rx: Instant,
    /// When it was accepted: it is closed if no login was accepted on it
    /// within the idle limit of this.
    accepted: Instant,
    /// The engine accepted a login on it (queued it a Login Accepted).
    logged_in: bool,
    /// The engine asked for it to be closed once `tx` is written: what the
    /// client sends after is read and dropped.
    closing: bool,
    /// The client sent a Logout Request: what it sends after is read and
    /// dropped (the engine answers it by closing the connection, see
    /// [`TcpReplies::close`]), and no second Logout is handed for it.
    logged_out: bool,
    /// The client ended its side (EOF) after its Logout Request or the
    /// engine's close: it is no longer polled for input, and still gets
    /// its replies until the engine's close.
    ended: bool,
}

impl Conn {
    /// Whether what the client sends now is dropped rather than handed to
    /// the engine.
    fn finished(&self) -> bool {
        self.closing || self.logged_out
    }
}

impl Conn {
    /// Writes what the connection holds until the socket takes no more:
    /// whether all of it went; an error when the connection is broken (a
    /// write that takes nothing included).
    fn write_pending(&mut self) -> std::io::Result<bool> {
        while !self.tx.is_empty() {
            match self.stream.write(&self.tx) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.tx.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// The engine's side of the reply ring: replies are pushed, then one
/// [`TcpReplies::wake`] per batch rouses the TCP thread.
///
/// The engine never waits here: when the ring is full (the TCP thread is
/// busy, or itself waiting for the engine to take client packets) a reply
/// waits in `overflow`, and every later one behind it, so that a
/// connection's replies stay in order; each `wake` (every batch, and the
/// engine's millisecond timer) moves what fits into the ring. The overflow
/// holds at most the replies to what the TCP thread handed over before it
/// drains the ring again: replies answer client packets, and the thread
/// drains the ring every turn.
pub struct TcpReplies {
    ring: Arc<Handoff<TcpPacket>>,
    waker: UnixStream,
    pushed: bool,
    overflow: VecDeque<TcpPacket>,
}

impl TcpReplies {
    /// Queues a reply (never dropped, never waited for).
    pub fn push(&mut self, item: TcpPacket) {
        self.pushed = true;
        let item = if self.overflow.is_empty() {
            match self.ring.push(item) {
                Ok(()) => return,
                Err(back) => back,
            }
        } else {
            item
        };
        self.overflow.push_back(item);
    }

    /// Closes connection `id` once the replies queued for it are written
    /// (the engine timed its session out, or answers its Logout Request).
    /// Nothing the client sends after the TCP thread takes the close is
    /// handed over, and a Logout Request follows what was (unless the
    /// client's own Logout Request was the last).
    pub fn close(&mut self, id: u32) {
        self.push((id, Vec::new()));
    }

    /// Replies waiting for room in the ring.
    pub fn overflowing(&self) -> usize {
        self.overflow.len()
    }

    /// At shutdown, before the TCP thread is stopped: hands it every reply
    /// still waiting, for at most `limit` (the thread drains the ring as
    /// it is woken).
    pub fn hand_over_all(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        self.wake();
        while !self.overflow.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            self.wake();
        }
    }

    /// Wakes the TCP thread whether or not anything was pushed (to see a
    /// stop flag at once rather than at its next poll timeout).
    pub fn wake_now(&mut self) {
        self.pushed = true;
        self.wake();
    }

    /// Moves what fits of the overflow into the ring, and wakes the TCP
    /// thread if anything was pushed since the last wake: one non-blocking
    /// byte (a full socket means a wake is already pending). While replies
    /// still wait, the next call wakes it again.
    pub fn wake(&mut self) {
        while let Some(item) = self.overflow.pop_front() {
            if let Err(back) = self.ring.push(item) {
                self.overflow.push_front(back);
                break;
            }
        }
        if std::mem::take(&mut self.pushed) {
            let _ = (&self.waker).write(&[1]);
        }
        self.pushed = !self.overflow.is_empty();
    }
}

/// How long the TCP thread sleeps in poll(2) before it checks `stop`.
const POLL_MS: u16 = 50;

/// What the TCP port holds at most, so that clients cannot exhaust the
/// exchange's memory or its connections: connections beyond `connections`,
/// or beyond `per_host` from one host, are closed as they are accepted; a
/// connection whose unsent replies (a client that does not read) pass
/// `pending_bytes` is closed, its session logged out (it logs in again and
/// re-requests by sequence number); so is one that sends nothing for
/// `idle` (a logged-in client heartbeats every second). While all the
/// connections' unsent replies together pass `total_pending_bytes`, the one
/// holding the most is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    pub connections: usize,
    pub per_host: usize,
    pub pending_bytes: usize,
    pub total_pending_bytes: usize,
    pub idle: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            connections: 256,
            per_host: 32,
            pending_bytes: 4 << 20,
            total_pending_bytes: 256 << 20,
            idle: Duration::from_secs(15),
        }
    }
}

/// Starts the TCP thread with the default [`TcpLimits`], on any core.
/// `inbound` carries client packets to the engine; the returned
/// [`TcpReplies`] carries replies back.
pub fn spawn(
    listener: TcpListener,
    stop: Stop,
    inbound: Arc<Handoff<TcpInbound>>,
    capacity: usize,
) -> std::io::Result<(JoinHandle<()>, TcpReplies)> {
    spawn_with(
        listener,
        stop,
        inbound,
        capacity,
        TcpLimits::default(),
        None,
    )
}

/// As [`spawn`], with `limits`, and kept off core `avoid_core` (the
/// engine's: the thread wakes every `POLL_MS` and would take the
/// busy-spinning engine thread's core from it each time it woke there).
pub fn spawn_with(
    listener: TcpListener,
    stop: Stop,
    inbound: Arc<Handoff<TcpInbound>>,
    capacity: usize,
    limits: TcpLimits,
    avoid_core: Option<usize>,
) -> std::io::Result<(JoinHandle<()>, TcpReplies)> {
    listener.set_nonblocking(true)?;
    let outbound: Arc<Handoff<TcpPacket>> = Handoff::with_capacity(capacity);
    let (waker, wakee) = UnixStream::pair()?;
    waker.set_nonblocking(true)?;
    wakee.set_nonblocking(true)?;
    let replies = TcpReplies {
        ring: outbound.clone(),
        waker,
        pushed: false,
        overflow: VecDeque::new(),
    };
    let thread = TcpThread {
        listener,
        wakee,
        conns: HashMap::new(),
        next_id: 1,
        inbound,
        outbound,
        stop,
        limits,
        closed: Vec::new(),
        pollfds: Vec::new(),
    };
    std::thread::Builder::new()
        .name("tokex-tcp".into())
        .spawn(move || {
            if let Some(core) = avoid_core {
                // Best effort: on a one-core machine it shares the core.
                let _ = crate::runtime::keep_current_thread_off(core);
            }
            thread.run()
        })
        .map(|handle| (handle, replies))
}

/// The TCP thread: the listener, the connections by id, and the rings to
/// and from the engine.
struct TcpThread {
    listener: TcpListener,
    /// Readable when the engine has pushed replies (see [`TcpReplies`]).
    wakee: UnixStream,
    conns: HashMap<u32, Conn>,
    next_id: u32,
    inbound: Arc<Handoff<TcpInbound>>,
    outbound: Arc<Handoff<TcpPacket>>,
    stop: Stop,
    limits: TcpLimits,
    /// Connections to close at the end of this turn.
    closed: Vec<u32>,
    /// The poll set's allocation, kept from turn to turn (empty between
    /// turns, see [`reuse`]).
    pollfds: Vec<PollFd<'static>>,
}

/// An empty vector with `v`'s allocation, for borrows of another lifetime
/// (the standard library collects a `vec::IntoIter` mapped to a type of
/// the same size in place; the closure never runs).
fn reuse<'b>(mut v: Vec<PollFd<'_>>) -> Vec<PollFd<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!()).collect()
}

impl TcpThread {
    fn run(mut self) {
        while !self.stop.is_set() {
            self.wait();
            self.accept();
            self.read();
            self.take_replies();
            self.write();
            self.bound_total();
            self.expire();
            self.close();
        }
        write_out(&mut self.conns, &self.outbound, FINAL_WRITE);
    }

    /// Sleeps until a connection, data, a wake from the engine, or the
    /// timeout (for `stop`). Pending output means polling for writability
    /// too; a connection whose client ended its side is polled only for
    /// that, and not at all when it has nothing to write (poll(2) reports a
    /// hang-up whatever it is asked, and nothing would clear it: the
    /// engine's close, which comes through the wake, ends it).
    fn wait(&mut self) {
        let mut fds = reuse(std::mem::take(&mut self.pollfds));
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(self.wakee.as_fd(), PollFlags::POLLIN));
        for c in self.conns.values() {
            let mut flags = PollFlags::empty();
            if !c.ended {
                flags |= PollFlags::POLLIN;
            }
            if !c.tx.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            if !flags.is_empty() {
                fds.push(PollFd::new(c.stream.as_fd(), flags));
            }
        }
        let _ = poll(&mut fds, PollTimeout::from(POLL_MS));
        self.pollfds = reuse(fds);
        let mut drain = [0u8; 64];
        while matches!((&self.wakee).read(&mut drain), Ok(n) if n > 0) {}
    }

    /// Takes the new connections, up to the limits (past one a connection
    /// is closed at once: the client sees EOF).
    fn accept(&mut self) {
        while let Ok((stream, from)) = self.listener.accept() {
            let host = match from.ip() {
                IpAddr::V4(h) => h,
                IpAddr::V6(h) => h.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
            };
            if self.conns.len() >= self.limits.connections
                || self.conns.values().filter(|c| c.host == host).count() >= self.limits.per_host
            {
                continue;
            }
            let _ = stream.set_nonblocking(true);
            let _ = stream.set_nodelay(true);
            self.conns.insert(
                self.next_id,
                Conn {
                    stream,
                    host,
                    rx: Reassembler::new(1 << 16, MAX_PACKET),
                    tx: Vec::new(),
                    last_rx: Instant::now(),
                    accepted: Instant::now(),
                    logged_in: false,
                    closing: false,
                    logged_out: false,
                    ended: false,
                },
            );
            self.next_id = self.next_id.wrapping_add(1).max(1);
        }
    }

    /// Reads every connection, up to [`READ_BUDGET`] bytes each, and hands
    /// its whole packets to the engine; a connection that ended, failed or
    /// sent an impossible length (the stream cannot be resynchronised) is
    /// to be closed. After a client's Logout Request or the engine's close,
    /// what it sends is read (a close with unread input would reset the
    /// connection, dropping the replies still in the kernel's buffer) and
    /// dropped, and its end only stops the reading: the connection is
    /// closed once its replies are written.
    fn read(&mut self) {
        let mut buf = [0u8; 4096];
        let now = Instant::now();
        for (&id, c) in self.conns.iter_mut() {
            let mut budget = READ_BUDGET;
            while budget > 0 && !c.ended {
                let n = match c.stream.read(&mut buf[..budget.min(4096)]) {
                    Ok(0) if c.finished() => {
                        c.ended = true;
                        break;
                    }
                    Ok(0) => {
                        self.closed.push(id);
                        break;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.closed.push(id);
                        break;
                    }
                };
                budget -= n;
                if c.finished() {
                    continue;
                }
                c.last_rx = now;
                if c.rx.extend(&buf[..n]).is_err() {
                    self.closed.push(id);
                    break;
                }
                while !c.logged_out {
                    match c.rx.next_packet() {
                        Ok(Some(p)) => {
                            c.logged_out = p == LOGOUT;
                            hand_over(&self.inbound, &self.stop, (id, c.host, p.to_vec()))
                        }
                        Ok(None) => break,
                        Err(_) => {
                            self.closed.push(id);
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Queues the engine's replies on their connections; one whose unsent
    /// replies pass the limit (a client that does not read) is to be
    /// closed.
    fn take_replies(&mut self) {
        while let Some((id, bytes)) = self.outbound.pop() {
            if let Some(c) = self.conns.get_mut(&id) {
                c.closing |= bytes.is_empty();
                // Each reply is one packet.
                c.logged_in |=
                    bytes.get(soupbin::field::TYPE) == Some(&soupbin::kind::LOGIN_ACCEPTED);
                c.tx.extend_from_slice(&bytes);
                if c.tx.len() > self.limits.pending_bytes {
                    self.closed.push(id);
                }
            }
        }
    }

    /// While the connections' unsent replies together pass the limit,
    /// marks the one holding the most (after this turn's writes).
    fn bound_total(&mut self) {
        let mut total: usize = self.conns.values().map(|c| c.tx.len()).sum();
        let mut by_size: Vec<(usize, u32)> = Vec::new();
        if total > self.limits.total_pending_bytes {
            by_size = self.conns.iter().map(|(&id, c)| (c.tx.len(), id)).collect();
            by_size.sort_unstable();
        }
        while total > self.limits.total_pending_bytes {
            let Some((bytes, id)) = by_size.pop() else {
                break;
            };
            self.closed.push(id);
            total -= bytes;
        }
    }

    /// Writes what each connection can take now; one the engine asked to
    /// close is closed once written.
    fn write(&mut self) {
        for (&id, c) in self.conns.iter_mut() {
            match c.write_pending() {
                Ok(all) if all && c.closing => self.closed.push(id),
                Ok(_) => {}
                Err(_) => self.closed.push(id),
            }
        }
    }

    /// Marks the connections silent for longer than the idle limit, and
    /// those on which no login was accepted within the idle limit of their
    /// accept (heartbeats alone, or after a refused login, do not keep a
    /// connection that never logs in).
    fn expire(&mut self) {
        let now = Instant::now();
        let idle = self.limits.idle;
        for (&id, c) in &self.conns {
            if now.duration_since(c.last_rx) > idle
                || (!c.logged_in && now.duration_since(c.accepted) > idle)
            {
                self.closed.push(id);
            }
        }
    }

    /// Closes the connections marked this turn; each one's session gets a
    /// Logout Request from the engine's point of view, unless the client's
    /// own was the last packet handed over. That holds for one the engine
    /// asked to close too: a Login Request read before the thread took the
    /// close may have bound a session to it after the engine ended the old
    /// one, and this Logout releases it (for a connection with no session
    /// the engine only answers with a close, of a connection gone).
    fn close(&mut self) {
        for id in self.closed.drain(..) {
            if let Some(c) = self.conns.remove(&id).filter(|c| !c.logged_out) {
                hand_over(&self.inbound, &self.stop, (id, c.host, LOGOUT.to_vec()));
            }
        }
    }
}

/// Hands a client packet to the engine. The engine drains this ring every
/// loop: wait for room rather than drop a client's packet, unless the port
/// is stopping (the engine no longer reads it: the packet came too late).
fn hand_over(inbound: &Handoff<TcpInbound>, stop: &Stop, item: TcpInbound) {
    let mut item = item;
    while let Err(back) = inbound.push(item) {
        if stop.is_set() {
            return;
        }
        item = back;
        std::thread::yield_now();
    }
}

/// How long a stopping TCP thread waits for slow readers.
const FINAL_WRITE: Duration = Duration::from_millis(200);

/// Writes out, blocking for at most `limit` in all, what the connections
/// hold and what the engine handed over last (End of Session at shutdown),
/// before they are closed.
fn write_out(conns: &mut HashMap<u32, Conn>, outbound: &Handoff<TcpPacket>, limit: Duration) {
    while let Some((id, bytes)) = outbound.pop() {
        if let Some(c) = conns.get_mut(&id) {
            c.tx.extend_from_slice(&bytes);
        }
    }
    // Non-blocking writes until everything is out or the time is up (a
    // blocking write_all with a timeout would wait a timeout per write for
    // a client that reads a little at a time).
    let deadline = Instant::now() + limit;
    loop {
        let mut waiting = false;
        for c in conns.values_mut() {
            match c.write_pending() {
                Ok(all) => waiting |= !all,
                // Closed, or an error: nothing more can go to it.
                Err(_) => c.tx.clear(),
            }
        }
        if !waiting || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A TCP thread on a loopback port with `limits`, and its address.
    fn port(
        limits: TcpLimits,
    ) -> (
        Stop,
        JoinHandle<()>,
        TcpReplies,
        Arc<Handoff<TcpInbound>>,
        std::net::SocketAddr,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Stop::new();
        let inbound: Arc<Handoff<TcpInbound>> = Handoff::with_capacity(64);
        let (thread, replies) =
            spawn_with(listener, stop.clone(), inbound.clone(), 1024, limits, None).unwrap();
        (stop, thread, replies, inbound, addr)
    }

    /// The next packet the thread hands to the engine, waiting up to 5 s.
    fn next_inbound(inbound: &Handoff<TcpInbound>) -> Option<TcpInbound> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(p) = inbound.pop() {
                return Some(p);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    const HEARTBEAT: [u8; 3] = [0, 1, soupbin::kind::CLIENT_HEARTBEAT];

    /// One Login Request packet (asking for the next sequence number).
    fn login_request(user: &[u8], password: &[u8]) -> Vec<u8> {
        let mut b = [0u8; 64];
        let n = soupbin::write_login_request(&mut b, user, password, b"", 0).unwrap();
        b[..n].to_vec()
    }

    /// A thread that sends a Client Heartbeat on `c` every 100 ms while
    /// `going()` says so and the connection takes them.
    fn heartbeats(c: &TcpStream, going: impl Fn() -> bool + Send + 'static) -> JoinHandle<()> {
        let mut c = c.try_clone().unwrap();
        std::thread::spawn(move || {
            while going() && c.write_all(&HEARTBEAT).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }

    /// The Logout Request the thread hands over for a closed connection.
    fn logout_of(id: u32) -> TcpInbound {
        (
            id,
            Ipv4Addr::LOCALHOST,
            vec![0, 1, soupbin::kind::LOGOUT_REQUEST],
        )
    }

    /// Stops the thread (woken at once) and waits for it.
    fn shut_down(stop: Stop, mut replies: TcpReplies, thread: JoinHandle<()>) {
        stop.set();
        replies.wake_now();
        thread.join().unwrap();
    }

    #[test]
    fn a_stopping_tcp_thread_is_not_stuck_behind_a_full_inbound_ring() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Stop::new();
        let inbound: Arc<Handoff<TcpInbound>> = Handoff::with_capacity(4);
        let (thread, mut replies) = spawn(listener, stop.clone(), inbound, 64).unwrap();
        let mut c = TcpStream::connect(addr).unwrap();
        for _ in 0..64 {
            c.write_all(&HEARTBEAT).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.set();
        replies.wake_now();
        assert!(joined_within(thread, Duration::from_secs(3)));
    }

    #[test]
    fn the_final_write_out_gives_a_slow_reader_a_bounded_time() {
        let (stop, thread, mut replies, inbound, addr) = port(TcpLimits {
            pending_bytes: 1 << 30,
            ..TcpLimits::default()
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(&HEARTBEAT).unwrap();
        assert!(next_inbound(&inbound).is_some());
        queue_32_mb(&mut replies, 1);
        replies.wake();
        std::thread::sleep(Duration::from_millis(300));
        // Reads 256 KB every 50 ms: 32 MB would take 6 s.
        let reader = std::thread::spawn(move || {
            let mut b = vec![0u8; 256 << 10];
            while matches!(client.read(&mut b), Ok(n) if n > 0) {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        stop.set();
        replies.wake_now();
        assert!(joined_within(
            thread,
            FINAL_WRITE + Duration::from_millis(800)
        ));
        reader.join().unwrap();
    }

    /// Queues 32 MB of replies for connection `id` (not woken), more than
    /// the kernel's buffers hold; returns the bytes queued.
    fn queue_32_mb(replies: &mut TcpReplies, id: u32) -> usize {
        let chunk = vec![7u8; 64 << 10];
        for _ in 0..512 {
            replies.push((id, chunk.clone()));
        }
        512 * chunk.len()
    }

    /// Whether `thread` ends within `limit`.
    fn joined_within(thread: JoinHandle<()>, limit: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = thread.join();
            let _ = tx.send(());
        });
        rx.recv_timeout(limit).is_ok()
    }

    #[test]
    fn connections_beyond_the_limit_are_closed_as_they_are_accepted() {
        let (stop, thread, _replies, inbound, addr) = port(TcpLimits {
            connections: 1,
            ..TcpLimits::default()
        });
        let mut first = TcpStream::connect(addr).unwrap();
        first.write_all(&HEARTBEAT).unwrap();
        assert_eq!(
            next_inbound(&inbound),
            Some((1, Ipv4Addr::LOCALHOST, HEARTBEAT.to_vec()))
        );
        let mut second = TcpStream::connect(addr).unwrap();
        second
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 8];
        match second.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("not closed: {other:?}"),
        }
        // The first is still served.
        first.write_all(&HEARTBEAT).unwrap();
        assert_eq!(
            next_inbound(&inbound),
            Some((1, Ipv4Addr::LOCALHOST, HEARTBEAT.to_vec()))
        );
        stop.set();
        thread.join().unwrap();
    }

    /// Whether the server closed `c` within `limit` (EOF or reset).
    fn closed_within(c: &mut TcpStream, limit: Duration) -> bool {
        c.set_read_timeout(Some(limit)).unwrap();
        let mut b = [0u8; 64];
        loop {
            match c.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return e.kind() == ErrorKind::ConnectionReset,
            }
        }
    }

    #[test]
    fn a_burst_larger_than_both_rings_is_answered_in_full_and_wedges_neither_thread() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        // The exchange's ring sizes, and a stand-in for its engine loop:
        // up to 64 packets a batch, one reply each, a wake per batch and
        // per timer tick.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Stop::new();
        let inbound: Arc<Handoff<TcpInbound>> = Handoff::with_capacity(1 << 14);
        let (thread, mut replies) =
            spawn(listener, stop.clone(), inbound.clone(), 1 << 14).unwrap();
        const N: usize = 4 << 14;
        let handled = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let engine = {
            let (inbound, handled, done) = (inbound.clone(), handled.clone(), done.clone());
            std::thread::spawn(move || {
                let rejected = vec![0u8, 2, soupbin::kind::LOGIN_REJECTED, b'A'];
                while !done.load(Ordering::Relaxed) {
                    let mut n = 0;
                    while n < 64 {
                        let Some((id, _, _)) = inbound.pop() else {
                            break;
                        };
                        replies.push((id, rejected.clone()));
                        n += 1;
                    }
                    replies.wake();
                    handled.fetch_add(n, Ordering::Relaxed);
                    if n == 0 {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
                replies
            })
        };
        let client = TcpStream::connect(addr).unwrap();
        let mut rd = client.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut b, mut got) = (vec![0u8; 1 << 16], 0usize);
            while got < 4 * N {
                match rd.read(&mut b) {
                    Ok(n) if n > 0 => got += n,
                    _ => break,
                }
            }
            got
        });
        let burst = login_request(b"nobody", b"wrong").repeat(N);
        let mut wr = client.try_clone().unwrap();
        std::thread::spawn(move || wr.write_all(&burst));
        let deadline = Instant::now() + Duration::from_secs(20);
        while handled.load(Ordering::Relaxed) < N && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let got = handled.load(Ordering::Relaxed);
        assert_eq!(got, N, "the engine took {got} of {N} packets, then stopped");
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        assert_eq!(
            reader.join().unwrap(),
            4 * N,
            "every reply reached the client"
        );
        done.store(true, Ordering::Relaxed);
        let mut replies = engine.join().unwrap();
        stop.set();
        replies.wake_now();
        assert!(joined_within(thread, Duration::from_secs(3)));
    }

    #[test]
    fn a_connection_silent_for_the_idle_limit_is_closed_and_its_session_logged_out() {
        let (stop, thread, replies, inbound, addr) = port(TcpLimits {
            idle: Duration::from_millis(300),
            ..TcpLimits::default()
        });
        // Half a packet header, then nothing.
        let mut stalled = TcpStream::connect(addr).unwrap();
        stalled.write_all(&[0]).unwrap();
        let t0 = Instant::now();
        assert!(closed_within(&mut stalled, Duration::from_secs(5)));
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(next_inbound(&inbound), Some(logout_of(1)));
        shut_down(stop, replies, thread);
    }

    #[test]
    fn connections_beyond_the_per_host_limit_are_closed_as_they_are_accepted() {
        let (stop, thread, replies, inbound, addr) = port(TcpLimits {
            per_host: 2,
            ..TcpLimits::default()
        });
        let mut kept: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for c in &mut kept {
            c.write_all(&HEARTBEAT).unwrap();
        }
        assert!(next_inbound(&inbound).is_some() && next_inbound(&inbound).is_some());
        let mut third = TcpStream::connect(addr).unwrap();
        assert!(closed_within(&mut third, Duration::from_secs(5)));
        shut_down(stop, replies, thread);
    }

    #[test]
    fn past_the_total_unsent_limit_the_connection_holding_the_most_is_closed() {
        let (stop, thread, mut replies, inbound, addr) = port(TcpLimits {
            total_pending_bytes: 20 << 20,
            pending_bytes: 64 << 20,
            ..TcpLimits::default()
        });
        // Two clients that never read: 4 MB for the first, 40 MB for the
        // second, of which the kernel's buffers take a few MB at most.
        let mut clients: Vec<TcpStream> =
            (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for c in &mut clients {
            c.write_all(&HEARTBEAT).unwrap();
            assert!(next_inbound(&inbound).is_some());
        }
        let chunk = vec![7u8; 64 << 10];
        for i in 0..640 {
            if i < 64 {
                replies.push((1, chunk.clone()));
            }
            replies.push((2, chunk.clone()));
        }
        replies.wake();
        assert_eq!(next_inbound(&inbound), Some(logout_of(2)));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(inbound.pop(), None, "the first is kept");
        shut_down(stop, replies, thread);
    }

    #[test]
    fn the_engine_closes_a_connection_after_the_replies_queued_before_the_close() {
        let (stop, thread, mut replies, inbound, addr) = port(TcpLimits::default());
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(&HEARTBEAT).unwrap();
        assert!(next_inbound(&inbound).is_some());
        replies.push((1, b"last words".to_vec()));
        replies.close(1);
        replies.wake();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
        // The engine ended the session itself, but a Login Request read
        // before the close may have bound one to the connection since: a
        // Logout comes back (and only one).
        assert_eq!(next_inbound(&inbound), Some(logout_of(1)));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(inbound.pop(), None);
        shut_down(stop, replies, thread);
    }

    #[test]
    fn nothing_after_a_logout_request_is_read_and_the_engines_close_ends_the_connection() {
        let (stop, thread, mut replies, inbound, addr) = port(TcpLimits::default());
        let mut client = TcpStream::connect(addr).unwrap();
        let logout = [0u8, 1, soupbin::kind::LOGOUT_REQUEST];
        client
            .write_all(&[&HEARTBEAT[..], &logout, &HEARTBEAT].concat())
            .unwrap();
        assert_eq!(
            next_inbound(&inbound),
            Some((1, Ipv4Addr::LOCALHOST, HEARTBEAT.to_vec()))
        );
        assert_eq!(next_inbound(&inbound), Some(logout_of(1)));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(inbound.pop(), None, "a packet after the logout was read");
        // The engine's answer to the logout.
        replies.close(1);
        replies.wake();
        assert!(closed_within(&mut client, Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            inbound.pop(),
            None,
            "the engine closed it: no second logout"
        );
        shut_down(stop, replies, thread);
    }

    #[test]
    fn a_client_that_does_not_read_is_disconnected_and_its_session_logged_out() {
        let (stop, thread, mut replies, inbound, addr) = port(TcpLimits {
            pending_bytes: 64 << 10,
            ..TcpLimits::default()
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(&HEARTBEAT).unwrap();
        assert_eq!(
            next_inbound(&inbound),
            Some((1, Ipv4Addr::LOCALHOST, HEARTBEAT.to_vec()))
        );
        // 64 MB of replies it never reads: past the kernel's buffers, the
        // thread's backlog for it passes the limit.
        let reply = vec![7u8; 1 << 10];
        let mut logged_out = None;
        for _ in 0..(64 << 10) {
            replies.push((1, reply.clone()));
            replies.wake();
            if let Some(p) = inbound.pop() {
                logged_out = Some(p);
                break;
            }
        }
        let logged_out = logged_out.or_else(|| next_inbound(&inbound));
        assert_eq!(logged_out, Some(logout_of(1)));
        shut_down(stop, replies, thread);
    }

    #[test]
    fn a_connection_that_only_heartbeats_and_never_logs_in_is_closed_after_the_login_deadline() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (stop, thread, mut replies, inbound, addr) = port(TcpLimits {
            idle: Duration::from_secs(1),
            ..TcpLimits::default()
        });
        // Connection 1 only heartbeats; connection 2 sends a Login Request
        // the engine accepts, then heartbeats too. Neither is ever silent
        // for the limit.
        let mut anonymous = TcpStream::connect(addr).unwrap();
        anonymous.write_all(&HEARTBEAT).unwrap();
        assert_eq!(next_inbound(&inbound).map(|p| p.0), Some(1));
        let mut member = TcpStream::connect(addr).unwrap();
        member
            .write_all(&login_request(b"demo01", b"demo01"))
            .unwrap();
        assert_eq!(next_inbound(&inbound).map(|p| p.0), Some(2));
        let mut accepted = [0u8; 64];
        let n = soupbin::write_login_accepted(&mut accepted, b"TOKEX00001", 1).unwrap();
        replies.push((2, accepted[..n].to_vec()));
        replies.wake();
        let done = Arc::new(AtomicBool::new(false));
        let beats: Vec<_> = [&anonymous, &member]
            .into_iter()
            .map(|c| {
                let done = done.clone();
                heartbeats(c, move || !done.load(Ordering::Relaxed))
            })
            .collect();
        // The engine stand-in takes what comes until a logout (at most 5 s).
        let logout = logout_of(0).2;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut logged_out = None;
        while logged_out.is_none() && Instant::now() < deadline {
            match inbound.pop() {
                Some((id, _, p)) if p == logout => logged_out = Some(id),
                Some(_) => {}
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(logged_out, Some(1), "the connection that never logged in");
        assert!(closed_within(&mut anonymous, Duration::from_secs(5)));
        // The one logged in is kept while it heartbeats.
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match inbound.pop() {
                Some((id, _, p)) => assert!(p != logout, "connection {id} logged out"),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        done.store(true, Ordering::Relaxed);
        for h in beats {
            h.join().unwrap();
        }
        shut_down(stop, replies, thread);
    }

    #[test]
    fn a_connection_whose_login_was_refused_is_closed_after_the_login_deadline() {
        let (stop, thread, mut replies, inbound, addr) = port(TcpLimits {
            idle: Duration::from_secs(1),
            ..TcpLimits::default()
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .write_all(&login_request(b"nobody", b"wrong"))
            .unwrap();
        assert_eq!(next_inbound(&inbound).map(|p| p.0), Some(1));
        let mut rejected = [0u8; 8];
        let n = soupbin::write_packet(
            &mut rejected,
            soupbin::kind::LOGIN_REJECTED,
            &[soupbin::reject::NOT_AUTHORIZED],
        )
        .unwrap();
        replies.push((1, rejected[..n].to_vec()));
        replies.wake();
        // Heartbeats every 100 ms (for 5 s at most): never silent, never
        // logged in.
        let end = Instant::now() + Duration::from_secs(5);
        let beat = heartbeats(&client, move || Instant::now() < end);
        assert!(closed_within(&mut client, Duration::from_secs(5)));
        beat.join().unwrap();
        shut_down(stop, replies, thread);
    }

    #[test]
    fn a_logout_request_with_a_payload_is_handed_on_as_data_and_the_connection_is_still_read() {
        let (stop, thread, replies, inbound, addr) = port(TcpLimits::default());
        let mut client = TcpStream::connect(addr).unwrap();
        let not_a_logout = [0u8, 2, soupbin::kind::LOGOUT_REQUEST, 0];
        client
            .write_all(&[&not_a_logout[..], &HEARTBEAT].concat())
            .unwrap();
        assert_eq!(
            next_inbound(&inbound),
            Some((1, Ipv4Addr::LOCALHOST, not_a_logout.to_vec()))
        );
        assert_eq!(
            next_inbound(&inbound),
            Some((1, Ipv4Addr::LOCALHOST, HEARTBEAT.to_vec())),
            "the packet after it was not read"
        );
        shut_down(stop, replies, thread);
    }

    #[test]
    fn bytes_sent_after_a_logout_request_do_not_turn_the_engines_close_into_a_reset() {
        let (stop, thread, mut replies, inbound, addr) = port(TcpLimits::default());
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .write_all(&[0u8, 1, soupbin::kind::LOGOUT_REQUEST])
            .unwrap();
        assert_eq!(next_inbound(&inbound), Some(logout_of(1)));
        // Sent once the logout was read: it reaches the thread's socket
        // before the engine's close does.
        client.write_all(&HEARTBEAT).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        replies.push((1, b"last words".to_vec()));
        replies.close(1);
        replies.wake();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        let end = client.read_to_end(&mut got);
        assert!(end.is_ok(), "{end:?} after {got:?}");
        assert_eq!(got, b"last words");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(inbound.pop(), None, "nothing after the logout is handed");
        shut_down(stop, replies, thread);
    }

    #[test]
    fn a_connection_the_engine_closed_reports_a_logout_so_a_login_in_flight_cannot_stay_bound() {
        let (stop, thread, mut replies, inbound, addr) = port(TcpLimits::default());
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(&HEARTBEAT).unwrap();
        assert!(next_inbound(&inbound).is_some());
        // The engine timed the session out (a Login Request from this
        // connection may already be in the ring behind it).
        replies.close(1);
        replies.wake();
        assert!(closed_within(&mut client, Duration::from_secs(5)));
        assert_eq!(next_inbound(&inbound), Some(logout_of(1)));
        shut_down(stop, replies, thread);
    }

    #[test]
    fn packets_from_a_connection_the_engine_is_closing_are_not_handed_to_the_engine() {
        let (stop, thread, mut replies, inbound, addr) = port(TcpLimits {
            pending_bytes: 1 << 30,
            ..TcpLimits::default()
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(&HEARTBEAT).unwrap();
        assert!(next_inbound(&inbound).is_some());
        // 32 MB, then the close: the connection stays open, closing, until
        // the client reads it all.
        let queued = queue_32_mb(&mut replies, 1);
        replies.close(1);
        replies.wake();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut first = [0u8; 1];
        client.read_exact(&mut first).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        client.write_all(&HEARTBEAT).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut rest = Vec::new();
        let end = client.read_to_end(&mut rest);
        assert!(end.is_ok(), "{end:?}");
        assert_eq!(1 + rest.len(), queued);
        assert_eq!(
            next_inbound(&inbound),
            Some(logout_of(1)),
            "a packet read after the engine's close was handed over"
        );
        shut_down(stop, replies, thread);
    }
}
