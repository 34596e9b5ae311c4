//! Transports: AF_XDP (xsk-rs), kernel UDP, and the lab network namespaces.
//! Thin I/O shells around the sans-IO cores.

pub mod tcp;
