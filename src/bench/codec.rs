//! Market-data benchmark inputs and runs: the ITCH stream the engine itself
//! produces on the mixed flow, decoded by tokex and by the `itchy` crate,
//! and rebuilt into order books by the feed handler.

use std::path::Path;
use std::time::Instant;

use super::engine::{mixed_flow, TokexRunner};
use crate::contract::ContractSet;
use crate::engine::{Event, EventSink};
use crate::feed::book::FeedBooks;
use crate::feed::itch_encoder::ItchEncoder;
use crate::types::Nanos;
use crate::wire::itch::{self, Message};
use crate::wire::itch_dispatch;

/// Length-prefixes every ITCH message of the engine events it sees.
struct ItchStream<'a> {
    encoder: &'a ItchEncoder,
    out: Vec<u8>,
    messages: usize,
}

impl EventSink for ItchStream<'_> {
    fn event(&mut self, e: &Event) {
        let (out, n) = (&mut self.out, &mut self.messages);
        self.encoder.encode(Nanos(34_200_000_000_000), e, &mut |m| {
            out.extend_from_slice(&(m.len() as u16).to_be_bytes());
            out.extend_from_slice(m);
            *n += 1;
        });
    }
}

/// The length-prefixed ITCH stream (start of day first) of `ops` engine
/// operations of the mixed flow on the first contract, and its message count.
pub fn itch_stream(contracts: &ContractSet, ops: usize, seed: u64) -> (Vec<u8>, usize) {
    let c = contracts
        .iter()
        .next()
        .cloned()
        .expect("at least one contract");
    let encoder = ItchEncoder::new(contracts);
    let mut sink = ItchStream {
        encoder: &encoder,
        out: Vec::new(),
        messages: 0,
    };
    let (out, n) = (&mut sink.out, &mut sink.messages);
    encoder.start_of_day(Nanos(34_200_000_000_000), &mut |m| {
        out.extend_from_slice(&(m.len() as u16).to_be_bytes());
        out.extend_from_slice(m);
        *n += 1;
    });
    let mut runner = TokexRunner::new(contracts, &c, 1 << 20);
    for op in &mixed_flow(ops, seed, &c) {
        runner.apply_with(op, &mut sink);
    }
    (sink.out, sink.messages)
}

