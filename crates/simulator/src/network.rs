/*!
Where simulated requests come from: networks, addresses, client stacks.

Real traffic arrives from residential ISPs, carrier-grade NATs (many users
behind a few addresses), corporate egress proxies and campus NATs (hundreds
of honest users on one address), cloud VMs (developers' scripts), and, for
campaigns, datacenter hosts and residential proxy pools that rotate
addresses per request. The tables below use real ASNs and plausible
prefixes; host parts are drawn per account or per request.
*/

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    Residential,
    Mobile,
    Cloud,
    CorporateProxy,
    University,
}

#[derive(Debug)]
pub struct Network {
    pub asn: u32,
    pub org: &'static str,
    pub country: &'static str,
    pub kind: NetKind,
    /// First two octets of the /16s it announces (simplified).
    pub prefixes: &'static [(u8, u8)],
}

macro_rules! net {
    ($asn:expr, $org:expr, $cc:expr, $kind:ident, [$($a:expr),*]) => {
        Network { asn: $asn, org: $org, country: $cc, kind: NetKind::$kind, prefixes: &[$($a),*] }
    };
}

pub static NETWORKS: &[Network] = &[
    net!(
        7922,
        "Comcast Cable Communications",
        "US",
        Residential,
        [(73, 15), (98, 207), (24, 6)]
    ),
    net!(
        20115,
        "Charter Communications",
        "US",
        Residential,
        [(71, 84), (97, 93)]
    ),
    net!(
        7018,
        "AT&T Services",
        "US",
        Residential,
        [(99, 35), (108, 89)]
    ),
    net!(
        701,
        "Verizon Business",
        "US",
        Residential,
        [(96, 255), (71, 246)]
    ),
    net!(
        2856,
        "British Telecommunications",
        "GB",
        Residential,
        [(86, 128), (81, 151)]
    ),
    net!(
        3320,
        "Deutsche Telekom",
        "DE",
        Residential,
        [(79, 200), (91, 47)]
    ),
    net!(3215, "Orange", "FR", Residential, [(90, 45), (86, 246)]),
    net!(3352, "Telefonica de Espana", "ES", Residential, [(83, 45)]),
    net!(
        55836,
        "Reliance Jio Infocomm",
        "IN",
        Residential,
        [(49, 36), (49, 37)]
    ),
    net!(24560, "Bharti Airtel", "IN", Residential, [(122, 161)]),
    net!(
        26599,
        "Telefonica Brasil",
        "BR",
        Residential,
        [(177, 94), (187, 56)]
    ),
    net!(
        4713,
        "NTT Communications",
        "JP",
        Residential,
        [(153, 204), (180, 12)]
    ),
    net!(
        4766,
        "Korea Telecom",
        "KR",
        Residential,
        [(121, 134), (211, 36)]
    ),
    net!(
        4134,
        "China Telecom",
        "CN",
        Residential,
        [(113, 87), (183, 14)]
    ),
    net!(
        4837,
        "China Unicom",
        "CN",
        Residential,
        [(123, 118), (221, 216)]
    ),
    net!(
        812,
        "Rogers Communications",
        "CA",
        Residential,
        [(99, 228), (174, 112)]
    ),
    net!(1221, "Telstra", "AU", Residential, [(101, 175), (120, 152)]),
    net!(
        3269,
        "Telecom Italia",
        "IT",
        Residential,
        [(79, 20), (93, 36)]
    ),
    net!(1136, "KPN", "NL", Residential, [(77, 161)]),
    net!(5617, "Orange Polska", "PL", Residential, [(83, 24)]),
    net!(9506, "Singtel", "SG", Residential, [(116, 86)]),
    net!(
        7713,
        "Telkom Indonesia",
        "ID",
        Residential,
        [(36, 72), (180, 241)]
    ),
    net!(8151, "Telmex", "MX", Residential, [(187, 189), (189, 203)]),
    net!(29465, "MTN Nigeria", "NG", Residential, [(102, 89)]),
    net!(
        9121,
        "Turk Telekom",
        "TR",
        Residential,
        [(78, 182), (88, 230)]
    ),
    net!(
        12389,
        "Rostelecom",
        "RU",
        Residential,
        [(95, 24), (178, 66)]
    ),
    net!(7552, "Viettel", "VN", Residential, [(27, 72), (116, 96)]),
    net!(21928, "T-Mobile USA", "US", Mobile, [(172, 56)]),
    net!(22394, "Verizon Wireless", "US", Mobile, [(174, 192)]),
    net!(25135, "Vodafone UK", "GB", Mobile, [(85, 255)]),
    net!(3209, "Vodafone Germany", "DE", Mobile, [(92, 72)]),
    net!(45609, "Bharti Airtel Mobile", "IN", Mobile, [(106, 205)]),
    net!(9808, "China Mobile", "CN", Mobile, [(117, 136)]),
    net!(
        16509,
        "Amazon.com, Inc.",
        "US",
        Cloud,
        [(3, 90), (18, 204), (52, 23), (54, 201)]
    ),
    net!(396982, "Google LLC", "US", Cloud, [(34, 82), (35, 201)]),
    net!(
        8075,
        "Microsoft Corporation",
        "US",
        Cloud,
        [(20, 42), (40, 117), (52, 170)]
    ),
    net!(
        14061,
        "DigitalOcean, LLC",
        "US",
        Cloud,
        [(134, 209), (159, 65), (167, 99)]
    ),
    net!(
        24940,
        "Hetzner Online GmbH",
        "DE",
        Cloud,
        [(95, 216), (116, 202)]
    ),
    net!(16276, "OVH SAS", "FR", Cloud, [(51, 75), (137, 74)]),
    net!(
        45102,
        "Alibaba (US) Technology Co., Ltd.",
        "CN",
        Cloud,
        [(47, 88), (47, 251)]
    ),
    net!(
        132203,
        "Tencent Building, Kejizhongyi Avenue",
        "CN",
        Cloud,
        [(43, 135), (119, 28)]
    ),
    net!(
        63949,
        "Akamai Connected Cloud",
        "US",
        Cloud,
        [(172, 104), (139, 162)]
    ),
    net!(
        20473,
        "The Constant Company, LLC",
        "US",
        Cloud,
        [(45, 76), (149, 28)]
    ),
    net!(
        9009,
        "M247 Europe SRL",
        "RO",
        Cloud,
        [(185, 156), (89, 187)]
    ),
    net!(
        53813,
        "Zscaler, Inc.",
        "US",
        CorporateProxy,
        [(136, 226), (165, 225)]
    ),
    net!(13335, "Cloudflare, Inc.", "US", CorporateProxy, [(104, 28)]),
    net!(
        3,
        "Massachusetts Institute of Technology",
        "US",
        University,
        [(18, 29)]
    ),
    net!(
        25,
        "University of California at Berkeley",
        "US",
        University,
        [(128, 32)]
    ),
    net!(
        786,
        "Jisc Services Limited",
        "GB",
        University,
        [(129, 67), (163, 1)]
    ),
    net!(
        4538,
        "China Education and Research Network",
        "CN",
        University,
        [(202, 112), (166, 111)]
    ),
    net!(
        680,
        "Verein zur Foerderung eines Deutschen Forschungsnetzes",
        "DE",
        University,
        [(141, 20), (129, 187)]
    ),
    net!(2200, "Renater", "FR", University, [(193, 48)]),
    net!(
        9318,
        "SK Broadband (KREONET)",
        "KR",
        University,
        [(134, 75)]
    ),
    net!(
        2907,
        "SINET (Research Org. of Information and Systems)",
        "JP",
        University,
        [(133, 11)]
    ),
];

