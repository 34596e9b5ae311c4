//! Transports: AF_XDP (xsk-rs), kernel UDP, TCP, and the check that keeps
//! the client side's traffic in the lab network namespaces.
//! Thin I/O shells around the sans-IO cores.

pub mod lab_route;
pub mod tcp;
pub mod udp;
pub mod xdp;
pub mod xdp_prog;
