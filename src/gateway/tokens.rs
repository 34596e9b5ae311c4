//! The tokens one session used today, each with its number (the order in
//! which they were claimed): answers "was this token used today, and as
//! which number?" for every new order. It owns the session's token lists
//! and nothing else: what a number stands for (the request that claimed it)
//! and the cap on tokens a day are the session's.
//!
//! The set grows all day, and a hash table of millions of tokens misses the
//! cache (and the TLB) on every probe: that was the gateway's largest cost
//! per order. Clients almost always number their tokens in increasing order
//! (OUCH 4.2 only asks for day-unique tokens, but a counter is the usual way
//! to get them), so tokens that arrive above every token used so far are
//! appended to a sorted list: the check is one comparison with its last
//! entry, which stays in cache. The list is kept in chunks that never move,
//! so growing it copies nothing. Any other token (out of order, or a re-sent
//! request) is searched in that list and in a hash table of the out-of-order
//! ones. The answers do not depend on the order the tokens come in.
//!
//! The out-of-order tokens are in a [`Sharded`] map (extendible hashing),
//! which grows by a bounded amount of work per claim, because claims run
//! on the engine thread: no claim may do work in proportion to the tokens
//! used. Tokens in order never reach it.

use crate::sharded::Sharded;
use crate::wire::ouch::{token_key, Token};

/// Tokens in order a chunk holds: 64 KiB of tokens and 16 KiB of numbers.
/// The sorted list grows a chunk at a time, so no claim copies it.
const CHUNK: usize = 4096;

/// Today's tokens of one session.
#[derive(Default)]
pub(super) struct TokenIndex {
    /// Tokens claimed while above every earlier one. Its last key is the
    /// largest token used today.
    ascending: Ascending,
    /// Every other token.
    others: Sharded<u32>,
}

impl TokenIndex {
    pub fn with_capacity(n: usize) -> TokenIndex {
        TokenIndex {
            ascending: Ascending::with_capacity(n),
            others: Sharded::default(),
        }
    }

    /// Claims `token` as number `next` when it was not used today;
    /// otherwise returns the number it was claimed as.
    #[inline]
    pub fn claim(&mut self, token: &Token, next: u32) -> Result<(), u32> {
        let k = token_key(token);
        if self.ascending.last().is_none_or(|last| k > last) {
            self.ascending.push(k, next);
            return Ok(());
        }
        self.claim_out_of_order(k, next)
    }

    /// A token not above every one used today: a re-sent one, or one out
    /// of order (rare: kept out of the claim's inlined path).
    #[cold]
    #[inline(never)]
    fn claim_out_of_order(&mut self, k: u128, next: u32) -> Result<(), u32> {
        if let Some(t) = self.ascending.find(k) {
            return Err(t);
        }
        self.others.try_insert(k, next).map_err(|&used| used)
    }

    /// The number `token` was claimed as today, if it was.
    pub fn get(&self, token: &Token) -> Option<u32> {
        let k = token_key(token);
        match self.ascending.last() {
            Some(last) if k > last => None,
            None => None,
            Some(_) => self
                .ascending
                .find(k)
                .or_else(|| self.others.get(k).copied()),
        }
    }

    /// Makes the sorted list's reserved memory resident (returns the bytes
    /// touched).
    pub fn prefault(&mut self) -> usize {
        self.ascending.prefault()
    }

    pub fn clear(&mut self) {
        self.ascending.clear();
        self.others.clear();
    }
}

/// The tokens in order, ascending (as big-endian integers, which orders
/// them as their bytes), with their numbers, in chunks of [`CHUNK`] that
/// never move. A list that doubled copied itself in the claim that
/// doubled it: 0.6 to 20 ms at 65,536, 262,144 and 1,048,576 tokens
/// (measured); a new chunk is one allocation, its pages faulted in as it
/// fills.
#[derive(Default)]
struct Ascending {
    /// Those before `used` hold tokens (all full but the last, none
    /// empty); the rest are reserved.
    chunks: Vec<Chunk>,
    used: usize,
}

