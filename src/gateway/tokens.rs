//! The tokens one session used today, each with its number (the order in
//! which they were claimed): answers "was this token used today, and as
//! which number?" for every new order.
//!
//! The set grows all day, and a hash table of millions of tokens misses the
//! cache (and the TLB) on every probe: that was the gateway's largest cost
//! per order. Clients almost always number their tokens in increasing order
//! (OUCH 4.2 only asks for day-unique tokens, but a counter is the usual way
//! to get them), so tokens that arrive above every token used so far are
//! appended to a sorted list: the check is one comparison with its last
//! entry, which stays in cache. Any other token (out of order, or a re-sent
//! request) is searched in that list and in a hash table of the out-of-order
//! ones. The answers do not depend on the order the tokens come in.

use std::collections::hash_map::{Entry, HashMap};

use crate::wire::ouch::{token_key, Token};

/// Today's tokens of one session.
#[derive(Default)]
pub(super) struct TokenIndex {
    /// Tokens claimed while above every earlier one, ascending (as
    /// big-endian integers, which orders them as their bytes), with their
    /// numbers. Its last key is the largest token used today.
    ascending: Vec<u128>,
    numbers: Vec<u32>,
    /// Every other token. Hashed with a per-process random seed
    /// (foldhash): a client cannot choose tokens that collide.
    others: HashMap<u128, u32, foldhash::fast::RandomState>,
}

impl TokenIndex {
    pub fn with_capacity(n: usize) -> TokenIndex {
        TokenIndex {
            ascending: Vec::with_capacity(n),
            numbers: Vec::with_capacity(n),
            others: HashMap::default(),
        }
    }

    /// Claims `token` as number `next` when it was not used today;
    /// otherwise returns the number it was claimed as.
    #[inline]
    pub fn claim(&mut self, token: &Token, next: u32) -> Result<(), u32> {
        let k = token_key(token);
        if self.ascending.last().is_none_or(|&last| k > last) {
            self.ascending.push(k);
            self.numbers.push(next);
            return Ok(());
        }
        if let Some(t) = self.find_ascending(k) {
            return Err(t);
        }
        match self.others.entry(k) {
            Entry::Occupied(used) => Err(*used.get()),
            Entry::Vacant(slot) => {
                slot.insert(next);
                Ok(())
            }
        }
    }

    /// The number `token` was claimed as today, if it was.
    pub fn get(&self, token: &Token) -> Option<u32> {
        let k = token_key(token);
        match self.ascending.last() {
            Some(&last) if k > last => None,
            None => None,
            Some(_) => self
                .find_ascending(k)
                .or_else(|| self.others.get(&k).copied()),
        }
    }

    fn find_ascending(&self, k: u128) -> Option<u32> {
        self.ascending
            .binary_search(&k)
            .ok()
            .map(|i| self.numbers[i])
    }

    /// Makes the sorted list's reserved memory resident (returns the bytes
    /// touched).
    pub fn prefault(&mut self) -> usize {
        crate::runtime::touch_spare_capacity(&mut self.ascending, 0)
            + crate::runtime::touch_spare_capacity(&mut self.numbers, 0)
    }

    pub fn clear(&mut self) {
        self.ascending.clear();
        self.numbers.clear();
        self.others.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap as Model;

    fn tok(s: &[u8]) -> Token {
        crate::wire::ouch::token(s).unwrap()
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
                let want = match model.get(&t) {
                    Some(&n) => Err(n),
                    None => {
                        model.insert(t, next);
                        Ok(())
                    }
                };
                prop_assert_eq!(ix.claim(&t, next), want);
                if want.is_ok() {
                    next += 1;
                }
            }
        }
    }
}
