//! A hash map from 128-bit keys that grows by a bounded amount of work per
//! insert, for tables that grow all day on the engine thread: no insert may
//! do work in proportion to the entries held. One hash table that doubles
//! rehashes every entry in one insert (0.16 to 0.27 s at 2^22 tokens; a
//! session's table of live orders stopped the exchange for 3.4–4.3 ms at
//! 57,344 orders and 59 ms at 917,504, measured); copying into the
//! doubled table a few entries per insert still allocates and frees a
//! table of up to hundreds of MiB in one insert (measured: up to 5 ms to
//! allocate, 10 to 60 ms to free). So the entries are spread over shards:
//! hash tables of [`SHARD_CAPACITY`] entries that never grow (extendible
//! hashing). Bits of a key's hash pick its shard through a directory, and
//! a full shard splits in two by one more bit. An insert moves at most one
//! shard's entries into two new shard-sized tables, and a few times a day
//! doubles the directory (4 bytes per shard or so). Removing leaves shards
//! as they are (a shard emptied by removals is filled again by inserts).
//!
//! Owns the shards and the directory; what keys and values mean is its
//! users' (the token index's out-of-order tokens, a session's live orders).

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

/// Entries of a shard: its table has 512 buckets for them (it keeps
/// 1/8 empty), 17 KiB for a token's number. Splitting a full shard moves
/// this many entries, the most work one insert does (microseconds); fewer
/// would split more often and grow the directory.
pub(crate) const SHARD_CAPACITY: usize = 448;

/// A key's shard is picked by hash bits from this one up: a shard's
/// table (hashbrown's SwissTable) takes a bucket from the low bits of
/// the same hash and a tag from the top seven, and both must vary among one
/// shard's keys.
const DIRECTORY_SHIFT: u32 = 32;

/// The most hash bits the directory uses (the ones between the bucket and
/// the tag bits). A shard whose keys share them all, which a random seed
/// makes as good as impossible, grows in place instead of splitting.
const MAX_DEPTH: u32 = 24;

/// A per-process random seed (foldhash): a client cannot choose keys that
/// collide, or that fall into one shard.
pub(crate) type Seed = foldhash::fast::RandomState;

/// Keys to values, in shards (see the module doc). Empty, it holds no
/// memory. (The fields are the crate's to read: the token index's tests
/// check the directory's invariants after every claim.)
pub(crate) struct Sharded<V> {
    pub(crate) hasher: Seed,
    /// Indexed by the low `depth` bits of a key's directory bits: the shard
    /// that holds it. Empty while `shards` is.
    pub(crate) directory: Vec<u32>,
    pub(crate) depth: u32,
    pub(crate) shards: Vec<Shard<V>>,
    /// The entries a shard is made for: [`SHARD_CAPACITY`], but a few in
    /// tests, so that they split shards often.
    pub(crate) shard_capacity: usize,
}

pub(crate) struct Shard<V> {
    /// Keys and values, placed by the key's hash with `Sharded::hasher`.
    pub(crate) table: HashTable<(u128, V)>,
    /// The low directory bits all its keys share: it is named by the
    /// `1 << (Sharded::depth - depth)` directory entries that end with them.
    pub(crate) depth: u32,
}

impl<V> Default for Sharded<V> {
    fn default() -> Sharded<V> {
        Sharded::with_shard_capacity(SHARD_CAPACITY)
    }
}

impl<V> Shard<V> {
    fn new(capacity: usize, depth: u32) -> Shard<V> {
        Shard {
            table: HashTable::with_capacity(capacity),
            depth,
        }
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &u128> + '_ {
        self.table.iter().map(|(k, _)| k)
    }
}

/// Where a key is (its shard and hash), or the shard it goes into.
enum Slot {
    Here(usize, u64),
    Free(usize, u64),
}

/// The hash bits that pick a key's shard, from [`DIRECTORY_SHIFT`] up.
fn directory_bits(h: u64) -> usize {
    (h >> DIRECTORY_SHIFT) as usize
}

