//! Client addresses: `X-Forwarded-For` values and proxy ranges.
#![no_main]
use distillguard_gateway::client_ip::{Cidr, client_ip, parse_hop};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_hop(text);
    let (ranges, header) = text.split_once('\n').unwrap_or((text, ""));
    let trusted: Vec<Cidr> = ranges.split(' ').filter_map(|r| r.parse().ok()).collect();
    let peer = std::net::IpAddr::from([10, 0, 0, 1]);
    let ip = client_ip(peer, header.split('\n'), &trusted);
    // The answer is always an address the peer sent or the peer itself.
    assert!(ip == peer || header.contains(&ip.to_string()) || text.contains(':'));
});