/// The messages of the length-prefixed stream `buf`, stably grouped by
/// message type (every `A`, then every `C`, ...), length-prefixed again.
/// Not a market-data sequence any feed would send: it exists to measure
/// decode + dispatch when the branch on the message type always predicts,
/// which shows how much of the time on the real order is mispredictions.
pub fn grouped_by_type(buf: &[u8]) -> Vec<u8> {
    let mut msgs: Vec<&[u8]> = itch::stream(buf)
        .map_while(Result::ok)
        .map(|m| m.bytes())
        .collect();
    msgs.sort_by_key(|m| m.first().copied());
    let mut out = Vec::with_capacity(buf.len());
    for m in msgs {
        out.extend_from_slice(&(m.len() as u16).to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

/// The front of the length-prefixed stream `buf` holding its first `n`
/// messages (all of it if it has fewer).
pub fn first_messages(buf: &[u8], n: usize) -> &[u8] {
    let mut at = 0;
    for _ in 0..n {
        let Some(&[a, b]) = buf.get(at..at + 2) else {
            break;
        };
        at = (at + 2 + usize::from(u16::from_be_bytes([a, b]))).min(buf.len());
    }
    &buf[..at]
}

/// How many messages of each type the stream holds (by type byte), and how
/// many have the same type as the message before them.
pub fn type_mix(buf: &[u8]) -> (Vec<(char, usize)>, usize) {
    let mut counts = [0usize; 256];
    let (mut repeats, mut prev) = (0, None);
    for m in itch::stream(buf).map_while(Result::ok) {
        let t = m.bytes().first().copied();
        repeats += usize::from(t == prev);
        prev = t;
        if let Some(t) = t {
            counts[usize::from(t)] += 1;
        }
    }
    let mix = (0u8..=255)
        .zip(counts)
        .filter(|&(_, n)| n > 0)
        .map(|(t, n)| (char::from(t), n))
        .collect();
    (mix, repeats)
}

/// What the bench's handler takes from each message: the fields a book
/// needs, folded into a checksum.
#[inline(always)]
fn fold(m: Result<Message<'_>, crate::wire::DecodeError>) -> u64 {
    match m {
        Ok(Message::AddOrder(a)) => a.order_reference.get() ^ u64::from(a.price.get()),
        Ok(Message::OrderExecuted(e)) => e.order_reference.get() ^ e.match_number.get(),
        Ok(Message::OrderCancel(x)) => {
            x.order_reference.get() ^ u64::from(x.cancelled_shares.get())
        }
        Ok(Message::OrderDelete(d)) => d.order_reference.get(),
        Ok(Message::OrderReplace(u)) => u.new_order_reference.get() ^ u64::from(u.price.get()),
        Ok(_) => 1,
        Err(_) => 0,
    }
}

/// Decodes and dispatches every message with tokex's dispatch
/// ([`itch_dispatch::for_each`], four messages per jump); returns a checksum.
#[inline(never)]
pub fn decode_tokex(buf: &[u8]) -> u64 {
    let mut acc = 0u64;
    itch_dispatch::for_each(buf, |m| acc = acc.wrapping_add(fold(m)));
    acc
}

/// The same through [`itch::stream`], one jump per message.
#[inline(never)]
pub fn decode_tokex_stream(buf: &[u8]) -> u64 {
    itch::stream(buf).fold(0u64, |acc, m| acc.wrapping_add(fold(m)))
}

/// The same with the `itchy` crate.
#[inline(never)]
pub fn decode_itchy(buf: &[u8]) -> u64 {
    let mut acc = 0u64;
    for m in itchy::MessageStream::from_reader(buf) {
        acc = acc.wrapping_add(match m.map(|m| m.body) {
            Ok(itchy::Body::AddOrder(a)) => a.reference ^ u64::from(a.price.raw()),
            Ok(itchy::Body::OrderExecuted {
                reference,
                match_number,
                ..
            }) => reference ^ match_number,
            Ok(itchy::Body::OrderCancelled {
                reference,
                cancelled,
            }) => reference ^ u64::from(cancelled),
            Ok(itchy::Body::DeleteOrder { reference }) => reference,
            Ok(itchy::Body::ReplaceOrder(r)) => r.new_reference ^ u64::from(r.price.raw()),
            Ok(_) => 1,
            Err(_) => 0,
        });
    }
    acc
}

/// Applies every message of the stream to `books`; returns them.
#[inline(never)]
pub fn rebuild_into(mut books: FeedBooks, buf: &[u8]) -> FeedBooks {
    let _ = books.apply_stream(buf, &mut ());
    books
}

/// Rebuilds every book from the stream into fresh books that know the
/// contracts' price grids (the way `tokex feed` runs); returns the books.
pub fn rebuild(contracts: &ContractSet, buf: &[u8]) -> FeedBooks {
    rebuild_into(FeedBooks::with_contracts(contracts), buf)
}

/// Nanoseconds per message of each run (best of `rounds`).
#[derive(Debug, Clone, Copy)]
pub struct CodecFigures {
    pub messages: usize,
    /// [`decode_tokex`]: four messages per jump.
    pub tokex_decode_ns: f64,
    /// [`decode_tokex_stream`]: one jump per message.
    pub tokex_stream_decode_ns: f64,
    pub itchy_decode_ns: f64,
    pub rebuild_ns: f64,
}

pub fn run(ops: usize, rounds: usize) -> anyhow::Result<CodecFigures> {
    let contracts = ContractSet::load_dir(Path::new("contracts"))?;
    let (buf, n) = itch_stream(&contracts, ops, 9);
    let best = |f: &dyn Fn() -> u64| -> f64 {
        (0..rounds.max(1))
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_nanos() as f64 / n as f64
            })
            .fold(f64::MAX, f64::min)
    };
    Ok(CodecFigures {
        messages: n,
        tokex_decode_ns: best(&|| decode_tokex(std::hint::black_box(&buf))),
        tokex_stream_decode_ns: best(&|| decode_tokex_stream(std::hint::black_box(&buf))),
        itchy_decode_ns: best(&|| decode_itchy(std::hint::black_box(&buf))),
        rebuild_ns: best(&|| rebuild(&contracts, std::hint::black_box(&buf)).order_count() as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_decoders_agree_on_the_engine_stream() {
        let contracts = ContractSet::shipped();
        let (buf, n) = itch_stream(&contracts, 20_000, 3);
        assert!(n > 10_000, "{n} messages");
        assert_eq!(decode_tokex(&buf), decode_itchy(&buf));
        assert_eq!(decode_tokex_stream(&buf), decode_tokex(&buf));
        let grouped = grouped_by_type(&buf);
        assert_eq!(grouped.len(), buf.len());
        assert_eq!(decode_tokex(&grouped), decode_tokex(&buf));
        assert_eq!(type_mix(&grouped).0, type_mix(&buf).0);
        assert_eq!(itch::stream(first_messages(&buf, 100)).count(), 100);
        assert_eq!(first_messages(&buf, usize::MAX), &buf[..]);
        assert_eq!(rebuild(&contracts, &buf).errors, 0);
        assert_eq!(rebuild_into(FeedBooks::new(), &buf).errors, 0);
    }
}
