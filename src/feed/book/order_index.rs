//! Order reference -> pool index: the Robin Hood hash table behind every
//! lookup by order reference.
//!
//! Owns the slots, the hashing mode and the count of resting orders. It
//! maps keys to node indices and nothing else: it must not read or write
//! the nodes themselves, nor know about prices, levels or instruments.

use super::NIL;

#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    key: u64,
    /// Pool index, `NIL` when the slot is empty.
    node: u32,
}

const EMPTY_SLOT: Slot = Slot { key: 0, node: NIL };

/// How a reference picks its home slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HashMode {
    /// The low bits of the reference: dense references (tokex's arena
    /// slot + generation ids, NASDAQ's sequential ones) land each in its own
    /// slot, in the order the producer reuses them, which keeps hot orders
    /// in hot cache lines.
    LowBits,
    /// Multiplicative hashing of all 64 bits with a random odd multiplier,
    /// for references that are not dense (chosen for good once a probe
    /// runs longer than `MAX_PROBE`). Random, and drawn again if a probe
    /// still runs long: with a known multiplier, references crafted to
    /// share the product's top bits would make every add probe one
    /// cluster (quadratic on a hostile feed).
    Mixed,
}

/// Order reference -> pool index: open addressing with Robin Hood linear
/// probing (clusters stay sorted by home slot, so lookups stop early and a
/// deletion shifts back only as far as the next entry at home), at most
/// half full.
#[derive(Debug, Clone)]
pub(super) struct OrderIndex {
    pub(super) slots: Vec<Slot>,
    mask: usize,
    /// home = ((key * mul) >> shift) & mask: 1 and 0 for `LowBits`, a
    /// random odd multiplier and 64 - log2(capacity) for `Mixed`.
    mul: u64,
    shift: u32,
    pub(super) mode: HashMode,
    pub(super) len: usize,
}

impl OrderIndex {
    const MIN_CAPACITY: usize = 1 << 10;
    /// A probe longer than this in `LowBits` mode means the references are
    /// not dense: switch to `Mixed` for good. In `Mixed` mode a probe four
    /// times as long (at most half full, Robin Hood probes stay far
    /// shorter) draws a new multiplier.
    const MAX_PROBE: usize = 32;

    pub(super) fn with_capacity(orders: usize) -> OrderIndex {
        let cap = (orders * 2).next_power_of_two().max(Self::MIN_CAPACITY);
        let mut ix = OrderIndex {
            slots: Vec::new(),
            mask: 0,
            mul: 1,
            shift: 0,
            mode: HashMode::LowBits,
            len: 0,
        };
        ix.rebuild(cap, HashMode::LowBits);
        ix
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(self.mul) >> self.shift) as usize & self.mask
    }

    /// How far slot `pos` is from the home of what it holds.
    #[inline]
    fn distance(&self, pos: usize, key: u64) -> usize {
        pos.wrapping_sub(self.home(key)) & self.mask
    }

    /// The position of `key`, if present.
    #[inline]
    pub(super) fn find(&self, key: u64) -> Option<usize> {
        let mut pos = self.home(key);
        let mut dist = 0;
        loop {
            let s = self.slots[pos];
            if s.node == NIL || self.distance(pos, s.key) < dist {
                return None;
            }
            if s.key == key {
                return Some(pos);
            }
            pos = (pos + 1) & self.mask;
            dist += 1;
        }
    }

    #[inline]
    pub(super) fn node_at(&self, pos: usize) -> u32 {
        self.slots[pos].node
    }

    /// Inserts a key known to be absent.
    #[inline]
    pub(super) fn insert(&mut self, key: u64, node: u32) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.rebuild(self.slots.len() * 2, self.mode);
        }
        if !self.place(Slot { key, node }) {
            self.rebuild(self.slots.len(), HashMode::Mixed);
        }
        self.len += 1;
    }

    /// Robin Hood placement: an entry further from home takes the slot of
    /// one nearer to its own. Returns false if the probe ran long for the
    /// mode (the entry is placed anyway).
    #[inline]
    fn place(&mut self, mut cur: Slot) -> bool {
        let mut pos = self.home(cur.key);
        let mut dist = 0;
        let mut short = true;
        loop {
            let s = self.slots[pos];
            if s.node == NIL {
                self.slots[pos] = cur;
                return short;
            }
            let d = self.distance(pos, s.key);
            if d < dist {
                self.slots[pos] = cur;
                cur = s;
                dist = d;
            }
            pos = (pos + 1) & self.mask;
            dist += 1;
            if dist > Self::MAX_PROBE
                && (self.mode == HashMode::LowBits || dist > 4 * Self::MAX_PROBE)
            {
                short = false;
            }
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn rebuild(&mut self, cap: usize, mode: HashMode) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY_SLOT; cap]);
        self.mask = cap - 1;
        self.mode = mode;
        (self.mul, self.shift) = match mode {
            HashMode::LowBits => (1, 0),
            HashMode::Mixed => (random_multiplier(), 64 - cap.trailing_zeros()),
        };
        for s in old.into_iter().filter(|s| s.node != NIL) {
            // Long probes while rebuilding in LowBits mode are caught by the
            // next insert.
            self.place(s);
        }
    }

    /// Removes the key at `pos`, shifting the rest of its cluster back until
    /// an empty slot or an entry at its home.
    #[inline]
    pub(super) fn remove_at(&mut self, pos: usize) {
        let mut hole = pos;
        loop {
            let next = (hole + 1) & self.mask;
            let s = self.slots[next];
            if s.node == NIL || self.distance(next, s.key) == 0 {
                break;
            }
            self.slots[hole] = s;
            hole = next;
        }
        self.slots[hole] = EMPTY_SLOT;
        self.len -= 1;
    }

    pub(super) fn clear(&mut self) {
        self.slots.fill(EMPTY_SLOT);
        self.len = 0;
    }
}

