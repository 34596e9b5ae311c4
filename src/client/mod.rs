//! `tokex::client`: an order-entry client session (sans-IO) and a UDP shell.
//!
//! Owns the client side of SoupBinTCP 3.0 + OUCH 4.2 over UDP: login, order
//! tokens, re-sending a request whose answer has not arrived (same token:
//! the exchange processes a token once per session per day), and exact
//! recovery of lost sequenced messages.
//!
//! [`ClientSession`] never touches a socket or a clock: requests and
//! received datagrams go in with the time, datagrams to send come out of
//! [`ClientSession::poll_transmit`], and [`ClientSession::poll_timeout`]
//! says when [`ClientSession::on_timer`] wants to run next. [`UdpClient`]
//! is the thin shell over a non-blocking `std::net::UdpSocket`;
//! [`XdpClients`] carries several sessions over one AF_XDP socket.
//!
//! Sequencing over UDP: the exchange starts every datagram that carries
//! sequenced data with a sequence label (a SoupBinTCP Debug packet, see
//! [`crate::gateway::udp_label`]), and labels its heartbeats with the next
//! sequence number. The session delivers each sequenced message exactly
//! once and in order: a message below the next expected number is a
//! duplicate and is ignored; one above it reveals a gap, and the session
//! asks for everything from the next expected number with a Login Request
//! carrying it (valid mid-session). Unlabelled sequenced messages (a TCP
//! stream) are numbered implicitly from the last Login Accepted. Such
//! re-requests go one at a time, and one that brought nothing is followed
//! by the next only after a wait that doubles up to 250 ms: the exchange
//! answers each (and journals it), so asking once per round trip would
//! flood it.
//!
//! Losing the session: the exchange heartbeats a bound session, so when
//! nothing at all arrives for three of its heartbeat intervals
//! ([`ClientSession::set_server_heartbeat`], 3 s by default) the session
//! reports [`ClientEvent::ConnectionLost`] (from
//! [`ClientSession::on_timer_with`]) and logs in again. Every login after
//! the first, whether after a loss, a logout or an End of Session, asks for
//! the stream from the client's next expected number, so fills that
//! happened meanwhile are delivered; what the exchange no longer has is
//! counted in [`ClientStats::unrecoverable`], and the requests then waiting
//! are given up ([`ClientEvent::Unanswered`]) once the exchange, heard from
//! after two of their re-sends, has answered neither. A request is also
//! given up when the exchange answered what the session sent after each of
//! three of its re-sends, every answer delivered, but never this one (a
//! token used earlier today, whose re-sends the exchange drops): with the
//! default waits, within seconds rather than never.
//!
//! A new stream: the SoupBinTCP session name is fixed, so when the
//! exchange's stream begins again (a new day, or a restart with
//! `durability = "none"`) only its numbers show it. The exchange answers a
//! Login Request asking for N from N or later, unless its stream holds
//! fewer than N − 1 messages; so a Login Accepted below the number asked
//! for by every Login Request still waiting for its answer (sent within
//! the silence timeout; the exchange answers them in the order they come)
//! is taken as a new stream. Not one merely below the next expected
//! number: a late answer to an earlier login, which asked for less, looks
//! like that, and following it would deliver messages twice. The session
//! reports [`ClientEvent::NewStream`], goes on from the new numbers, and
//! gives up every request still waiting ([`ClientEvent::Unanswered`])
//! rather than re-send it: on the new stream a re-sent Enter Order would
//! be an order the caller did not ask for there, and a Cancel or Replace
//! would name an order the exchange no longer knows. A heartbeat labelled
//! below the next expected number makes the session ask for the stream,
//! so that a new stream whose Login Accepted passed for a late answer is
//! found by the next one. A new stream already as long as what the session
//! had received when it logs in again (a session that received nothing, in
//! particular) cannot be told from the old one.
//!
//! Tokens: the exchange processes an order token once per session per day,
//! and drops a byte-identical re-sent request for a token already used
//! (the client is meant to recover the first answer by sequence number).
//! A program's tokens are its token prefix and a counter from 1, so a
//! program run twice on one day with a fixed prefix sends its first run's
//! tokens again: every order of the second run is dropped and, after a few
//! seconds, reported [`ClientEvent::Unanswered`]. Make the prefix unique
//! per run, from the wall clock: [`run_token_prefix`].
//!
//! Example (sans-IO, the caller owns the transport and the clock):
//!
//! ```no_run
//! use std::time::SystemTime;
//! use tokex::client::{run_token_prefix, ClientEvent, ClientSession};
//! use tokex::types::{Price, Qty, Side, Symbol, Tif};
//! // Unique to this run: a token is used once per session per day, and a
//! // request re-using one of an earlier run's is dropped by the exchange.
//! let prefix = run_token_prefix("D1", SystemTime::now());
//! let mut s = ClientSession::new("demo01", "demo01", &prefix, 200_000_000);
//! s.login(0);
//! let mut buf = [0u8; 1500];
//! while let Some(n) = s.poll_transmit(0, &mut buf) { /* send buf[..n] */ let _ = n; }
//! let tok = s.enter(1, Symbol::new("TK2612").unwrap(), Side::Buy, Qty::new(1),
//!                   "6.500".parse::<Price>().unwrap(), Tif::Day);
//! // for each datagram received: s.on_datagram(now, &bytes, &mut |e| println!("{e:?}"));
//! // at s.poll_timeout(): s.on_timer_with(now, &mut |e| println!("{e:?}"))
//! # let _ = tok;
//! ```

mod session;
mod udp;
mod xdp;

pub use session::{
    run_token_prefix, token_number, token_space, ClientEvent, ClientSession, ClientStats,
    MAX_TOKEN_PREFIX, MISSED_HEARTBEATS, SERVER_HEARTBEAT_NS,
};
pub use udp::{UdpClient, DEFAULT_SERVER};
pub use xdp::XdpClients;

/// The most receive batches one `poll` of a transport reads before it
/// returns, so a flood from the exchange's address cannot hold the
/// caller's loop (and its time bound) in the receive.
const MAX_RECV_BATCHES: usize = 64;
