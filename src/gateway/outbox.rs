//! Where the gateway's output goes: replies to peers ([`Outbox`], with the
//! sequence label that numbers a UDP datagram's messages, [`udp_label`])
//! and records for the journal ([`JournalSink`]). The gateway writes into
//! these; the exchange's shell decides what a send or a record means.

use super::Peer;
use crate::types::Nanos;
use crate::wire::soupbin;

/// Where replies go.
pub trait Outbox {
    fn send(&mut self, peer: Peer, bytes: &[u8]);

    /// One Sequenced Data packet numbered `seq` carrying `msg`. A UDP peer
    /// needs the sequence label in front of it unless the packet directly
    /// follows the one numbered `seq - 1` in the same datagram: an outbox
    /// that packs replies into datagrams frames them in place and labels
    /// only where the numbering breaks ([`crate::exchange`]'s reply holding
    /// area). This default sends every packet alone, labelled for UDP.
    fn send_sequenced(&mut self, peer: Peer, seq: u64, msg: &[u8]) {
        let mut pkt = [0u8; udp_label::LEN + MAX_SEQUENCED_PACKET];
        let mut len = 0;
        if let Peer::Udp(_) = peer {
            len = udp_label::write(&mut pkt, seq);
        }
        if let Ok(n) = soupbin::write_packet(&mut pkt[len..], soupbin::kind::SEQUENCED_DATA, msg) {
            self.send(peer, &pkt[..len + n]);
        }
    }

    /// Ends `peer`'s connection once what was sent to it is out (a TCP
    /// session the gateway timed out: the client must learn that its
    /// session is gone, not have its next orders dropped in silence). UDP
    /// has no connection: nothing to do.
    fn close(&mut self, peer: Peer);
}

/// The longest Sequenced Data packet the gateway sends (header included;
/// OUCH's longest outbound message is Replaced, 80 bytes).
pub const MAX_SEQUENCED_PACKET: usize = 128;

/// Collects replies (tests, the TCP shell).
impl Outbox for Vec<(Peer, Vec<u8>)> {
    fn send(&mut self, peer: Peer, bytes: &[u8]) {
        self.push((peer, bytes.to_vec()));
    }

    /// An empty reply to a TCP peer stands for the close.
    fn close(&mut self, peer: Peer) {
        if let Peer::Tcp(_) = peer {
            self.push((peer, Vec::new()));
        }
    }
}

/// Where state-changing inbound packets are recorded before they take effect.
pub trait JournalSink {
    fn record(&mut self, kind: u8, now: Nanos, payload: &[u8]);
}

/// Journals nothing (benchmarks, replay).
impl JournalSink for () {
    fn record(&mut self, _kind: u8, _now: Nanos, _payload: &[u8]) {}
}

/// The sequence label that starts each UDP datagram carrying sequenced data:
/// a SoupBinTCP Debug packet whose text is `seq ` and the number, right
/// aligned in 20 characters (as in Login Accepted).
pub mod udp_label {
    use crate::wire::soupbin;

    pub const PREFIX: &[u8; 4] = b"seq ";
    /// Bytes of the whole Debug packet.
    pub const LEN: usize = soupbin::HEADER_LEN + 24;

    /// Writes the label for `seq` at the front of `out` (at least [`LEN`] bytes).
    pub fn write(out: &mut [u8], seq: u64) -> usize {
        let mut text = [0u8; 24];
        text[..4].copy_from_slice(PREFIX);
        text[4..].copy_from_slice(&soupbin::numeric_left::<20>(seq));
        soupbin::write_packet(out, soupbin::kind::DEBUG, &text).unwrap_or(0)
    }

    /// The sequence number in a Debug packet's payload, if it is a label.
    pub fn parse(payload: &[u8]) -> Option<u64> {
        let digits = payload.strip_prefix(PREFIX)?;
        if digits.len() != 20 {
            return None;
        }
        let mut v = 0u64;
        let mut any = false;
        for &b in digits {
            match b {
                b' ' if !any => {}
                b'0'..=b'9' => {
                    any = true;
                    v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                }
                _ => return None,
            }
        }
        any.then_some(v)
    }
}

/// Keeps no journal record (replay: the records are being read).
pub(super) struct NoJournal;

impl JournalSink for NoJournal {
    fn record(&mut self, _kind: u8, _now: Nanos, _payload: &[u8]) {}
}

/// Drops every reply (replay, benchmarks).
pub struct Discard;

impl Outbox for Discard {
    fn send(&mut self, _peer: Peer, _bytes: &[u8]) {}
    fn close(&mut self, _peer: Peer) {}
}