impl<V> Sharded<V> {
    pub(crate) fn with_shard_capacity(shard_capacity: usize) -> Sharded<V> {
        Sharded {
            hasher: Default::default(),
            directory: Vec::new(),
            depth: 0,
            shards: Vec::new(),
            shard_capacity,
        }
    }

    /// The entries a new shard's table holds before it is full (its
    /// capacity rounded up as the table rounds it: for tests that check
    /// no shard grew in place).
    #[cfg(test)]
    pub(crate) fn fresh_shard_capacity(&self) -> usize {
        Shard::<V>::new(self.shard_capacity, 0).table.capacity()
    }

    pub(crate) fn shard_of(&self, h: u64) -> usize {
        self.directory[directory_bits(h) & ((1 << self.depth) - 1)] as usize
    }

    #[inline]
    pub(crate) fn get(&self, k: u128) -> Option<&V> {
        if self.shards.is_empty() {
            return None;
        }
        let h = self.hasher.hash_one(k);
        let shard = &self.shards[self.shard_of(h)];
        shard.table.find(h, |e| e.0 == k).map(|(_, v)| v)
    }

    /// Inserts `k` with `v` unless `k` is here; if it is, leaves it and
    /// returns its value.
    pub(crate) fn try_insert(&mut self, k: u128, v: V) -> Result<(), &V> {
        match self.slot(k) {
            Slot::Here(s, h) => {
                let shard = &self.shards[s];
                Err(shard
                    .table
                    .find(h, |e| e.0 == k)
                    .map(|(_, v)| v)
                    .expect("here"))
            }
            Slot::Free(s, h) => {
                self.insert_at(s, h, k, v);
                Ok(())
            }
        }
    }

    /// Sets `k`'s value to `v`; returns the value it had, if any.
    #[inline]
    pub(crate) fn insert(&mut self, k: u128, v: V) -> Option<V> {
        let h = self.hasher.hash_one(k);
        if !self.shards.is_empty() {
            let s = self.shard_of(h);
            if !self.is_full(s) {
                // One probe finds the key or the slot for it.
                let hasher = self.hasher;
                let entry = self.shards[s]
                    .table
                    .entry(h, |e| e.0 == k, |e| hasher.hash_one(e.0));
                return match entry {
                    Entry::Occupied(mut e) => Some(std::mem::replace(&mut e.get_mut().1, v)),
                    Entry::Vacant(e) => {
                        e.insert((k, v));
                        None
                    }
                };
            }
        }
        match self.slot(k) {
            Slot::Here(s, h) => {
                let (_, old) = self.shards[s]
                    .table
                    .find_mut(h, |e| e.0 == k)
                    .expect("here");
                Some(std::mem::replace(old, v))
            }
            Slot::Free(s, h) => {
                self.insert_at(s, h, k, v);
                None
            }
        }
    }

    /// Where `k` is, or the shard it goes into (split first if it was full),
    /// with its hash.
    #[inline]
    fn slot(&mut self, k: u128) -> Slot {
        let h = self.hasher.hash_one(k);
        if self.shards.is_empty() {
            self.shards.push(Shard::new(self.shard_capacity, 0));
            self.directory.push(0);
        }
        let mut s = self.shard_of(h);
        if self.shards[s].table.find(h, |e| e.0 == k).is_some() {
            return Slot::Here(s, h);
        }
        // A split leaves the key's half full only when every key of the
        // shard went that way too (for a full shard of hundreds, never).
        while self.is_full(s) && self.shards[s].depth < MAX_DEPTH {
            self.split(s, h);
            s = self.shard_of(h);
        }
        Slot::Free(s, h)
    }

    /// Inserts `k` (hash `h`), which is not here, into shard `s`.
    #[inline]
    fn insert_at(&mut self, s: usize, h: u64, k: u128, v: V) {
        let hasher = self.hasher;
        self.shards[s]
            .table
            .insert_unique(h, (k, v), |e| hasher.hash_one(e.0));
    }

