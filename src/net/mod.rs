//! Transports: AF_XDP (xsk-rs), kernel UDP, and the lab network namespaces.
//! Thin I/O shells around the sans-IO cores.

pub mod tcp;
pub mod udp;
pub mod xdp;
pub mod xdp_prog;
