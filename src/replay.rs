//! `tokex replay`: runs the engine over an order-flow CSV file and writes
//! trades, the final book, rejects and the ITCH stream (DESIGN.md formats).
