//! The two-level occupancy bitmap behind both price ladders (the engine's
//! and the feed handler's): which ladder levels hold orders, with the best
//! level, or the next one from a price, found in a few instructions.

/// A two-level occupancy bitmap over ladder indices: bit i of `words` is set
/// when level i has orders; bit w of `summary` when word w is non-zero.
#[derive(Debug, Clone)]
pub struct Bitmap {
    words: Vec<u64>,
    summary: Vec<u64>,
}

impl Bitmap {
    pub fn new(levels: u32) -> Bitmap {
        let words = (levels as usize).div_ceil(64);
        Bitmap {
            words: vec![0; words],
            summary: vec![0; words.div_ceil(64)],
        }
    }

    #[inline]
    pub fn set(&mut self, i: u32) {
        let w = (i / 64) as usize;
        self.words[w] |= 1 << (i % 64);
        self.summary[w / 64] |= 1 << (w % 64);
    }

    #[inline]
    pub fn clear(&mut self, i: u32) {
        let w = (i / 64) as usize;
        self.words[w] &= !(1 << (i % 64));
        if self.words[w] == 0 {
            self.summary[w / 64] &= !(1 << (w % 64));
        }
    }

    /// Highest set index at or below `i`.
    pub fn at_or_below(&self, i: u32) -> Option<u32> {
        let w = (i / 64) as usize;
        let bits = self.words[w] & (u64::MAX >> (63 - i % 64));
        if bits != 0 {
            return Some((w * 64 + 63 - bits.leading_zeros() as usize) as u32);
        }
        let mut s = w / 64;
        let mut sbits = self.summary[s] & ((1u64 << (w % 64)).wrapping_sub(1));
        loop {
            if sbits != 0 {
                let w = s * 64 + 63 - sbits.leading_zeros() as usize;
                let bits = self.words[w];
                return Some((w * 64 + 63 - bits.leading_zeros() as usize) as u32);
            }
            if s == 0 {
                return None;
            }
            s -= 1;
            sbits = self.summary[s];
        }
    }

    /// Lowest set index at or above `i`.
    pub fn at_or_above(&self, i: u32) -> Option<u32> {
        let w = (i / 64) as usize;
        if w >= self.words.len() {
            return None;
        }
        let bits = self.words[w] & (u64::MAX << (i % 64));
        if bits != 0 {
            return Some((w * 64 + bits.trailing_zeros() as usize) as u32);
        }
        let mut s = w / 64;
        let mut sbits = if w % 64 == 63 {
            0
        } else {
            self.summary[s] & (u64::MAX << (w % 64 + 1))
        };
        loop {
            if sbits != 0 {
                let w = s * 64 + sbits.trailing_zeros() as usize;
                let bits = self.words[w];
                return Some((w * 64 + bits.trailing_zeros() as usize) as u32);
            }
            s += 1;
            if s >= self.summary.len() {
                return None;
            }
            sbits = self.summary[s];
        }
    }

    pub fn clear_all(&mut self) {
        self.words.fill(0);
        self.summary.fill(0);
    }

    /// Highest set index.
    #[inline]
    pub fn highest(&self) -> Option<u32> {
        for (s, &bits) in self.summary.iter().enumerate().rev() {
            if bits != 0 {
                let w = s * 64 + 63 - bits.leading_zeros() as usize;
                let word = self.words[w];
                return Some((w * 64 + 63 - word.leading_zeros() as usize) as u32);
            }
        }
        None
    }

    /// Lowest set index.
    #[inline]
    pub fn lowest(&self) -> Option<u32> {
        for (s, &bits) in self.summary.iter().enumerate() {
            if bits != 0 {
                let w = s * 64 + bits.trailing_zeros() as usize;
                let word = self.words[w];
                return Some((w * 64 + word.trailing_zeros() as usize) as u32);
            }
        }
        None
    }
}
