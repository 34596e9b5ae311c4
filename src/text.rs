//! Small helpers for the sentences the commands print: a count with its
//! noun in the singular for one (`1 gap`, `0 gaps`, `2 gaps`).
//!
//! Only for prose. A line another program reads (the load report's first
//! line, the feed's `feed:` line, the exchange's counters) keeps the words
//! its readers look for; where a reader looks for the plural, a count
//! that matters to it is never one (see each caller).

use std::fmt::Display;

/// The noun for `n` of it: `one` for exactly one, `many` otherwise
/// (zero included).
pub fn noun<'a, T: PartialEq + From<u8>>(n: T, one: &'a str, many: &'a str) -> &'a str {
    if n == T::from(1) {
        one
    } else {
        many
    }
}

/// `n` and its noun: `plural(1, "gap", "gaps")` is `1 gap`,
/// `plural(0, "gap", "gaps")` is `0 gaps`.
pub fn plural<T: Display + PartialEq + From<u8> + Copy>(n: T, one: &str, many: &str) -> String {
    format!("{n} {}", noun(n, one, many))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(plural(1u64, "gap", "gaps"), "1 gap");
        assert_eq!(plural(0u64, "gap", "gaps"), "0 gaps");
        assert_eq!(plural(2usize, "request", "requests"), "2 requests");
        assert_eq!(plural(1u32, "match", "matches"), "1 match");
        assert_eq!(plural(11u8, "match", "matches"), "11 matches");
        assert_eq!(noun(1usize, "was", "were"), "was");
        assert_eq!(noun(21u64, "was", "were"), "were");
    }
}