struct Chunk {
    keys: Vec<u128>,
    numbers: Vec<u32>,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            keys: Vec::with_capacity(CHUNK),
            numbers: Vec::with_capacity(CHUNK),
        }
    }

    /// Its largest token (a chunk in use is never empty).
    fn last(&self) -> u128 {
        self.keys.last().copied().unwrap_or_default()
    }
}

impl Ascending {
    /// With chunks for `n` tokens reserved.
    fn with_capacity(n: usize) -> Ascending {
        Ascending {
            chunks: (0..n.div_ceil(CHUNK)).map(|_| Chunk::new()).collect(),
            used: 0,
        }
    }

    #[inline]
    fn last(&self) -> Option<u128> {
        let last = self.used.checked_sub(1)?;
        Some(self.chunks[last].last())
    }

    /// Appends `k`, larger than every token here.
    #[inline]
    fn push(&mut self, k: u128, number: u32) {
        let chunk = match self.chunks[..self.used].last_mut() {
            Some(chunk) if chunk.keys.len() < CHUNK => chunk,
            _ => self.next_chunk(),
        };
        chunk.keys.push(k);
        chunk.numbers.push(number);
    }

    /// Once per [`CHUNK`] tokens: the next chunk in use, reserved or new.
    #[cold]
    #[inline(never)]
    fn next_chunk(&mut self) -> &mut Chunk {
        if self.used == self.chunks.len() {
            self.chunks.push(Chunk::new());
        }
        self.used += 1;
        &mut self.chunks[self.used - 1]
    }

    /// The number `k` was claimed as, if it is here.
    fn find(&self, k: u128) -> Option<u32> {
        let used = &self.chunks[..self.used];
        let chunk = used.get(used.partition_point(|c| c.last() < k))?;
        let i = chunk.keys.binary_search(&k).ok()?;
        Some(chunk.numbers[i])
    }

    /// Makes the reserved chunks resident; returns the bytes touched.
    fn prefault(&mut self) -> usize {
        self.chunks
            .iter_mut()
            .map(|c| {
                crate::runtime::touch_spare_capacity(&mut c.keys, 0)
                    + crate::runtime::touch_spare_capacity(&mut c.numbers, 0)
            })
            .sum()
    }

