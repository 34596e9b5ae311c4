//! Byte layouts only: zerocopy views and allocation-free encoders for every
//! protocol tokex speaks. Never panics on input; no I/O.

pub mod ethernet;