/// A random odd multiplier (std's per-process random hash keys, mixed).
fn random_multiplier() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x7E4E_u64) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest distance from home in the table.
    fn longest_probe(ix: &OrderIndex) -> usize {
        (0..ix.slots.len())
            .filter(|&p| ix.slots[p].node != NIL)
            .map(|p| ix.distance(p, ix.slots[p].key))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn references_crafted_against_a_fixed_multiplier_do_not_pile_into_one_cluster() {
        // Against the golden-ratio multiplier tokex used: r * MUL sharing
        // the top 24 bits lands every r in one cluster at every size up
        // to 2^24 (each add then probed all of it).
        const MUL: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut inv = MUL;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(MUL.wrapping_mul(inv)));
        }
        assert_eq!(MUL.wrapping_mul(inv), 1);
        // 40 low-bit collisions switch the index to Mixed, then 20,000
        // crafted references.
        let mut keys: Vec<u64> = (1..=40u64).map(|k| k << 20).collect();
        keys.extend((1..=20_000u64).map(|j| inv.wrapping_mul((0xAB_CDEF << 40) | j)));
        let ix = index_keeps_keys_reachable(&keys);
        assert_eq!(ix.mode, HashMode::Mixed);
        assert!(
            longest_probe(&ix) <= 4 * OrderIndex::MAX_PROBE,
            "{}",
            longest_probe(&ix)
        );
        // And the multiplier is drawn, not fixed.
        assert_ne!(ix.mul, MUL);
    }

    /// Inserts `keys`, removes every third, checks the rest are found.
    fn index_keeps_keys_reachable(keys: &[u64]) -> OrderIndex {
        let mut ix = OrderIndex::with_capacity(0);
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!(ix.find(k), None, "{k} not yet inserted");
            ix.insert(k, n as u32);
        }
        for &k in keys.iter().step_by(3) {
            let p = ix.find(k).unwrap();
            ix.remove_at(p);
        }
        for (n, &k) in keys.iter().enumerate() {
            let found = ix.find(k).map(|p| ix.node_at(p));
            if n % 3 == 0 {
                assert_eq!(found, None, "{k}");
            } else {
                assert_eq!(found, Some(n as u32), "{k}");
            }
        }
        assert_eq!(ix.len, keys.len() - keys.len().div_ceil(3));
        ix
    }

    #[test]
    fn index_places_dense_references_at_home_and_finds_them_after_growth() {
        // tokex's own ids: arena slot in the low 32 bits, generation above.
        let keys: Vec<u64> = (0..5_000u64).map(|s| (((s % 7) + 1) << 32) | s).collect();
        let ix = index_keeps_keys_reachable(&keys);
        assert_eq!(ix.mode, HashMode::LowBits);
        assert!(ix.slots.len() >= 8_192, "grew to {}", ix.slots.len());
    }

    #[test]
    fn index_switches_to_mixed_hashing_when_references_collide_on_low_bits() {
        // Strided references share their low bits: one long cluster, until
        // the index notices and rehashes all 64 bits.
        let keys: Vec<u64> = (1..600u64).map(|k| k << 20).collect();
        let ix = index_keeps_keys_reachable(&keys);
        assert_eq!(ix.mode, HashMode::Mixed);
    }
}
