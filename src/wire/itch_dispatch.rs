//! ITCH 5.0 dispatch four messages per jump: [`for_each`].
//!
//! In a realistic feed the next message's type is close to random (in
//! tokex's own output it changes from one message to the next in more than
//! half of them), so a jump on each message's type mispredicts about half
//! the time, and refilling the pipeline after it is most of what decoding
//! costs: the same messages sorted by type decode about three times faster.
//! [`for_each`] frames four messages, classifies each as Add, Executed,
//! Delete (the three most frequent types in tokex's feed, and with Replace
//! in NASDAQ's) or other, and makes one jump on the four classes together,
//! into one of 256 copies of the handler's code, each with its four types
//! known: a jump per four messages instead of one per message. A group of
//! four mispredicts more often than one message does, but not four times
//! as often, so there are fewer mispredictions per message (measured in
//! README, Performance, Codecs). The price is code size: the handler's
//! arm for each of the three classes is inlined in every group (768
//! places), so this suits a handler of a few instructions per type. The feed book's is larger, and rebuilds no faster through this
//! (README, Codecs): it uses [`super::itch::stream`], the plain iterator.

use super::itch::{self, AddOrder, Message, OrderDelete, OrderExecuted};
use super::DecodeError;

/// Messages per jump.
const K: usize = 4;
/// The classes, a base-`CLASSES` digit per message in a group's index.
const ADD: usize = 0;
const EXECUTED: usize = 1;
const DELETE: usize = 2;
const OTHER: usize = 3;
const CLASSES: usize = 4;
/// The jump table has one arm per group index (written out in `for_each`).
const GROUPS: usize = 256;
const _: () = assert!(CLASSES.pow(K as u32) == GROUPS);

/// A type byte's class.
static CLASS: [u8; 256] = {
    let mut c = [OTHER as u8; 256];
    c[itch::kind::ADD_ORDER as usize] = ADD as u8;
    c[itch::kind::ORDER_EXECUTED as usize] = EXECUTED as u8;
    c[itch::kind::ORDER_DELETE as usize] = DELETE as u8;
    c
};

/// The class of one message, by its type byte (an empty message is
/// other). The length is checked when the message is decoded as its class,
/// with the same error as [`Message::parse`] gives.
#[inline(always)]
fn class(m: &[u8]) -> usize {
    usize::from(CLASS[usize::from(m.first().copied().unwrap_or(0))])
}

/// One arm per group index; the last literal is `GROUPS - 2`, the wildcard
/// is `GROUPS - 1`.
macro_rules! jump {
    ($i:expr, $ms:expr, $f:expr; $($n:literal)*) => {
        match $i {
            $($n => group::<$n>($ms, $f),)*
            _ => group::<{ GROUPS - 1 }>($ms, $f),
        }
    };
}

/// Calls `f` with every message of a length-prefixed ITCH stream (NASDAQ's
/// file format, `itch.bin`, and the message blocks of a MoldUDP64 packet),
/// in order, with exactly what iterating [`itch::stream`]`(buf)` yields:
/// an unknown type is handed over as [`DecodeError::UnknownType`] and the
/// stream goes on; any other error is handed over last.
#[inline(always)]
pub fn for_each<'a>(buf: &'a [u8], mut f: impl FnMut(Result<Message<'a>, DecodeError>)) {
    let f = &mut f;
    let mut rest = buf;
    let mut next = Group::first(buf);
    while let Some(g) = next {
        // The next group is framed and classified before this one's jump:
        // when the jump was mispredicted, the next one's input is ready as
        // soon as the right path is fetched, instead of being recomputed
        // after the flush.
        next = Group::first(g.tail);
        let go_on = jump!(g.index, &g.ms, f;
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
            32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63
            64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95
            96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120 121 122 123 124 125 126 127
            128 129 130 131 132 133 134 135 136 137 138 139 140 141 142 143 144 145 146 147 148 149 150 151 152 153 154 155 156 157 158 159
            160 161 162 163 164 165 166 167 168 169 170 171 172 173 174 175 176 177 178 179 180 181 182 183 184 185 186 187 188 189 190 191
            192 193 194 195 196 197 198 199 200 201 202 203 204 205 206 207 208 209 210 211 212 213 214 215 216 217 218 219 220 221 222 223
            224 225 226 227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 250 251 252 253 254);
        if !go_on {
            return;
        }
        rest = g.tail;
    }
    // Fewer than four whole messages left: one at a time.
    for m in itch::stream(rest) {
        f(m);
    }
}

/// `K` whole messages at the front of a stream, their index in the jump
/// table, and what follows them.
struct Group<'a> {
    ms: [&'a [u8]; K],
    tail: &'a [u8],
    index: usize,
}

impl<'a> Group<'a> {
    #[inline(always)]
    fn first(mut b: &'a [u8]) -> Option<Group<'a>> {
        let mut ms: [&[u8]; K] = [&[]; K];
        let mut index = 0;
        for m in &mut ms {
            let [x, y, rest @ ..] = b else {
                return None;
            };
            let (msg, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes([*x, *y])))?;
            *m = msg;
            index = index * CLASSES + class(msg);
            b = rest;
        }
        Some(Group { ms, tail: b, index })
    }
}

/// The messages of the group with index `N`, each decoded as its class
/// (the first message is the most significant digit); false when the
/// stream ends (an error other than an unknown type).
#[inline(always)]
fn group<'a, const N: usize>(
    ms: &[&'a [u8]; K],
    f: &mut impl FnMut(Result<Message<'a>, DecodeError>),
) -> bool {
    let mut place = GROUPS / CLASSES;
    for m in ms {
        if !one(N / place % CLASSES, m, f) {
            return false;
        }
        place /= CLASSES;
    }
    true
}

/// Decodes `m` as class `c` (a constant once `group` is inlined, so one
/// arm is left) and hands it to `f`; false when the stream ends there.
#[inline(always)]
fn one<'a>(c: usize, m: &'a [u8], f: &mut impl FnMut(Result<Message<'a>, DecodeError>)) -> bool {
    // A view checks the length as `Message::parse` would, with its error.
    let r = match c {
        ADD => AddOrder::view(m).map(Message::AddOrder),
        EXECUTED => OrderExecuted::view(m).map(Message::OrderExecuted),
        DELETE => OrderDelete::view(m).map(Message::OrderDelete),
        _ => return other(m, f),
    };
    let go_on = r.is_ok();
    f(r);
    go_on
}

/// [`one`] for the other class, out of line: one copy of the whole parse
/// and of the handler's every arm, called from the groups holding such a
/// message (about 5 % of messages), instead of a copy in each of them,
/// which made the code and its compile time several times larger.
#[inline(never)]
fn other<'a>(m: &'a [u8], f: &mut impl FnMut(Result<Message<'a>, DecodeError>)) -> bool {
    let r = Message::parse(m);
    let go_on = matches!(r, Ok(_) | Err(DecodeError::UnknownType(_)));
    f(r);
    go_on
}
