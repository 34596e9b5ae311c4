//! The sans-IO matching core: per-instrument books, price-time matching,
//! and the events it emits. No I/O, no clock reads, no allocation after start-up.