    /// Forgets every token; the chunks stay reserved.
    fn clear(&mut self) {
        for c in &mut self.chunks[..self.used] {
            c.keys.clear();
            c.numbers.clear();
        }
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sharded::SHARD_CAPACITY;
    use proptest::prelude::*;
    use std::collections::HashMap as Model;
    use std::hash::BuildHasher;

    fn tok(s: &[u8]) -> Token {
        crate::wire::ouch::token(s).unwrap()
    }

    /// Tokens `T` + 13 digits of `v`: they order like `v`.
    fn numbered(v: u64) -> Token {
        tok(format!("T{v:013}").as_bytes())
    }

    /// An index whose shards hold `n` entries (a table made for 3, 7,
    /// 14, ... entries holds exactly that many before it would grow).
    fn with_shards_of(n: usize) -> TokenIndex {
        TokenIndex {
            others: Sharded::with_shard_capacity(n),
            ..TokenIndex::with_capacity(4)
        }
    }

    /// Claims like [`TokenIndex::claim`], checking what the claim did to
    /// the shards: no shard grew in place (each split moved at most one
    /// shard's capacity) and the directory names each shard by the entries
    /// its depth says. Returns the answer, the shards split, and the
    /// entries moved (exact for one split).
    fn claim_counted(ix: &mut TokenIndex, t: &Token, next: u32) -> (Result<(), u32>, usize, usize) {
        let o = &ix.others;
        let before: Vec<(u32, usize)> = o.shards.iter().map(|s| (s.depth, s.table.len())).collect();
        let r = ix.claim(t, next);
        let o = &ix.others;
        let capacity = o.fresh_shard_capacity();
        // Per shard: the directory entries naming it, and the first one.
        let mut named = vec![(0usize, 0usize); o.shards.len()];
        assert_eq!(
            o.directory.len(),
            (1 << o.depth) * usize::from(!o.shards.is_empty())
        );
        for (i, &s) in o.directory.iter().enumerate() {
            let n = &mut named[s as usize];
            if n.0 == 0 {
                n.1 = i;
            }
            n.0 += 1;
            // Entries naming one shard share its low bits.
            let mask = (1 << o.shards[s as usize].depth) - 1;
            assert_eq!(i & mask, n.1 & mask);
        }
        for (s, shard) in o.shards.iter().enumerate() {
            assert_eq!(shard.table.capacity(), capacity, "shard {s} grew in place");
            assert_eq!(named[s].0, 1 << (o.depth - shard.depth), "shard {s}");
        }
        // (The first shard is made, not split.)
        let splits = o.shards.len().saturating_sub(before.len().max(1));
        let moved = before
            .iter()
            .zip(&o.shards)
            .filter(|(b, s)| b.0 != s.depth)
            .map(|(b, _)| b.1)
            .sum();
        (r, splits, moved)
    }

    /// What a plain map answers to claiming `t` as `next` (recording it
    /// when new).
    fn model_claim(model: &mut Model<Token, u32>, t: Token, next: u32) -> Result<(), u32> {
        match model.get(&t) {
            Some(&n) => Err(n),
            None => {
                model.insert(t, next);
                Ok(())
            }
        }
    }

    /// Every token of every shard is where the directory looks for it.
    fn assert_findable(ix: &TokenIndex) {
        let o = &ix.others;
        for (s, shard) in o.shards.iter().enumerate() {
            for &k in shard.keys() {
                assert_eq!(o.shard_of(o.hasher.hash_one(k)), s);
            }
        }
    }

    #[test]
    fn increasing_tokens_are_new_and_a_repeat_finds_its_number() {
        let mut ix = TokenIndex::with_capacity(4);
        for (n, t) in [b"A0001", b"A0002", b"A0003"].iter().enumerate() {
            assert_eq!(ix.claim(&tok(*t), n as u32), Ok(()));
        }
        assert_eq!(ix.claim(&tok(b"A0002"), 9), Err(1));
        assert_eq!(ix.get(&tok(b"A0003")), Some(2));
        assert_eq!(ix.get(&tok(b"A0004")), None);
    }

    #[test]
    fn tokens_in_order_across_chunks_are_found_and_their_chunks_never_move() {
        for reserved in [0, CHUNK, 2 * CHUNK + 1] {
            let mut ix = TokenIndex::with_capacity(reserved);
            let n = 3 * CHUNK as u64 + 5;
            // Even numbers in order; the odd ones between go to the shards.
            ix.claim(&numbered(0), 0).unwrap();
            let first = ix.ascending.chunks[0].keys.as_ptr();
            for v in 1..n {
                assert_eq!(ix.claim(&numbered(2 * v), v as u32), Ok(()));
            }
            assert_eq!(ix.ascending.chunks[0].keys.as_ptr(), first, "not copied");
            assert_eq!(ix.ascending.used, 4);
            assert!(ix.others.shards.is_empty());
            for v in [
                0,
                1,
                CHUNK as u64 - 1,
                CHUNK as u64,
                2 * CHUNK as u64,
                n - 1,
            ] {
                assert_eq!(ix.get(&numbered(2 * v)), Some(v as u32));
                assert_eq!(ix.claim(&numbered(2 * v), 0), Err(v as u32));
                assert_eq!(ix.get(&numbered(2 * v + 1)), None);
            }
            assert_eq!(ix.claim(&numbered(2 * CHUNK as u64 + 1), 99), Ok(()));
            assert_eq!(ix.get(&numbered(2 * CHUNK as u64 + 1)), Some(99));
            assert_eq!(ix.get(&numbered(2 * n)), None);
            // Cleared, the chunks stay reserved and fill again from the first.
            ix.clear();
            assert_eq!((ix.ascending.used, ix.ascending.chunks.len()), (0, 4));
            assert_eq!(ix.get(&numbered(2)), None);
            assert_eq!(ix.claim(&numbered(2), 7), Ok(()));
            assert_eq!(ix.ascending.chunks[0].keys.as_ptr(), first);
            assert_eq!(ix.get(&numbered(2)), Some(7));
        }
    }

    #[test]
    fn out_of_order_tokens_are_claimed_once() {
        let mut ix = TokenIndex::with_capacity(4);
        assert_eq!(ix.claim(&tok(b"B5"), 0), Ok(()));
        assert_eq!(ix.claim(&tok(b"B3"), 1), Ok(()));
        assert_eq!(ix.claim(&tok(b"B3"), 2), Err(1));
        assert_eq!(ix.claim(&tok(b"B5"), 2), Err(0));
        assert_eq!(ix.claim(&tok(b"B4"), 2), Ok(()));
        assert_eq!(ix.get(&tok(b"B4")), Some(2));
        // A shorter token is padded with spaces, which sort below digits.
        assert_eq!(ix.claim(&tok(b"B"), 3), Ok(()));
        assert_eq!(ix.get(&tok(b"B")), Some(3));
    }

    #[test]
    fn tokens_in_order_never_reach_the_shards() {
        let mut ix = TokenIndex::with_capacity(4);
        for v in 0..1000 {
            assert_eq!(ix.claim(&numbered(v), v as u32), Ok(()));
        }
        assert_eq!(ix.claim(&numbered(7), 1000), Err(7));
        assert_eq!(ix.get(&numbered(7)), Some(7));
        assert!(ix.others.shards.is_empty() && ix.others.directory.is_empty());
    }

    #[test]
    fn a_claim_moves_at_most_one_shard() {
        const N: u64 = 20_000;
        let mut ix = TokenIndex::with_capacity(4);
        assert_eq!(ix.claim(&tok(b"Z"), 0), Ok(()));
        let mut splits = 0;
        for i in 1..N {
            let v = i.wrapping_mul(0x9E37_79B1) % N;
            let (r, split, moved) = claim_counted(&mut ix, &numbered(v), i as u32);
            assert_eq!(r, Ok(()));
            assert!(split <= 1, "claim {i} split {split} shards");
            // A shard splits when full, and only then.
            assert_eq!(moved, split * SHARD_CAPACITY, "claim {i}");
            splits += split;
        }
        assert_findable(&ix);
        // At least 20_000 / 448 shards (about 64: extendible hashing fills
        // shards to ln 2 on average).
        assert!((44..90).contains(&splits), "{splits}");
        assert!(ix.others.depth >= 6, "{}", ix.others.depth);
    }

    #[test]
    fn tokens_are_found_after_every_claim_while_shards_split() {
        const N: u64 = 1500;
        let mut ix = with_shards_of(3);
        assert_eq!(ix.claim(&tok(b"Z"), 0), Ok(()));
        let order: Vec<u64> = (0..N).map(|i| i.wrapping_mul(0x9E37_79B1) % N).collect();
        for (i, &v) in order.iter().enumerate() {
            let n = i as u32 + 1;
            assert_eq!(claim_counted(&mut ix, &numbered(v), n).0, Ok(()));
            // A re-sent token, found wherever it is now.
            let again = order[i / 2];
            assert_eq!(ix.claim(&numbered(again), 0), Err(i as u32 / 2 + 1));
            for (j, &w) in order.iter().enumerate() {
                let want = (j <= i).then_some(j as u32 + 1);
                assert_eq!(ix.get(&numbered(w)), want, "token {w} after claim {i}");
            }
        }
        assert_findable(&ix);
        assert!(ix.others.shards.len() > 300, "{}", ix.others.shards.len());
    }

    #[test]
    fn clear_forgets_every_shard() {
        let mut ix = with_shards_of(3);
        assert_eq!(ix.claim(&tok(b"Z"), 0), Ok(()));
        for v in 1..100 {
            assert_eq!(ix.claim(&numbered(1000 - v), v as u32), Ok(()));
        }
        assert!(ix.others.depth > 2);
        ix.clear();
        let o = &ix.others;
        assert!(o.shards.is_empty() && o.directory.is_empty() && o.depth == 0);
        for v in 0..100 {
            assert_eq!(ix.get(&numbered(1000 - v)), None);
        }
        assert_eq!(ix.get(&tok(b"Z")), None);
        // And fills again as if new.
        assert_eq!(ix.claim(&tok(b"Z"), 0), Ok(()));
        for v in 1..100 {
            assert_eq!(
                claim_counted(&mut ix, &numbered(1000 - v), v as u32).0,
                Ok(())
            );
        }
        for v in 1..100 {
            assert_eq!(ix.get(&numbered(1000 - v)), Some(v as u32));
        }
        assert_findable(&ix);
    }

    /// Claims `tokens` (numbered from 1) one at a time with `claim`, and
    /// prints the worst claims with the page faults and involuntary context
    /// switches during each (a switch is the machine, not the claim), and
    /// the worst claims without them.
    fn print_worst_claims(tokens: &[Token], mut claim: impl FnMut(&Token, u32) -> Result<(), u32>) {
        use crate::runtime::ThreadUsage;
        use std::time::Instant;
        // (ns, claim, page faults, involuntary switches), made resident
        // first so that writing it faults nowhere.
        let mut times = vec![(0u64, 0usize, 0u64, 0u64); tokens.len()];
        let mut before = ThreadUsage::current();
        let all = Instant::now();
        for (i, t) in tokens.iter().enumerate() {
            let t0 = Instant::now();
            let r = claim(t, i as u32 + 1);
            let ns = t0.elapsed().as_nanos() as u64;
            let after = ThreadUsage::current();
            let u = after.since(&before);
            before = after;
            times[i] = (
                ns,
                i + 1,
                u.minor_faults + u.major_faults,
                u.involuntary_switches,
            );
            assert_eq!(r, Ok(()));
        }
        let all = all.elapsed();
        let over = |ns: u64| times.iter().filter(|t| t.0 > ns).count();
        println!(
            "  {} claims: {:.1} ns mean (with the clock and getrusage reads), over 10 us: {}, over 100 us: {}, over 1 ms: {}",
            times.len(),
            all.as_nanos() as f64 / times.len() as f64,
            over(10_000),
            over(100_000),
            over(1_000_000),
        );
        times.sort_unstable_by(|a, b| b.cmp(a));
        println!(
            "  99.99th percentile {:.2} us, 99.999th {:.2} us",
            times[times.len() / 10_000].0 as f64 / 1e3,
            times[times.len() / 100_000].0 as f64 / 1e3
        );
        let show = |(ns, at, faults, switches): &(u64, usize, u64, u64)| {
            println!(
                "  {:>10.1} us at claim {at}: {faults} page faults, {switches} involuntary switches",
                *ns as f64 / 1e3
            )
        };
        times[..8].iter().for_each(show);
        println!("  worst without a context switch:");
        times.iter().filter(|t| t.3 == 0).take(3).for_each(show);
        println!("  worst without a context switch or a page fault:");
        times
            .iter()
            .filter(|t| t.2 + t.3 == 0)
            .take(3)
            .for_each(show);
    }

    /// The worst single claim while 2^22 tokens go out of order (every one
    /// below the first), and the mean claim in order. Timings, so not part
    /// of the suite: run it in release mode and read what it prints:
    /// `cargo test --release --lib gateway::tokens::tests::claim_times -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn claim_times() {
        use std::hint::black_box;
        use std::time::Instant;
        const N: u64 = 1 << 22;
        // A permutation of 0..N (an odd multiplier modulo a power of two).
        let shuffled: Vec<Token> = (0..N - 1)
            .map(|i| numbered(i.wrapping_mul(0x9E37_79B1) & (N - 1)))
            .collect();
        let mut ix = TokenIndex::with_capacity(1 << 16);
        assert_eq!(ix.claim(&tok(b"Z"), 0), Ok(()));
        println!("out of order, below the first token:");
        print_worst_claims(&shuffled, |t, n| ix.claim(t, n));
        println!(
            "  {} shards, a directory of {}",
            ix.others.shards.len(),
            ix.others.directory.len()
        );
        // A lookup of every token answers like the map of what was claimed.
        for (i, t) in shuffled.iter().enumerate() {
            assert_eq!(ix.get(t), Some(i as u32 + 1));
        }
        drop(ix);

        let ascending: Vec<Token> = (0..N).map(numbered).collect();
        let mut worst = (0u128, 0usize);
        let mut ix = TokenIndex::with_capacity(1 << 16);
        for (i, t) in ascending.iter().enumerate() {
            let t0 = Instant::now();
            let r = ix.claim(t, i as u32);
            worst = worst.max((t0.elapsed().as_nanos(), i));
            assert_eq!(r, Ok(()));
        }
        println!(
            "in order, {N} claims from 2^16 reserved: worst {:.1} us at claim {} (the sorted list grows a chunk at a time)",
            worst.0 as f64 / 1e3,
            worst.1
        );
        for reserved in [1 << 16, N as usize] {
            let mut means = Vec::new();
            for _ in 0..7 {
                let mut ix = TokenIndex::with_capacity(reserved);
                ix.prefault();
                let t0 = Instant::now();
                for (i, t) in ascending.iter().enumerate() {
                    let _ = black_box(ix.claim(black_box(t), i as u32));
                }
                means.push(t0.elapsed().as_nanos() as f64 / N as f64);
            }
            means.sort_by(f64::total_cmp);
            println!(
                "in order, {N} claims, {reserved} reserved and prefaulted: mean per claim {:.2} ns (median of 7, min {:.2}, max {:.2})",
                means[3], means[0], means[6]
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Claims and lookups of tokens mostly out of order, in shards of
        /// a few entries so that they split many times (and the directory
        /// doubles), answer like a plain map.
        #[test]
        fn answers_like_a_map_while_shards_split(
            shard in prop_oneof![Just(3usize), Just(7), Just(14)],
            picks in proptest::collection::vec((0u32..3000, 0u8..8), 1..2000),
        ) {
            let mut ix = with_shards_of(shard);
            let mut model: Model<Token, u32> = Model::new();
            let mut next = 0u32;
            for (i, (p, what)) in picks.into_iter().enumerate() {
                // Below the first token mostly; now and then above every
                // token so far (into the sorted list).
                let v = if what == 0 { 3000 + i as u32 } else { p };
                let t = numbered(u64::from(v));
                if what >= 5 {
                    prop_assert_eq!(ix.get(&t), model.get(&t).copied());
                    continue;
                }
                let want = model_claim(&mut model, t, next);
                prop_assert_eq!(claim_counted(&mut ix, &t, next).0, want);
                if want.is_ok() {
                    next += 1;
                }
            }
            for (t, &n) in &model {
                prop_assert_eq!(ix.get(t), Some(n));
            }
            assert_findable(&ix);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Any order of claims gives the answers of a plain map.
        #[test]
        fn answers_like_a_map(picks in proptest::collection::vec((0u8..40, any::<bool>()), 1..300)) {
            let mut ix = TokenIndex::with_capacity(8);
            let mut model: Model<Token, u32> = Model::new();
            let mut next = 0u32;
            for (i, (p, lookup)) in picks.into_iter().enumerate() {
                // Mostly increasing tokens with some from anywhere.
                let v = if i % 3 == 0 { u32::from(p) } else { i as u32 * 2 };
                let t = tok(format!("T{v:06}").as_bytes());
                if lookup {
                    prop_assert_eq!(ix.get(&t), model.get(&t).copied());
                    continue;
                }
                let want = model_claim(&mut model, t, next);
                prop_assert_eq!(ix.claim(&t, next), want);
                if want.is_ok() {
                    next += 1;
                }
            }
        }
    }
}
