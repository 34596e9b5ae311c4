//! `tokex probe`: checks order entry on the TCP compatibility port the way
//! a firm's connectivity check would: log in, enter one order, cancel it,
//! log out, printing every answer. Exits with an error if any step fails.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use zerocopy::IntoBytes;

use crate::types::{Price, Qty, Side, Symbol, Tif};
use crate::wire::ouch;
use crate::wire::soupbin::{self, Packet, Reassembler};

#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// The exchange's SoupBinTCP port.
    #[arg(long, default_value = "198.18.0.1:9002")]
    pub tcp: SocketAddrV4,
    /// The load generator uses demo01.. from the first; the probe the last.
    #[arg(long, default_value = "demo08")]
    pub user: String,
    /// Defaults to the username (the lab's demo sessions).
    #[arg(long)]
    pub password: Option<String>,
    #[arg(long, default_value = "TK2612")]
    pub symbol: String,
    #[arg(long, default_value = "6.000")]
    pub price: String,
    /// After the cancel, stay logged in until the exchange ends the session
    /// (End of Session at its shutdown), waiting at most this many seconds.
    #[arg(long, value_name = "SECS")]
    pub until_end_of_session: Option<u64>,
}

struct Conn {
    stream: TcpStream,
    rx: Reassembler,
}

impl Conn {
    /// The next packet, waiting at most 3 s.
    fn next(&mut self) -> anyhow::Result<Vec<u8>> {
        match self.next_within(Duration::from_secs(3))? {
            Some(p) => Ok(p),
            None => bail!("no answer within 3 s"),
        }
    }

    /// The next packet, or `None` if none came within `limit`.
    fn next_within(&mut self, limit: Duration) -> anyhow::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        loop {
            if let Some(p) = self
                .rx
                .next_packet()
                .map_err(|e| anyhow::anyhow!("bad stream: {e}"))?
            {
                return Ok(Some(p.to_vec()));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            let n = match self.stream.read(&mut buf) {
                Ok(0) => bail!("the exchange closed the connection"),
                Ok(n) => n,
                // The read timeout: check the deadline.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) => return Err(e).context("reading"),
            };
            self.rx
                .extend(&buf[..n])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }

    /// Waits at most `limit` for End of Session, skipping heartbeats.
    fn end_of_session(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(p) = self.next_within(left)? else {
                bail!("no End of Session within {} s", limit.as_secs());
            };
            match Packet::parse(&p) {
                Ok((Packet::EndOfSession, _)) => {
                    println!("end of session: the exchange ended the session");
                    return Ok(());
                }
                Ok((Packet::ServerHeartbeat | Packet::SequencedData(_), _)) => {}
                Ok((other, _)) => bail!("unexpected packet {other:?}"),
                Err(e) => bail!("undecodable packet: {e}"),
            }
        }
    }

    /// Waits for the next Sequenced Data message (skipping heartbeats).
    fn sequenced(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            let p = self.next()?;
            match Packet::parse(&p) {
                Ok((Packet::SequencedData(m), _)) => return Ok(m.to_vec()),
                Ok((Packet::ServerHeartbeat, _)) => continue,
                Ok((other, _)) => bail!("unexpected packet {other:?}"),
                Err(e) => bail!("undecodable packet: {e}"),
            }
        }
    }

    fn send(&mut self, kind: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mut b = [0u8; 128];
        let n = soupbin::write_packet(&mut b, kind, payload).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.stream.write_all(&b[..n]).context("writing")
    }
}

pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    crate::net::lab_route::lab_source(*args.tcp.ip())?;
    let stream = TcpStream::connect_timeout(&SocketAddr::V4(args.tcp), Duration::from_secs(3))
        .with_context(|| format!("connecting to {}", args.tcp))?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.set_nodelay(true)?;
    let mut c = Conn {
        stream,
        rx: Reassembler::new(1 << 16, 4096),
    };
    let password = args.password.clone().unwrap_or_else(|| args.user.clone());

    let mut b = [0u8; 64];
    let n = soupbin::write_login_request(&mut b, args.user.as_bytes(), password.as_bytes(), b"", 0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    c.stream.write_all(&b[..n])?;
    let p = c.next()?;
    match Packet::parse(&p) {
        Ok((Packet::LoginAccepted(a), _)) => println!(
            "login accepted: session {}, next sequence {}",
            String::from_utf8_lossy(a.session()),
            a.next_sequence().unwrap_or(0)
        ),
        Ok((Packet::LoginRejected(code), _)) => bail!("login rejected ({})", code as char),
        other => bail!("unexpected answer to the login: {other:?}"),
    }

    let symbol = Symbol::new(&args.symbol).context("symbol")?;
    let price: Price = args
        .price
        .parse()
        .map_err(|e| anyhow::anyhow!("price: {e}"))?;
    let token = ouch::token(format!("PROBE{}", std::process::id() % 1_000_000_000).as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let enter = ouch::EnterOrder::new(token, Side::Buy, Qty::new(1), symbol, price, Tif::Day);
    c.send(soupbin::kind::UNSEQUENCED_DATA, enter.as_bytes())?;
    let m = c.sequenced()?;
    match ouch::Outbound::parse(&m) {
        Ok(ouch::Outbound::Accepted(a)) => println!(
            "accepted: token {}, order reference {}",
            String::from_utf8_lossy(a.token()),
            a.order_reference.get()
        ),
        Ok(ouch::Outbound::Rejected(r)) => bail!("order rejected ({})", r.reason as char),
        other => bail!("unexpected answer to the order: {other:?}"),
    }
    c.send(
        soupbin::kind::UNSEQUENCED_DATA,
        ouch::CancelOrder::new(token, Qty::ZERO).as_bytes(),
    )?;
    let m = c.sequenced()?;
    match ouch::Outbound::parse(&m) {
        Ok(ouch::Outbound::Canceled(x)) => println!(
            "canceled: {} lot(s), reason {}",
            x.decrement.get(),
            x.reason as char
        ),
        other => bail!("unexpected answer to the cancel: {other:?}"),
    }
    if let Some(secs) = args.until_end_of_session {
        println!("waiting for End of Session (at most {secs} s)");
        c.end_of_session(Duration::from_secs(secs))?;
        println!(
            "probe ok: login, enter, cancel and End of Session over SoupBinTCP/TCP at {}",
            args.tcp
        );
        return Ok(());
    }
    c.send(soupbin::kind::LOGOUT_REQUEST, &[])?;
    println!(
        "probe ok: login, enter, cancel and logout over SoupBinTCP/TCP at {}",
        args.tcp
    );
    Ok(())
}
