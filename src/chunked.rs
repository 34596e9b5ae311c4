//! A list that grows all day on the engine thread without ever copying
//! itself: entries go into chunks of [`CHUNK`] that never move, so a push
//! is at most one allocation, never a copy of everything before it. (A
//! `Vec` that doubles copies itself in the push that doubles it: 24 MB at
//! a million 24-byte entries, milliseconds on one order.) Owns the chunks
//! and nothing else; what the entries mean is its user's.

/// Entries a chunk holds (a power of two: an index splits by shifts).
const CHUNK: usize = 4096;

/// Entries by index, in chunks that never move.
pub struct Chunked<T> {
    /// Those holding entries are all full but the last; the ones after
    /// it are empty, kept for reuse (reserved, or emptied by `clear`).
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Chunked<T> {
    /// Empty, with chunks for `n` entries reserved.
    pub fn with_capacity(n: usize) -> Chunked<T> {
        Chunked {
            chunks: (0..n.div_ceil(CHUNK))
                .map(|_| Vec::with_capacity(CHUNK))
                .collect(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `x` as entry `len()`.
    #[inline]
    pub fn push(&mut self, x: T) {
        let (c, _) = split(self.len);
        if c == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[c].push(x);
        self.len += 1;
    }

    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        let (c, k) = split(i);
        self.chunks.get(c)?.get(k)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    /// Forgets every entry; the chunks stay, for the entries to come.
    pub fn clear(&mut self) {
        self.chunks.iter_mut().for_each(Vec::clear);
        self.len = 0;
    }
}

impl<T: Clone> Chunked<T> {
    /// Makes the chunks not yet filled resident (written once with
    /// `filler`, then emptied again); returns the bytes touched.
    pub fn prefault(&mut self, filler: T) -> usize {
        self.chunks
            .iter_mut()
            .map(|c| crate::runtime::touch_spare_capacity(c, filler.clone()))
            .sum()
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;

    /// Entry `i`; panics past the end, as a slice does.
    #[inline]
    fn index(&self, i: usize) -> &T {
        let (c, k) = split(i);
        &self.chunks[c][k]
    }
}

impl<T> Extend<T> for Chunked<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, entries: I) {
        entries.into_iter().for_each(|x| self.push(x));
    }
}

/// Entry `i`'s chunk and its place in it.
#[inline]
fn split(i: usize) -> (usize, usize) {
    (i / CHUNK, i % CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_their_index_and_address_across_chunks() {
        let mut c = Chunked::with_capacity(CHUNK);
        c.push(0u64);
        let first: *const u64 = c.get(0).unwrap();
        for i in 1..3 * CHUNK as u64 + 5 {
            c.push(i);
        }
        assert_eq!(c.len(), 3 * CHUNK + 5);
        assert!(std::ptr::eq(first, c.get(0).unwrap()), "never moved");
        for i in [0, CHUNK - 1, CHUNK, 2 * CHUNK, 3 * CHUNK + 4] {
            assert_eq!(c.get(i), Some(&(i as u64)));
        }
        assert_eq!(c.get(3 * CHUNK + 5), None);
        assert!(c.iter().copied().eq(0..3 * CHUNK as u64 + 5));
    }

    #[test]
    fn a_cleared_list_reuses_its_chunks_and_answers_nothing_old() {
        let mut c = Chunked::with_capacity(0);
        c.extend(0..CHUNK as u32 + 1);
        let chunk: *const u32 = c.get(0).unwrap();
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.get(0), None);
        assert_eq!(c.get(CHUNK), None);
        c.push(7);
        assert!(std::ptr::eq(chunk, c.get(0).unwrap()), "the same chunk");
        assert_eq!(c.iter().count(), 1);
    }

    #[test]
    fn prefault_touches_the_room_left_and_keeps_the_entries() {
        let mut c = Chunked::with_capacity(CHUNK + 1);
        c.push(1u16);
        assert_eq!(c.prefault(0), (2 * CHUNK - 1) * 2);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(0), Some(&1));
        assert_eq!(c.get(1), None);
    }
}