pub fn networks_of(kind: NetKind) -> Vec<usize> {
    (0..NETWORKS.len())
        .filter(|&i| NETWORKS[i].kind == kind)
        .collect()
}

/// A network of `kind` in `country` if there is one, else any of `kind`.
pub fn network_in(rng: &mut Rng, kind: NetKind, country: &str) -> usize {
    let local: Vec<usize> = (0..NETWORKS.len())
        .filter(|&i| NETWORKS[i].kind == kind && NETWORKS[i].country == country)
        .collect();
    if local.is_empty() {
        *rng.pick(&networks_of(kind))
    } else {
        *rng.pick(&local)
    }
}

/// A host address inside network `net`.
pub fn ip_in(rng: &mut Rng, net: usize) -> String {
    let (a, b) = *rng.pick(NETWORKS[net].prefixes);
    format!("{a}.{b}.{}.{}", rng.below(256), 1 + rng.below(254))
}

/// Countries of honest users with their UTC offsets and weights.
pub static COUNTRIES: &[(&str, f64, f64)] = &[
    ("US", -6.0, 30.0),
    ("IN", 5.5, 9.0),
    ("GB", 0.0, 6.0),
    ("DE", 1.0, 5.0),
    ("BR", -3.0, 4.0),
    ("CA", -5.0, 3.5),
    ("FR", 1.0, 3.5),
    ("JP", 9.0, 3.0),
    ("KR", 9.0, 2.5),
    ("AU", 10.0, 2.5),
    ("ES", 1.0, 2.0),
    ("IT", 1.0, 2.0),
    ("NL", 1.0, 1.5),
    ("PL", 1.0, 1.5),
    ("ID", 7.0, 2.0),
    ("MX", -6.0, 2.0),
    ("SG", 8.0, 1.5),
    ("TR", 3.0, 1.5),
    ("VN", 7.0, 1.5),
    ("NG", 1.0, 1.2),
    ("CN", 8.0, 1.0),
    ("RU", 3.0, 1.0),
];

