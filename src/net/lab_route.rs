//! Keeps the client side's traffic inside the lab (DESIGN.md, "The lab
//! network"): before `tokex load`, `tokex probe`, `tokex feed` or the client
//! library sends anything, the kernel is asked which of this namespace's
//! addresses it would send from towards the target. A UDP `connect` looks
//! the route up and sends nothing. The lab's interfaces have addresses in
//! 198.18.0.0/24; any other source means the route leaves through another
//! interface (in the default namespace, the external one, by the default
//! route), and the command is refused before its first packet. Loopback
//! targets are allowed (tests run the exchange on 127.0.0.1).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use crate::config::is_lab_unicast;

/// Why traffic to a target would not stay in the lab.
#[derive(Debug)]
pub enum RouteError {
    /// The target is neither a lab address nor loopback.
    NotLabTarget(Ipv4Addr),
    /// The kernel has no route to the target from this namespace.
    NoRoute(Ipv4Addr, io::Error),
    /// The route leaves from `source`, not from a lab interface.
    LeavesTheLab { target: Ipv4Addr, source: IpAddr },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const WHERE: &str =
            "run it in the client namespace after `tokex lab up`: ip netns exec tokex-cl tokex ...";
        match self {
            RouteError::NotLabTarget(t) => write!(
                f,
                "{t} is not a lab address (198.18.0.0/24) or loopback: tokex sends only inside the lab"
            ),
            RouteError::NoRoute(t, e) => write!(f, "no route to {t} from here ({e}): {WHERE}"),
            RouteError::LeavesTheLab { target, source } => write!(
                f,
                "the route to {target} leaves from {source}, not from a lab interface (198.18.0.0/24), so nothing was sent: {WHERE}"
            ),
        }
    }
}

impl std::error::Error for RouteError {}

impl From<RouteError> for io::Error {
    fn from(e: RouteError) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, e)
    }
}

/// The address this namespace would send from towards `target`, when that
/// keeps the traffic in the lab (a lab interface's address, or loopback
/// for a loopback target).
pub fn lab_source(target: Ipv4Addr) -> Result<Ipv4Addr, RouteError> {
    let source = route_source(target).map_err(|e| RouteError::NoRoute(target, e))?;
    classify(target, source)
}

/// Asks the kernel for the source address of its route to `target`.
fn route_source(target: Ipv4Addr) -> io::Result<IpAddr> {
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    // Any port: a UDP connect only looks the route up.
    probe.connect((target, 9))?;
    Ok(probe.local_addr()?.ip())
}

/// Whether traffic from `source` to `target` stays in the lab.
fn classify(target: Ipv4Addr, source: IpAddr) -> Result<Ipv4Addr, RouteError> {
    if !is_lab_unicast(target) && !target.is_loopback() {
        return Err(RouteError::NotLabTarget(target));
    }
    match source {
        IpAddr::V4(s) if target.is_loopback() && s.is_loopback() => Ok(s),
        IpAddr::V4(s) if is_lab_unicast(s) && !target.is_loopback() => Ok(s),
        _ => Err(RouteError::LeavesTheLab { target, source }),
    }
}

/// A UDP socket on an ephemeral port of the lab source address towards
/// `target` (see [`lab_source`]).
pub fn lab_socket(target: Ipv4Addr) -> io::Result<UdpSocket> {
    let source = lab_source(target)?;
    UdpSocket::bind(SocketAddr::from((source, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXCHANGE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    #[test]
    fn a_lab_target_reached_from_a_lab_address_is_allowed() {
        let from = Ipv4Addr::new(198, 18, 0, 2);
        assert_eq!(classify(EXCHANGE, from.into()).unwrap(), from);
    }

    #[test]
    fn a_lab_target_routed_out_through_another_interface_is_refused() {
        // The default namespace: 198.18.0.1 goes by the default route.
        let e = classify(EXCHANGE, Ipv4Addr::new(192, 0, 2, 2).into()).unwrap_err();
        assert!(matches!(e, RouteError::LeavesTheLab { .. }));
        assert!(e.to_string().contains("ip netns exec tokex-cl"), "{e}");
    }

    #[test]
    fn targets_outside_the_lab_are_refused_whatever_the_route() {
        let e = classify(
            Ipv4Addr::new(203, 0, 113, 9),
            Ipv4Addr::new(198, 18, 0, 2).into(),
        );
        assert!(matches!(e, Err(RouteError::NotLabTarget(_))));
    }

    #[test]
    fn loopback_is_allowed_only_to_loopback() {
        let lo = Ipv4Addr::LOCALHOST;
        assert_eq!(classify(lo, lo.into()).unwrap(), lo);
        assert!(classify(EXCHANGE, lo.into()).is_err());
    }

    #[test]
    fn the_kernel_is_asked_and_loopback_routes_from_loopback() {
        assert_eq!(
            lab_source(Ipv4Addr::LOCALHOST).unwrap(),
            Ipv4Addr::LOCALHOST
        );
        let s = lab_socket(Ipv4Addr::LOCALHOST).unwrap();
        assert!(s.local_addr().unwrap().ip().is_loopback());
    }
}
