//! A logged-in session's OUCH requests into the engine, and the engine's
//! events back out as the OUCH answers of the sessions they concern: each
//! token claimed once per session per day, rate-limit rejects, engine
//! reasons mapped to OUCH reject and cancel codes, every answer sequenced
//! for re-request.

use super::{Drop, Gateway, Outbox};
use crate::engine::{CancelReason, Engine, Event, EventSink, NewOrder, RejectReason};
use crate::types::{InstrumentId, Nanos, Side, Symbol};
use crate::wire::ouch::{self, Token};
use zerocopy::IntoBytes;

/// A fingerprint of a request's bytes: tells a re-sent request from a
/// different one reusing its token. Eight bytes a step (byte-wise FNV-1a
/// was a chain of 47 dependent multiplies on every Enter Order's path).
/// Each step is a bijection of the state for a given
/// chunk (xor, multiply by an odd constant, rotate), so two requests of
/// the same length that differ in one chunk always differ here. Stored in
/// snapshots: changing it needs a new snapshot version.
pub(super) fn fingerprint(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let step = |h: u64, chunk: u64| (h ^ chunk).wrapping_mul(K).rotate_left(31);
    let mut chunks = bytes.chunks_exact(8);
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ bytes.len() as u64;
    for c in &mut chunks {
        h = step(h, u64::from_le_bytes(c.try_into().unwrap_or_default()));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    step(h, u64::from_le_bytes(tail))
}

/// The OUCH reject reason for an engine reject reason.
pub fn ouch_reject_code(r: RejectReason) -> u8 {
    match r {
        RejectReason::UnknownInstrument => ouch::reject::INVALID_STOCK,
        RejectReason::PriceOffTick | RejectReason::PriceOutsideLimits => {
            ouch::reject::INVALID_PRICE
        }
        RejectReason::PriceOutsideBand => ouch::reject::INVALID_PRICE,
        RejectReason::QtyAboveMax => ouch::reject::SHARES_EXCEED_THRESHOLD,
        // No shares: OUCH 4.2 has no code of its own for it.
        RejectReason::InvalidQty => ouch::reject::OTHER,
        RejectReason::MarketNotOpen => ouch::reject::HALTED,
        RejectReason::TifNotAllowedNow => ouch::reject::NOT_ALLOWED_NOW,
        RejectReason::CapacityExhausted => ouch::reject::PROCESSING_ERROR,
        RejectReason::RateLimited => ouch::reject::FLOW_CONTROL,
        RejectReason::RiskLimit => ouch::reject::EXCEEDED_DOLLAR_VALUE_LIMIT,
        RejectReason::PositionLimit => ouch::reject::EXCEEDED_SHARES_LIMIT,
        RejectReason::TooManyOrders => ouch::reject::OTHER,
        RejectReason::DuplicateToken | RejectReason::UnknownOrder => ouch::reject::OTHER,
    }
}

/// The OUCH cancel reason for an engine cancel reason.
pub fn ouch_cancel_code(r: CancelReason) -> u8 {
    match r {
        CancelReason::UserRequested => ouch::cancel::USER_REQUESTED,
        CancelReason::ImmediateOrCancel | CancelReason::FillOrKill => {
            ouch::cancel::IMMEDIATE_OR_CANCEL
        }
        CancelReason::SelfTrade => ouch::cancel::SELF_MATCH_PREVENTION,
        CancelReason::MarketClosed => ouch::cancel::CLOSED,
    }
}

/// Tags given to the engine: session index in the high 32 bits, the
/// session's token number in the low 32.
fn tag(session: usize, token: u32) -> u64 {
    ((session as u64) << 32) | u64::from(token)
}

fn untag(tag: u64) -> (usize, u32) {
    ((tag >> 32) as usize, tag as u32)
}

/// How the engine's events for one request are answered.
#[derive(Default, Clone, Copy)]
pub(super) struct Answering {
    /// The token a Replace Order names (its Replaced says which it was).
    previous: Option<Token>,
    /// The side of the order a Modify Order names: the cancel it makes is
    /// answered by Order Modified, not Order Canceled.
    modified: Option<Side>,
    /// An Enter Order's tag and the fields its Accepted echoes. The engine
    /// accepts an order only while it is entered, so the request is at
    /// hand: nothing is kept per order for it.
    accepting: Option<(u64, ouch::Echo)>,
}

/// The token a request claims: an Enter's, a Replace's new one.
fn new_token(request: ouch::Inbound<'_>) -> Option<Token> {
    match request {
        ouch::Inbound::Enter(e) => Some(e.token),
        ouch::Inbound::Replace(r) => Some(r.replacement_token),
        _ => None,
    }
}

impl Gateway {
    /// Whether [`Gateway::throttled`] answers `request` of session `s`
    /// (past its rate limit) at `now` with a reject; one it drops silently
    /// changes no state. Changes nothing.
    pub(super) fn throttle_answers(
        &self,
        now: Nanos,
        s: usize,
        request: ouch::Inbound<'_>,
    ) -> bool {
        let sess = &self.sessions[s];
        new_token(request).is_some_and(|t| !sess.used(&t) && sess.reject_bucket.can_take(now.0))
    }

    /// A message over the session's rate limit (see the module docs).
    pub(super) fn throttled(
        &mut self,
        now: Nanos,
        s: usize,
        request: ouch::Inbound<'_>,
        out: &mut impl Outbox,
    ) {
        let token = new_token(request);
        let msg = request.bytes();
        let sess = &mut self.sessions[s];
        match token {
            // A used token names an earlier request: never reject it again.
            Some(t) if !sess.used(&t) && sess.reject_bucket.take(now.0) => {
                // The token is used by its reject, as by any other: a copy
                // of the request re-sent by the client before the reject
                // reached it is then a duplicate, not a second answer.
                if sess.tokens_used() < self.cfg.max_tokens_per_session as usize {
                    let _ = sess.claim(t, fingerprint(msg));
                }
                self.counters.drop(Drop::RateLimited);
                self.reject(now, s, t, RejectReason::RateLimited, out);
            }
            _ => self.counters.drop(Drop::RateLimitedSilent),
        }
    }

    /// One OUCH request of session `s` into the engine, and the engine's
    /// events out: to the market-data sink and as the answers of the
    /// sessions they concern.
    pub(super) fn order(
        &mut self,
        now: Nanos,
        s: usize,
        inbound: ouch::Inbound<'_>,
        engine: &mut Engine,
        md: &mut impl EventSink,
        out: &mut impl Outbox,
    ) {
        let msg = inbound.bytes();
        self.counters.orders += 1;
        self.events.clear();
        let answering = match inbound {
            ouch::Inbound::Enter(e) => self.enter_order(now, s, e, msg, engine, out),
            ouch::Inbound::Replace(r) => self.replace_order(now, s, r, msg, engine, out),
            ouch::Inbound::Cancel(c) => self.cancel_order(now, s, c, engine, out),
            ouch::Inbound::Modify(m) => self.modify_order(now, s, m, engine, out),
        };
        // A request refused before the engine saw it has no events.
        let Some(answering) = answering else {
            return;
        };
        let events = std::mem::take(&mut self.events);
        for e in events.as_slice() {
            md.event(e);
            match (answering.modified, *e) {
                (
                    Some(side),
                    Event::Canceled {
                        tag,
                        remaining,
                        reason: CancelReason::UserRequested,
                        ..
                    },
                ) => self.report_modified(now, tag, side, remaining, out),
                _ => self.acknowledge(now, e, &answering, out),
            }
        }
        self.events = events;
    }

    /// Enter Order: a new order for the engine, once its token is claimed
    /// and its fields are ones tokex takes.
    #[inline]
    fn enter_order(
        &mut self,
        now: Nanos,
        s: usize,
        e: &ouch::EnterOrder,
        msg: &[u8],
        engine: &mut Engine,
        out: &mut impl Outbox,
    ) -> Option<Answering> {
        let t = self.claim(now, s, e.token, msg, out)?;
        let Ok(side) = e.side() else {
            self.refuse_bad_field(now, s, e.token, out);
            return None;
        };
        if !e.min_qty_supported() {
            self.refuse_min_qty(now, s, e.token, out);
            return None;
        }
        let Some(&instrument) = self.symbols.get(&e.symbol()) else {
            self.reject(now, s, e.token, RejectReason::UnknownInstrument, out);
            return None;
        };
        let o = NewOrder {
            account: self.sessions[s].account,
            tag: tag(s, t),
            instrument,
            side,
            price: e.price(),
            qty: e.qty(),
            tif: e.tif(),
        };
        engine.enter(now, &o, &mut self.events);
        Some(Answering {
            accepting: Some((o.tag, e.echo())),
            ..Answering::default()
        })
    }

    /// Replace Order: the session's live order under a new token, price
    /// and size.
    #[inline]
    fn replace_order(
        &mut self,
        now: Nanos,
        s: usize,
        r: &ouch::ReplaceOrder,
        msg: &[u8],
        engine: &mut Engine,
        out: &mut impl Outbox,
    ) -> Option<Answering> {
        // The order replaced, looked up before the new token is claimed (a
        // replace naming its own new token is unknown).
        let order = self.sessions[s].live_order(&r.existing_token);
        let t = self.claim(now, s, r.replacement_token, msg, out)?;
        if !r.min_qty_supported() {
            self.refuse_min_qty(now, s, r.replacement_token, out);
            return None;
        }
        let Some((_, order)) = order else {
            self.reject(now, s, r.replacement_token, RejectReason::UnknownOrder, out);
            return None;
        };
        let account = self.sessions[s].account;
        engine.replace(
            now,
            account,
            order,
            tag(s, t),
            r.price(),
            r.qty(),
            &mut self.events,
        );
        Some(Answering {
            previous: Some(r.existing_token),
            ..Answering::default()
        })
    }

    /// Cancel Order: the session's live order canceled down to a size.
    #[inline]
    fn cancel_order(
        &mut self,
        now: Nanos,
        s: usize,
        c: &ouch::CancelOrder,
        engine: &mut Engine,
        out: &mut impl Outbox,
    ) -> Option<Answering> {
        let Some((t, order)) = self.sessions[s].live_order(&c.token) else {
            self.reject(now, s, c.token, RejectReason::UnknownOrder, out);
            return None;
        };
        let account = self.sessions[s].account;
        engine.cancel(now, account, order, c.qty(), tag(s, t), &mut self.events);
        if !self.events_answer(tag(s, t)) {
            self.answer_a_cancel_that_changed_nothing(now, s, c.token, out);
        }
        Some(Answering::default())
    }

    /// Modify Order: on equities it switches a sell between sell, sell
    /// short and short exempt; a futures order keeps its side, so here it
    /// is a cancel down to a size answered by Order Modified.
    #[inline]
    fn modify_order(
        &mut self,
        now: Nanos,
        s: usize,
        m: &ouch::ModifyOrder,
        engine: &mut Engine,
        out: &mut impl Outbox,
    ) -> Option<Answering> {
        let live = self.sessions[s].live_order(&m.token);
        let Some(((t, order), resting)) =
            live.and_then(|(t, order)| Some(((t, order), engine.order(order)?)))
        else {
            self.reject(now, s, m.token, RejectReason::UnknownOrder, out);
            return None;
        };
        if m.side() != Ok(resting.side) {
            self.refuse_bad_field(now, s, m.token, out);
            return None;
        }
        let account = self.sessions[s].account;
        engine.cancel(now, account, order, m.qty(), tag(s, t), &mut self.events);
        if !self.events_answer(tag(s, t)) {
            // At or above the open size: nothing changes.
            let m =
                ouch::OrderModified::new(now.since_midnight(), m.token, resting.side, resting.qty);
            self.send_sequenced(now, s, m.as_bytes(), out);
        }
        Some(Answering {
            modified: Some(resting.side),
            ..Answering::default()
        })
    }

    /// The answer to a Modify Order that took lots off: Order Modified
    /// with the shares left.
    fn report_modified(
        &mut self,
        now: Nanos,
        tag: u64,
        side: Side,
        remaining: crate::types::Qty,
        out: &mut impl Outbox,
    ) {
        let (s, t) = untag(tag);
        if remaining.is_zero() {
            self.sessions[s].finished(t);
        }
        let token = self.sessions[s].token(t);
        let m = ouch::OrderModified::new(now.since_midnight(), token, side, remaining);
        self.send_sequenced(now, s, m.as_bytes(), out);
    }

    /// A request with a field value tokex cannot take (an unknown side, a
    /// Modify changing the side): counted as a bad message and answered
    /// with reason Other.
    fn refuse_bad_field(&mut self, now: Nanos, s: usize, token: Token, out: &mut impl Outbox) {
        self.counters.drop(Drop::BadMessage);
        self.send_rejected_code(now, s, token, ouch::reject::OTHER, out);
    }

    /// An Enter or Replace whose minimum quantity tokex does not take
    /// ([`ouch::min_qty_supported`]): Invalid Minimum Quantity.
    fn refuse_min_qty(&mut self, now: Nanos, s: usize, token: Token, out: &mut impl Outbox) {
        self.counters.reject(RejectReason::InvalidQty);
        self.send_rejected_code(now, s, token, ouch::reject::INVALID_MIN_QTY, out);
    }

    /// A cancel to a size at or above the order's open size changes
    /// nothing, and the engine says nothing: it is answered with
    /// an Order Canceled of 0 lots, so that every request gets an answer
    /// (a client waiting for one would re-send it for ever).
    fn answer_a_cancel_that_changed_nothing(
        &mut self,
        now: Nanos,
        s: usize,
        token: Token,
        out: &mut impl Outbox,
    ) {
        let m = ouch::Canceled::new(
            now.since_midnight(),
            token,
            crate::types::Qty::ZERO,
            ouch::cancel::USER_REQUESTED,
        );
        self.send_sequenced(now, s, m.as_bytes(), out);
    }

    /// Whether the engine's events for this request answer the order
    /// tagged `tag` (canceled or rejected): not the case for a cancel that
    /// changed nothing, even when timers that came due in the same call
    /// left events of their own.
    fn events_answer(&self, tag: u64) -> bool {
        self.events.as_slice().iter().any(|e| match *e {
            Event::Canceled { tag: t, .. } | Event::Rejected { tag: t, .. } => t == tag,
            _ => false,
        })
    }

    /// Claims `token` for request `msg` of session `s`; its number, or
    /// `None` when the request was handled here. Processed once per session
    /// per day: a re-sent request (same bytes) is dropped and counted, the
    /// client recovering its answer by sequence number; a different request
    /// reusing the token is rejected.
    fn claim(
        &mut self,
        now: Nanos,
        s: usize,
        token: Token,
        msg: &[u8],
        out: &mut impl Outbox,
    ) -> Option<u32> {
        let fp = fingerprint(msg);
        let sess = &self.sessions[s];
        // (The count first: the lookup runs only once the day's tokens are
        // used up, so a re-send of a used one is still recognised.)
        if sess.tokens_used() >= self.cfg.max_tokens_per_session as usize && !sess.used(&token) {
            self.reject(now, s, token, RejectReason::CapacityExhausted, out);
            return None;
        }
        match self.sessions[s].claim(token, fp) {
            Ok(t) => Some(t),
            Err(used) if used == fp => {
                self.counters.drop(Drop::Resent);
                None
            }
            Err(_) => {
                self.reject(now, s, token, RejectReason::DuplicateToken, out);
                None
            }
        }
    }

    /// Counts reject `reason` and answers `token` with it.
    fn reject(
        &mut self,
        now: Nanos,
        s: usize,
        token: Token,
        reason: RejectReason,
        out: &mut impl Outbox,
    ) {
        self.counters.reject(reason);
        self.send_rejected(now, s, token, reason, out);
    }

    fn send_rejected(
        &mut self,
        now: Nanos,
        s: usize,
        token: Token,
        reason: RejectReason,
        out: &mut impl Outbox,
    ) {
        self.send_rejected_code(now, s, token, ouch_reject_code(reason), out);
    }

    /// A Rejected with OUCH reason `code` for `token`, sequenced for `s`.
    fn send_rejected_code(
        &mut self,
        now: Nanos,
        s: usize,
        token: Token,
        code: u8,
        out: &mut impl Outbox,
    ) {
        let m = ouch::Rejected::new(now.since_midnight(), token, code);
        self.send_sequenced(now, s, m.as_bytes(), out);
    }

    /// Sequences one outbound message for session `s`: stores it for
    /// re-request and sends it if the session is bound (to a UDP peer after
    /// its sequence label).
    fn send_sequenced(&mut self, now: Nanos, s: usize, msg: &[u8], out: &mut impl Outbox) {
        let sess = &mut self.sessions[s];
        let seq = sess.store.next_sequence();
        sess.store.push(msg);
        if let Some(peer) = sess.peer {
            sess.last_tx = now.0;
            out.send_sequenced(peer, seq, msg);
        }
    }

    /// Answers engine event `e` to the session it concerns, `answering`
    /// the request it came from (default: none, a timer's).
    pub(super) fn acknowledge(
        &mut self,
        now: Nanos,
        e: &Event,
        answering: &Answering,
        out: &mut impl Outbox,
    ) {
        let ts = now.since_midnight();
        match *e {
            Event::Accepted {
                tag,
                order,
                instrument,
                side,
                price,
                qty,
                tif,
                ..
            } => {
                let (s, t) = untag(tag);
                let echo = match answering.accepting {
                    Some((entered, echo)) if entered == tag => echo,
                    _ => ouch::Echo::default(),
                };
                let token = self.sessions[s].set_order(t, order, echo);
                let f = ouch::OrderFields {
                    timestamp: ts,
                    token,
                    side,
                    qty,
                    symbol: self.symbol(instrument),
                    price,
                    tif,
                    order_reference: order.0,
                    live: true,
                };
                let m = ouch::Accepted::echoing(&f, echo);
                self.send_sequenced(now, s, m.as_bytes(), out);
            }
            Event::Rejected { tag, reason, .. } => {
                *self.counters.rejects.entry(reason).or_default() += 1;
                let (s, t) = untag(tag);
                let token = self.sessions[s].token(t);
                self.send_rejected(now, s, token, reason, out);
            }
            Event::Replaced {
                tag,
                order,
                instrument,
                side,
                price,
                qty,
                ..
            } => {
                let (s, t) = untag(tag);
                // The replaced token names no live order any more; the
                // replacement keeps its Firm and Capacity (a Replace Order
                // carries neither).
                let echo = answering
                    .previous
                    .and_then(|p| self.sessions[s].forget(&p))
                    .unwrap_or_default();
                let token = self.sessions[s].set_order(t, order, echo);
                let prev = answering.previous.unwrap_or(token);
                let f = ouch::OrderFields {
                    timestamp: ts,
                    token,
                    side,
                    qty,
                    symbol: self.symbol(instrument),
                    price,
                    tif: crate::types::Tif::Day,
                    order_reference: order.0,
                    live: true,
                };
                let m = ouch::Replaced::echoing(&f, prev, echo);
                self.send_sequenced(now, s, m.as_bytes(), out);
            }
            Event::Canceled {
                tag,
                decrement,
                remaining,
                reason,
                ..
            } => {
                let (s, t) = untag(tag);
                if remaining.is_zero() {
                    self.sessions[s].finished(t);
                }
                let token = self.sessions[s].token(t);
                self.send_sequenced(
                    now,
                    s,
                    ouch::Canceled::new(ts, token, decrement, ouch_cancel_code(reason)).as_bytes(),
                    out,
                );
            }
            Event::Executed {
                match_number,
                price,
                qty,
                taker,
                maker,
                ..
            } => {
                for (p, is_maker) in [(taker, false), (maker, true)] {
                    let (s, t) = untag(p.tag);
                    if s < self.sessions.len() {
                        if p.remaining.is_zero() {
                            self.sessions[s].finished(t);
                        }
                        let token = self.sessions[s].token(t);
                        self.send_sequenced(
                            now,
                            s,
                            ouch::Executed::new(ts, token, qty, price, is_maker, match_number)
                                .as_bytes(),
                            out,
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn symbol(&self, instrument: InstrumentId) -> Symbol {
        self.names
            .get(usize::from(instrument.0))
            .copied()
            .unwrap_or(Symbol::from_wire(*b"        "))
    }
}