pub fn utc_offset_of(country: &str) -> f64 {
    COUNTRIES
        .iter()
        .find(|c| c.0 == country)
        .map(|c| c.1)
        .unwrap_or(0.0)
}

/// Client software: user agent, TLS fingerprint (JA4 style) and dialect.
#[derive(Debug, Clone, Copy)]
pub struct ClientStack {
    pub user_agent: &'static str,
    pub tls: &'static str,
    /// true: speaks the Anthropic Messages dialect.
    pub anthropic: bool,
    /// Weight among honest developers.
    pub weight: f64,
}

const JA4_PY: &str = "t13d1812h1_85036bcba153_375ca2c5e164";
const JA4_NODE: &str = "t13d1516h2_8daaf6152771_02713d6af862";
const JA4_CURL: &str = "t13d3113h2_e8f1e7e78f70_ce5650b735ce";
const JA4_GO: &str = "t13d1310h2_ef7df7f74e48_0a6a13cfbd07";
const JA4_CHROME: &str = "t13d1517h2_8daaf6152771_b0da82dd1658";

pub static CLIENTS: &[ClientStack] = &[
    ClientStack {
        user_agent: "OpenAI/Python 1.58.1",
        tls: JA4_PY,
        anthropic: false,
        weight: 20.0,
    },
    ClientStack {
        user_agent: "OpenAI/Python 1.61.0",
        tls: JA4_PY,
        anthropic: false,
        weight: 12.0,
    },
    ClientStack {
        user_agent: "AsyncOpenAI/Python 1.61.0",
        tls: JA4_PY,
        anthropic: false,
        weight: 5.0,
    },
    ClientStack {
        user_agent: "OpenAI/JS 4.77.0",
        tls: JA4_NODE,
        anthropic: false,
        weight: 9.0,
    },
    ClientStack {
        user_agent: "Anthropic/Python 0.42.0",
        tls: JA4_PY,
        anthropic: true,
        weight: 16.0,
    },
    ClientStack {
        user_agent: "Anthropic/Python 0.45.2",
        tls: JA4_PY,
        anthropic: true,
        weight: 8.0,
    },
    ClientStack {
        user_agent: "Anthropic/JS 0.33.1",
        tls: JA4_NODE,
        anthropic: true,
        weight: 8.0,
    },
    ClientStack {
        user_agent: "langchain-openai/0.2.14 OpenAI/Python 1.58.1",
        tls: JA4_PY,
        anthropic: false,
        weight: 4.0,
    },
    ClientStack {
        user_agent: "curl/8.5.0",
        tls: JA4_CURL,
        anthropic: false,
        weight: 3.0,
    },
    ClientStack {
        user_agent: "python-requests/2.32.3",
        tls: JA4_PY,
        anthropic: false,
        weight: 4.0,
    },
    ClientStack {
        user_agent: "python-httpx/0.27.2",
        tls: JA4_PY,
        anthropic: true,
        weight: 2.0,
    },
    ClientStack {
        user_agent: "axios/1.7.9",
        tls: JA4_NODE,
        anthropic: false,
        weight: 2.0,
    },
    ClientStack {
        user_agent: "Go-http-client/2.0",
        tls: JA4_GO,
        anthropic: false,
        weight: 1.5,
    },
    ClientStack {
        user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0.0.0 Safari/537.36",
        tls: JA4_CHROME,
        anthropic: true,
        weight: 3.0,
    },
    ClientStack {
        user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0.0.0 Safari/537.36",
        tls: JA4_CHROME,
        anthropic: false,
        weight: 2.5,
    },
];