    #[inline]
    pub(crate) fn remove(&mut self, k: u128) -> Option<V> {
        if self.shards.is_empty() {
            return None;
        }
        let h = self.hasher.hash_one(k);
        let s = self.shard_of(h);
        let entry = self.shards[s].table.find_entry(h, |e| e.0 == k).ok()?;
        Some(entry.remove().0 .1)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.shards
            .iter()
            .flat_map(|s| s.table.iter().map(|(_, v)| v))
    }

    fn is_full(&self, s: usize) -> bool {
        let t = &self.shards[s].table;
        t.len() == t.capacity()
    }

    /// Splits shard `s` (which holds hash `h`) in two by its next directory
    /// bit: the keys with that bit set move to a new shard, and the
    /// directory entries that end with it name the new shard.
    fn split(&mut self, s: usize, h: u64) {
        let depth = self.shards[s].depth;
        if depth == self.depth {
            // Every entry names the same shard as its twin one bit up.
            self.directory.extend_from_within(..);
            self.depth += 1;
        }
        let bit = 1 << depth;
        let mut low = Shard::new(self.shard_capacity, depth + 1);
        let mut high = Shard::new(self.shard_capacity, depth + 1);
        let hasher = self.hasher;
        let rehash = |e: &(u128, V)| hasher.hash_one(e.0);
        for e in std::mem::replace(&mut self.shards[s].table, HashTable::new()) {
            let h = hasher.hash_one(e.0);
            let half = if directory_bits(h) & bit == 0 {
                &mut low
            } else {
                &mut high
            };
            half.table.insert_unique(h, e, rehash);
        }
        self.shards[s] = low;
        let upper = u32::try_from(self.shards.len()).expect("fewer shards than u32 keys");
        self.shards.push(high);
        let first = (directory_bits(h) & (bit - 1)) | bit;
        for i in (first..self.directory.len()).step_by(bit << 1) {
            self.directory[i] = upper;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.shards.clear();
        self.directory.clear();
        self.depth = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        TryInsert(u16, u32),
        Remove(u16),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 2000, v)),
            4 => (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::TryInsert(k % 2000, v)),
            4 => any::<u16>().prop_map(|k| Op::Remove(k % 2000)),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Whatever the inserts, removals and clears, with shards of 3 that
        /// split all the time, the map answers as a plain `HashMap` does.
        #[test]
        fn answers_like_a_hash_map_while_shards_split(ops in prop::collection::vec(op(), 1..600)) {
            let mut m: Sharded<u32> = Sharded::with_shard_capacity(3);
            let mut model = std::collections::HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(m.insert(u128::from(k), v), model.insert(k, v));
                    }
                    Op::TryInsert(k, v) => {
                        let want = match model.get(&k) {
                            Some(&old) => Err(old),
                            None => {
                                model.insert(k, v);
                                Ok(())
                            }
                        };
                        prop_assert_eq!(m.try_insert(u128::from(k), v).map_err(|&old| old), want);
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(m.remove(u128::from(k)), model.remove(&k));
                    }
                    Op::Clear => {
                        m.clear();
                        model.clear();
                    }
                }
            }
            for k in 0..2000u16 {
                prop_assert_eq!(m.get(u128::from(k)), model.get(&k));
            }
            let mut values: Vec<u32> = m.values().copied().collect();
            let mut want: Vec<u32> = model.values().copied().collect();
            values.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(values, want);
        }
    }

    #[test]
    fn no_shard_grows_in_place_and_an_insert_splits_at_most_one() {
        let mut m: Sharded<u64> = Sharded::default();
        let capacity = m.fresh_shard_capacity();
        for i in 0..100_000u64 {
            let before = m.shards.len();
            m.insert(u128::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)), i);
            assert!(m.shards.len() <= before + 1, "insert {i}");
        }
        assert!(m.shards.iter().all(|s| s.table.capacity() == capacity));
        assert_eq!(m.values().count(), 100_000);
    }
}
