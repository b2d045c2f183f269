/*!
The client's address: who sent a request, as far as the gateway can know.

Linking, per-address accounts and STIX indicators all use it, so a client
must not be able to choose it. `X-Forwarded-For` is believed only when the
TCP peer is one of the operator's `trusted_proxies`; the address is then
the nearest hop that is not a trusted proxy (hops further left were
written by the client and prove nothing). Every address is parsed and
written in one canonical form, so that `6.6.6.6:1234`, `::ffff:6.6.6.6`
and `6.6.6.6` are one client; a hop that is not an address (`06.6.6.6`,
16 KB of junk) ends the walk, and the last address known stands.
*/

use std::net::IpAddr;
use std::str::FromStr;

pub use distillguard_core::net::{Cidr, canonical};

/// The account of a client known only by its address (no keys): the
/// address itself for IPv4, its /64 for IPv6. One IPv6 subscriber holds a
/// whole /64 (often more), so per-address accounts would let one client be
/// 2^64 fresh accounts.
pub fn account_of(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            format!("ip:{}/64", std::net::Ipv6Addr::from(net))
        }
    }
}

/// One `X-Forwarded-For` hop as an address: `1.2.3.4`, `1.2.3.4:80`,
/// `[2001:db8::1]:80`, `2001:db8::1`; anything else is `None`.
pub fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if hop.is_empty() || hop.len() > 64 {
        return None;
    }
    if let Ok(ip) = IpAddr::from_str(hop) {
        return Some(canonical(ip));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']')?;
        if !(tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return IpAddr::from_str(addr).ok().map(canonical);
    }
    let (addr, port) = hop.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    std::net::Ipv4Addr::from_str(addr).ok().map(IpAddr::V4)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The client's address for a request from `peer` carrying
/// `forwarded_for` (the header's values, in order).
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let mut ip = canonical(peer);
    if !trusted.iter().any(|c| c.contains(ip)) {
        return ip;
    }
    // Several headers are one list, in order; walk it from the right.
    for value in forwarded_for.rev() {
        for hop in value.rsplit(',') {
            match parse_hop(hop) {
                Some(h) => {
                    ip = h;
                    if !trusted.iter().any(|c| c.contains(h)) {
                        return ip;
                    }
                }
                None => return ip,
            }
        }
    }
    ip
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        IpAddr::from_str(s).unwrap()
    }

    #[test]
    fn one_client_has_one_address_whatever_its_spelling() {
        for s in [
            "6.6.6.6",
            "6.6.6.6:1234",
            "::ffff:6.6.6.6",
            "[::ffff:6.6.6.6]:443",
        ] {
            assert_eq!(parse_hop(s), Some(ip("6.6.6.6")), "{s}");
        }
        assert_eq!(parse_hop("[2001:db8::1]:80"), Some(ip("2001:db8::1")));
        for junk in [
            "06.6.6.6",
            "6.6.6",
            "6.6.6.6:99999999",
            "unknown",
            "",
            &"9".repeat(16 << 10),
        ] {
            assert_eq!(parse_hop(junk), None, "{junk:.20}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let lb = ip("10.1.2.3");
        let stranger = ip("198.51.100.9");
        // A client talking to the gateway directly cannot plant an address.
        assert_eq!(
            client_ip(stranger, ["1.2.3.4"].into_iter(), &trusted),
            stranger
        );
        assert_eq!(client_ip(stranger, ["1.2.3.4"].into_iter(), &[]), stranger);
        // Behind the load balancer: the nearest hop it did not write is
        // the client; what the client wrote further left is ignored.
        assert_eq!(
            client_ip(lb, ["1.2.3.4, 203.0.113.7, 10.9.9.9"].into_iter(), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(lb, ["1.2.3.4", "203.0.113.7:5555"].into_iter(), &trusted),
            ip("203.0.113.7")
        );
        // Junk ends the walk at the last address known.
        assert_eq!(
            client_ip(lb, ["203.0.113.7, 06.6.6.6"].into_iter(), &trusted),
            lb
        );
        assert_eq!(client_ip(lb, [].into_iter(), &trusted), lb);
    }

    #[test]
    fn an_ipv6_client_is_one_account_per_64() {
        let (a, b, c) = (
            ip("2001:db8:1:2::1"),
            ip("2001:db8:1:2:ffff::9"),
            ip("2001:db8:1:3::1"),
        );
        assert_eq!(account_of(a), "ip:2001:db8:1:2::/64");
        assert_eq!(account_of(a), account_of(b));
        assert_ne!(account_of(a), account_of(c));
        assert_eq!(account_of(ip("::ffff:6.6.6.6")), "ip:6.6.6.6");
    }
}
