//! Clients placed by a MaxMind database: a small one is written here in the MaxMind DB format
//! (search tree, data section, metadata; maxmind.github.io/MaxMind-DB), then read by the router
//! as it would read GeoLite2-City.

use std::net::{IpAddr, Ipv4Addr};

use geo_router::RouterConfig;
use geo_router::geo::{Geo, Place, PlacedBy};

/// A value of the MaxMind DB data format.
enum V {
    Map(Vec<(&'static str, V)>),
    Str(&'static str),
    F64(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Array(Vec<V>),
}

fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    assert!(size < 29, "small values only");
    if kind <= 7 {
        out.push((kind << 5) | size as u8);
    } else {
        out.push(size as u8);
        out.push(kind - 7);
    }
}

fn encode(v: &V, out: &mut Vec<u8>) {
    let uint = |out: &mut Vec<u8>, kind: u8, n: u64| {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        control(out, kind, bytes.len());
        out.extend(bytes);
    };
    match v {
        V::Map(pairs) => {
            control(out, 7, pairs.len());
            for (k, v) in pairs {
                encode(&V::Str(k), out);
                encode(v, out);
            }
        }
        V::Str(s) => {
            control(out, 2, s.len());
            out.extend(s.as_bytes());
        }
        V::F64(f) => {
            control(out, 3, 8);
            out.extend(f.to_be_bytes());
        }
        V::U16(n) => uint(out, 5, u64::from(*n)),
        V::U32(n) => uint(out, 6, u64::from(*n)),
        V::U64(n) => uint(out, 9, *n),
        V::Array(items) => {
            control(out, 11, items.len());
            for i in items {
                encode(i, out);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Rec {
    Node(usize),
    Empty,
    Data(usize),
}

/// An IPv4 database with 24-bit records: each network points at its record.
fn write_mmdb(networks: &[(Ipv4Addr, u8, V)]) -> Vec<u8> {
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty, Rec::Empty]];
    let mut data = Vec::new();
    for (addr, len, value) in networks {
        let offset = data.len();
        encode(value, &mut data);
        let bits = u32::from(*addr);
        let mut node = 0;
        for depth in 0..*len {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *len {
                nodes[node][bit] = Rec::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Rec::Node(n) => n,
                    _ => {
                        nodes.push([Rec::Empty, Rec::Empty]);
                        nodes[node][bit] = Rec::Node(nodes.len() - 1);
                        nodes.len() - 1
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let v = match *r {
                Rec::Node(i) => i,
                Rec::Empty => count,
                Rec::Data(off) => count + 16 + off,
            } as u32;
            out.extend(&v.to_be_bytes()[1..]);
        }
    }
    out.extend([0u8; 16]);
    out.extend(&data);
    out.extend(b"\xAB\xCD\xEFMaxMind.com");
    encode(
        &V::Map(vec![
            ("node_count", V::U32(count as u32)),
            ("record_size", V::U16(24)),
            ("ip_version", V::U16(4)),
            ("database_type", V::Str("Tradewind-Test-City")),
            ("languages", V::Array(vec![V::Str("en")])),
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_764_000_000)),
            ("description", V::Map(vec![("en", V::Str("test"))])),
        ]),
        &mut out,
    );
    out
}

#[test]
fn clients_the_table_misses_are_placed_by_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = write_mmdb(&[
        // Paris, with coordinates: the nearest region.
        (
            Ipv4Addr::new(81, 0, 0, 0),
            8,
            V::Map(vec![
                (
                    "location",
                    V::Map(vec![
                        ("latitude", V::F64(48.86)),
                        ("longitude", V::F64(2.35)),
                    ]),
                ),
                ("country", V::Map(vec![("iso_code", V::Str("FR"))])),
            ]),
        ),
        // Only a country: the config's country table.
        (
            Ipv4Addr::new(175, 41, 128, 0),
            17,
            V::Map(vec![("country", V::Map(vec![("iso_code", V::Str("SG"))]))]),
        ),
        // A country the config does not name, without coordinates: not placed.
        (
            Ipv4Addr::new(41, 0, 0, 0),
            8,
            V::Map(vec![("country", V::Map(vec![("iso_code", V::Str("ZA"))]))]),
        ),
    ]);
    std::fs::write(dir.path().join("test-city.mmdb"), db).unwrap();
    let text = r#"
zone = "shop.tradewind.test"
[dns]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[http.listener]
plain_http = true
[geo]
mmdb = "test-city.mmdb"
countries = { sg = "ap-singapore" }
default_region = "us-east"
networks = [{ cidr = "81.2.0.0/16", region = "cn-shanghai" }]
[[regions]]
name = "cn-shanghai"
latitude = 31.23
longitude = 121.47
edges = [{ name = "a", health_url = "http://127.0.1.1:1/healthz", addresses = ["127.0.1.1"] }]
[[regions]]
name = "ap-singapore"
latitude = 1.35
longitude = 103.82
edges = [{ name = "b", health_url = "http://127.0.2.1:1/healthz", addresses = ["127.0.2.1"] }]
[[regions]]
name = "us-east"
latitude = 38.9
longitude = -77.04
edges = [{ name = "c", health_url = "http://127.0.3.1:1/healthz", addresses = ["127.0.3.1"] }]
"#;
    let path = dir.path().join("router.toml");
    std::fs::write(&path, text).unwrap();
    let c = util::config::load::<RouterConfig>(&path).unwrap();
    let geo = Geo::new(&c).unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();

    let paris = geo.locate(ip("81.7.7.7"));
    assert_eq!(paris.by, PlacedBy::Database("81.0.0.0/8".parse().unwrap()));
    let Place::Point {
        latitude,
        longitude,
    } = paris.place
    else {
        panic!("{paris:?}")
    };
    assert_eq!((latitude, longitude), (48.86, 2.35));
    assert_eq!(geo.order(paris.place).as_slice(), [2, 0, 1]);
    // The /8 holds the table's 81.2.0.0/16, which goes elsewhere: the scope, 81.4.0.0/14,
    // keeps it out.
    assert_eq!(paris.scope, 14);
    // The table comes first.
    assert_eq!(geo.locate(ip("81.2.3.4")).place, Place::Region(0));
    // A country only: the config's table of countries (any case).
    let sg = geo.locate(ip("175.41.200.1"));
    assert_eq!(
        (sg.place, sg.by, sg.scope),
        (
            Place::Region(1),
            PlacedBy::Database("175.41.128.0/17".parse().unwrap()),
            17
        )
    );
    // Neither coordinates nor a known country, or not in the database: the default region.
    for other in ["41.1.1.1", "9.9.9.9", "2001:db8::1"] {
        let l = geo.locate(ip(other));
        assert_eq!(
            (l.place, l.by),
            (Place::Region(2), PlacedBy::Default),
            "{other}"
        );
    }
}

#[test]
fn a_file_that_is_no_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.mmdb"), b"not a database").unwrap();
    let mut c: RouterConfig = util::config::parse(
        r#"
zone = "shop.tradewind.test"
[dns]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[http.listener]
plain_http = true
[[regions]]
name = "a"
latitude = 0
longitude = 0
edges = [{ name = "a", health_url = "http://127.0.1.1:1/healthz", addresses = ["127.0.1.1"] }]
"#,
        dir.path(),
        "test",
    )
    .unwrap();
    c.geo.mmdb = Some(dir.path().join("bad.mmdb"));
    let err = Geo::new(&c).err().unwrap().to_string();
    assert!(err.contains("MaxMind database"), "{err}");
}
