//! The SoupBinTCP compatibility port: plain TCP through the kernel, for
//! clients and tools that only speak TCP.
//!
//! Owns the listener and the connections on a thread of its own (it sleeps
//! when idle, so it never takes a core away from the engine). Whole
//! SoupBinTCP packets go to the engine thread through a bounded ring, tagged
//! with the connection number; replies come back through another ring. A
//! connection that closes is reported as a Logout Request so its session is
//! released at once.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::runtime::{Handoff, Stop};
use crate::wire::soupbin::{self, Reassembler};

/// A packet from or to a TCP connection.
pub type TcpPacket = (u32, Vec<u8>);

/// Largest packet accepted from a client (the longest OUCH message is 49 bytes).
const MAX_PACKET: usize = 1024;

struct Conn {
    stream: TcpStream,
    rx: Reassembler,
    tx: Vec<u8>,
}

/// Starts the TCP thread. `inbound` carries client packets to the engine,
/// `outbound` carries replies back.
pub fn spawn(
    listener: TcpListener,
    stop: Stop,
    inbound: Arc<Handoff<TcpPacket>>,
    outbound: Arc<Handoff<TcpPacket>>,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("tokex-tcp".into())
        .spawn(move || {
            let mut conns: HashMap<u32, Conn> = HashMap::new();
            let mut next_id = 1u32;
            let mut buf = [0u8; 4096];
            let mut logout = [0u8; 8];
            let logout_len =
                soupbin::write_empty(&mut logout, soupbin::kind::LOGOUT_REQUEST).unwrap_or(0);
            let push = |item: TcpPacket| {
                let mut item = item;
                // The engine drains this ring every loop; wait for room rather
                // than drop a client's packet.
                while let Err(back) = inbound.push(item) {
                    item = back;
                    std::thread::yield_now();
                }
            };
            while !stop.is_set() {
                let mut busy = false;
                while let Ok((stream, _)) = listener.accept() {
                    let _ = stream.set_nonblocking(true);
                    let _ = stream.set_nodelay(true);
                    conns.insert(
                        next_id,
                        Conn {
                            stream,
                            rx: Reassembler::new(1 << 16, MAX_PACKET),
                            tx: Vec::new(),
                        },
                    );
                    next_id = next_id.wrapping_add(1).max(1);
                    busy = true;
                }
                let mut closed = Vec::new();
                for (&id, c) in conns.iter_mut() {
                    loop {
                        match c.stream.read(&mut buf) {
                            Ok(0) => {
                                closed.push(id);
                                break;
                            }
                            Ok(n) => {
                                busy = true;
                                if c.rx.extend(&buf[..n]).is_err() {
                                    closed.push(id);
                                    break;
                                }
                                loop {
                                    match c.rx.next_packet() {
                                        Ok(Some(p)) => push((id, p.to_vec())),
                                        Ok(None) => break,
                                        Err(_) => {
                                            // An impossible length: the stream cannot be resynchronised.
                                            closed.push(id);
                                            break;
                                        }
                                    }
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => {
                                closed.push(id);
                                break;
                            }
                        }
                    }
                }
                while let Some((id, bytes)) = outbound.pop() {
                    busy = true;
                    if let Some(c) = conns.get_mut(&id) {
                        c.tx.extend_from_slice(&bytes);
                    }
                }
                for (&id, c) in conns.iter_mut() {
                    while !c.tx.is_empty() {
                        match c.stream.write(&c.tx) {
                            Ok(n) => {
                                c.tx.drain(..n);
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => {
                                closed.push(id);
                                break;
                            }
                        }
                    }
                }
                for id in closed {
                    if conns.remove(&id).is_some() {
                        push((id, logout[..logout_len].to_vec()));
                    }
                }
                if !busy {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        })
}