/// An honest developer's client stack.
pub fn honest_client(rng: &mut Rng) -> usize {
    let w: Vec<f64> = CLIENTS.iter().map(|c| c.weight).collect();
    rng.weighted(&w)
}

/// Consumer webmail domains, by rough popularity.
pub static WEBMAIL: &[(&str, f64)] = &[
    ("gmail.com", 55.0),
    ("outlook.com", 10.0),
    ("hotmail.com", 6.0),
    ("yahoo.com", 6.0),
    ("icloud.com", 6.0),
    ("proton.me", 3.0),
    ("qq.com", 2.0),
    ("163.com", 1.5),
    ("naver.com", 1.5),
    ("gmx.de", 1.5),
    ("yandex.ru", 1.0),
    ("mail.ru", 1.0),
];

pub fn webmail(rng: &mut Rng) -> &'static str {
    let w: Vec<f64> = WEBMAIL.iter().map(|x| x.1).collect();
    WEBMAIL[rng.weighted(&w)].0
}

/// Company email domains (honest corporate users and products).
pub fn company_domain(rng: &mut Rng) -> String {
    const A: &[&str] = &[
        "north", "blue", "bright", "stone", "river", "quantum", "apex", "silver", "green", "polar",
        "cedar", "lumen", "vector", "harbor", "summit", "atlas", "nova", "orbit", "prism", "delta",
    ];
    const B: &[&str] = &[
        "labs",
        "works",
        "soft",
        "data",
        "systems",
        "health",
        "logistics",
        "bank",
        "retail",
        "media",
        "analytics",
        "robotics",
        "legal",
        "energy",
        "games",
    ];
    const T: &[&str] = &["com", "io", "co", "de", "ai", "co.uk", "fr", "in"];
    format!("{}{}.{}", rng.pick(A), rng.pick(B), rng.pick(T))
}

/// University email domains, aligned with the campus networks above.
pub fn university_domain(asn: u32, rng: &mut Rng) -> String {
    let opts: &[&str] = match asn {
        3 => &["mit.edu"],
        25 => &["berkeley.edu"],
        786 => &["ox.ac.uk", "cam.ac.uk", "ucl.ac.uk", "ed.ac.uk"],
        4538 => &[
            "tsinghua.edu.cn",
            "pku.edu.cn",
            "zju.edu.cn",
            "fudan.edu.cn",
        ],
        680 => &["tum.de", "uni-heidelberg.de", "kit.edu"],
        2200 => &["sorbonne-universite.fr", "univ-grenoble-alpes.fr"],
        9318 => &["kaist.ac.kr", "snu.ac.kr"],
        2907 => &["u-tokyo.ac.jp", "kyoto-u.ac.jp"],
        _ => &["university.edu"],
    };
    rng.pick(opts).to_string()
}

/// Attackers' scripting stacks (the ones honest developers use, too).
pub fn script_client(rng: &mut Rng, anthropic: bool) -> usize {
    let pool: Vec<usize> = (0..CLIENTS.len())
        .filter(|&i| {
            let c = &CLIENTS[i];
            c.anthropic == anthropic && !c.user_agent.starts_with("Mozilla")
        })
        .collect();
    *rng.pick(&pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_networks_and_addresses_fall_in_prefixes() {
        for kind in [
            NetKind::Residential,
            NetKind::Mobile,
            NetKind::Cloud,
            NetKind::CorporateProxy,
            NetKind::University,
        ] {
            assert!(!networks_of(kind).is_empty());
        }
        let mut r = Rng::new(1);
        for _ in 0..200 {
            let n = network_in(&mut r, NetKind::Residential, "DE");
            assert_eq!(NETWORKS[n].country, "DE");
            let ip = ip_in(&mut r, n);
            let parts: Vec<u8> = ip.split('.').map(|p| p.parse().unwrap()).collect();
            assert_eq!(parts.len(), 4);
            assert!(NETWORKS[n].prefixes.contains(&(parts[0], parts[1])));
        }
    }
}
