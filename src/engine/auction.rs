//! The call auction's uncross price.
//!
//! Owns the price rule of the opening (and reopening) call: among the
//! prices where bids and asks cross, the one with the largest executable
//! volume; ties broken by the smallest imbalance (what is left over at that
//! price on the heavier side), then by the distance to the reference price
//! (the previous settlement, or the last trade before a halt), then by the
//! lower price. Every tick between the best ask and the best bid is a
//! candidate, not only the prices orders are at, so a range of equally
//! good prices settles on the reference when it lies inside it. One pass
//! over that range of levels; no allocation. Executing the cross is the
//! engine's business (`Engine::uncross`).

use super::book::Book;
use super::events::Indicative;
use crate::types::{Price, Side};

/// The indicative uncross of `book` now.
pub fn indicative(book: &Book, reference: u32) -> Indicative {
    let (Some(hi), Some(lo)) = (book.bids.best(), book.asks.best()) else {
        return Indicative::default();
    };
    if hi < lo {
        return Indicative::default();
    }
    // Bids at or above the candidate price, asks at or below it.
    let mut buy: u64 = (lo..=hi).map(|l| book.bids.level(l).qty).sum();
    let mut sell: u64 = 0;
    let mut best = Indicative::default();
    let mut best_distance = u32::MAX;
    for level in lo..=hi {
        sell += book.asks.level(level).qty;
        let paired = buy.min(sell);
        let imbalance = buy.abs_diff(sell);
        let price = book.price_of(level);
        let distance = price.abs_diff(reference);
        let better = match best.price {
            None => true,
            Some(_) => {
                paired > best.paired
                    || (paired == best.paired
                        && (imbalance < best.imbalance
                            || (imbalance == best.imbalance && distance < best_distance)))
            }
        };
        if better {
            best = Indicative {
                price: Some(Price::from_raw(price)),
                paired,
                imbalance,
                imbalance_side: match buy.cmp(&sell) {
                    std::cmp::Ordering::Greater => Some(Side::Buy),
                    std::cmp::Ordering::Less => Some(Side::Sell),
                    std::cmp::Ordering::Equal => None,
                },
            };
            best_distance = distance;
        }
        buy -= book.bids.level(level).qty;
    }
    best
}
