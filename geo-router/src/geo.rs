//! Where a client is, and the order in which regions should serve it.
//!
//! A client address is placed by the geo table of the config first (the longest prefix that
//! holds it: a region, or coordinates), then by the MaxMind database when the operator has one
//! (coordinates, else the country's region), then by `default_region`. A client in a region
//! is served by that region, then its `fallback` list, then the rest nearest first; a client
//! at coordinates by every region nearest first (great-circle distance).
//!
//! Each answer also carries its ECS scope (RFC 7871 §7.2.1): the prefix length within which
//! every address would be placed the same way, so that a resolver caches it for no more than
//! those clients.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{REGIONS_MAX, RouterConfig};

/// Where the table, the database or the default put a client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Place {
    Region(usize),
    Point {
        latitude: f64,
        longitude: f64,
    },
    /// Nothing placed it and there is no default region: the regions in the order listed.
    Nowhere,
}

/// What placed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacedBy {
    /// A network of the config's geo table.
    Table(IpNet),
    /// A network of the MaxMind database.
    Database(IpNet),
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Located {
    pub place: Place,
    pub by: PlacedBy,
    /// Leftmost bits of the address this placement holds for (the ECS scope prefix).
    pub scope: u8,
}

/// Regions in the order they should serve a client (indices into the config's regions).
#[derive(Clone, Copy)]
pub struct Order {
    len: u8,
    regions: [u8; REGIONS_MAX],
}

impl Order {
    pub fn as_slice(&self) -> &[u8] {
        &self.regions[..usize::from(self.len)]
    }

    fn from_iter(it: impl IntoIterator<Item = usize>) -> Order {
        let mut o = Order {
            len: 0,
            regions: [0; REGIONS_MAX],
        };
        for r in it.into_iter().take(REGIONS_MAX) {
            o.regions[usize::from(o.len)] = r as u8;
            o.len += 1;
        }
        o
    }
}

/// A binary trie of the geo table's networks, one per address family.
struct Trie {
    /// `children[n]` of node `n` (0: none; the root, node 0, is nobody's child).
    children: Vec<[u32; 2]>,
    /// The table entry a node ends, if any (index into `Geo::places`, plus one).
    entry: Vec<u32>,
    bits: u8,
}

impl Trie {
    fn new(bits: u8) -> Trie {
        Trie {
            children: vec![[0, 0]],
            entry: vec![0],
            bits,
        }
    }

    fn insert(&mut self, addr: u128, len: u8, value: u32) {
        let mut node = 0usize;
        for depth in 0..len {
            let bit = bit_at(addr, self.bits, depth);
            if self.children[node][bit] == 0 {
                self.children.push([0, 0]);
                self.entry.push(0);
                self.children[node][bit] = (self.children.len() - 1) as u32;
            }
            node = self.children[node][bit] as usize;
        }
        // A network listed twice keeps its first entry.
        if self.entry[node] == 0 {
            self.entry[node] = value + 1;
        }
    }

    /// The longest entry holding `addr` (its value and length), and the scope: the shortest
    /// prefix of `addr` that holds no entry placing some of its addresses differently.
    fn lookup(&self, addr: u128) -> (Option<(u32, u8)>, u8) {
        let mut node = 0usize;
        let mut found = None;
        let mut branch = 0u8;
        for depth in 0..=self.bits {
            if self.entry[node] != 0 {
                found = Some((self.entry[node] - 1, depth));
            }
            if depth == self.bits {
                break;
            }
            let bit = bit_at(addr, self.bits, depth);
            // Entries under the other child differ from `addr` at bit `depth`: a prefix of
            // `depth + 1` bits keeps them out.
            if self.children[node][1 - bit] != 0 {
                branch = depth + 1;
            }
            match self.children[node][bit] {
                0 => break,
                next => node = next as usize,
            }
        }
        let matched = found.map_or(0, |(_, len)| len);
        (found, matched.max(branch))
    }
}

fn bit_at(addr: u128, bits: u8, depth: u8) -> usize {
    ((addr >> (bits - 1 - depth)) & 1) as usize
}

fn key(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (true, u128::from(u32::from(a))),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (true, u128::from(u32::from(v4))),
            None => (false, u128::from(a)),
        },
    }
}

/// The part of a MaxMind record the router reads.
#[derive(serde::Deserialize)]
struct DbRecord {
    #[serde(default)]
    location: Option<DbLocation>,
    #[serde(default)]
    country: Option<DbCountry>,
    #[serde(default)]
    registered_country: Option<DbCountry>,
}

#[derive(serde::Deserialize)]
struct DbLocation {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(serde::Deserialize)]
struct DbCountry {
    iso_code: Option<String>,
}

pub struct Geo {
    v4: Trie,
    v6: Trie,
    /// What each table entry says.
    places: Vec<(IpNet, Place)>,
    database: Option<maxminddb::Reader<Vec<u8>>>,
    countries: HashMap<String, usize>,
    default_region: Option<usize>,
    /// Coordinates of each region.
    regions: Vec<(f64, f64)>,
    /// The order for a client in each region.
    region_orders: Vec<Order>,
}

impl Geo {
    pub fn new(c: &RouterConfig) -> anyhow::Result<Geo> {
        use anyhow::Context;
        let region = |name: &str| c.region_index(name).context("a region the config checked");
        let mut g = Geo {
            v4: Trie::new(32),
            v6: Trie::new(128),
            places: Vec::new(),
            database: match &c.geo.mmdb {
                Some(p) => Some(
                    maxminddb::Reader::open_readfile(p)
                        .with_context(|| format!("opening the MaxMind database {}", p.display()))?,
                ),
                None => None,
            },
            countries: c
                .geo
                .countries
                .iter()
                .map(|(k, v)| Ok((k.to_ascii_uppercase(), region(v)?)))
                .collect::<anyhow::Result<_>>()?,
            default_region: c.geo.default_region.as_deref().map(region).transpose()?,
            regions: c
                .regions
                .iter()
                .map(|r| (r.latitude, r.longitude))
                .collect(),
            region_orders: Vec::new(),
        };
        for (i, r) in c.regions.iter().enumerate() {
            let mut order = vec![i];
            for f in &r.fallback {
                let f = region(f)?;
                if !order.contains(&f) {
                    order.push(f);
                }
            }
            let here = g.regions[i];
            for n in g.by_distance(here.0, here.1).as_slice() {
                if !order.contains(&usize::from(*n)) {
                    order.push(usize::from(*n));
                }
            }
            g.region_orders.push(Order::from_iter(order));
        }
        for n in &c.geo.networks {
            let place = match (&n.region, n.latitude, n.longitude) {
                (Some(r), _, _) => Place::Region(region(r)?),
                (None, Some(latitude), Some(longitude)) => Place::Point {
                    latitude,
                    longitude,
                },
                _ => anyhow::bail!("geo.networks {}: neither region nor coordinates", n.cidr),
            };
            let net = n.cidr.trunc();
            let value = g.places.len() as u32;
            g.places.push((net, place));
            // An IPv4-mapped network (`::ffff:a.b.c.d/len`, len >= 96) is its IPv4 network.
            let (v4, addr) = key(net.network());
            match net {
                IpNet::V4(_) => g.v4.insert(addr, net.prefix_len(), value),
                IpNet::V6(_) if v4 && net.prefix_len() >= 96 => {
                    g.v4.insert(addr, net.prefix_len() - 96, value)
                }
                IpNet::V6(n) => g.v6.insert(u128::from(n.network()), n.prefix_len(), value),
            }
        }
        Ok(g)
    }

    /// Where `ip` is. An IPv4-mapped IPv6 address counts as its IPv4 address (its scope counts
    /// the 96 bits of the mapping).
    pub fn locate(&self, ip: IpAddr) -> Located {
        let (v4, addr) = key(ip);
        let mut located = self.locate_in_family(v4, addr, ip);
        located.scope = match ip {
            IpAddr::V6(_) if v4 => 96 + located.scope,
            // An IPv6 answer must not cover the mapped IPv4 addresses, placed by other rules:
            // one bit past where the address parts from ::ffff:0:0/96.
            IpAddr::V6(a) => {
                let parts_at = (u128::from(a) ^ 0xffff_0000_0000).leading_zeros().min(96) as u8;
                located.scope.max(parts_at + 1).min(128)
            }
            IpAddr::V4(_) => located.scope,
        };
        located
    }

    /// `locate` within one family: `addr` holds 32 bits for IPv4, with a scope of at most 32.
    fn locate_in_family(&self, v4: bool, addr: u128, ip: IpAddr) -> Located {
        let trie = if v4 { &self.v4 } else { &self.v6 };
        let (found, scope) = trie.lookup(addr);
        if let Some((i, _)) = found {
            let (net, place) = self.places[i as usize];
            return Located {
                place,
                by: PlacedBy::Table(net),
                scope,
            };
        }
        let bits = trie.bits;
        let mut scope = scope;
        if let Some(db) = &self.database {
            let ip = if v4 {
                IpAddr::from(std::net::Ipv4Addr::from(addr as u32))
            } else {
                ip
            };
            if let Ok(found) = db.lookup(ip) {
                let net = found
                    .network()
                    .ok()
                    .and_then(|n| IpNet::new(n.network(), n.prefix()).ok());
                // An IPv6 record holding an IPv4 address holds every IPv4 address.
                let held = match net {
                    Some(IpNet::V6(_)) if v4 => 0,
                    Some(n) => n.prefix_len().min(bits),
                    None => bits,
                };
                scope = scope.max(held);
                let record: Option<DbRecord> = found.decode().ok().flatten();
                if let Some(place) = record.and_then(|r| self.place_of(&r)) {
                    return Located {
                        place,
                        by: PlacedBy::Database(net.unwrap_or_else(|| IpNet::from(ip))),
                        scope,
                    };
                }
            }
        }
        Located {
            place: self.default_region.map_or(Place::Nowhere, Place::Region),
            by: PlacedBy::Default,
            scope,
        }
    }

    fn place_of(&self, r: &DbRecord) -> Option<Place> {
        if let Some(DbLocation {
            latitude: Some(latitude),
            longitude: Some(longitude),
        }) = r.location
            && (-90.0..=90.0).contains(&latitude)
            && (-180.0..=180.0).contains(&longitude)
        {
            return Some(Place::Point {
                latitude,
                longitude,
            });
        }
        [&r.country, &r.registered_country]
            .into_iter()
            .flatten()
            .filter_map(|c| c.iso_code.as_deref())
            .find_map(|code| self.countries.get(&code.to_ascii_uppercase()))
            .map(|r| Place::Region(*r))
    }

    /// The regions in the order they should serve a client at `place`.
    pub fn order(&self, place: Place) -> Order {
        match place {
            Place::Region(r) => self.region_orders[r],
            Place::Point {
                latitude,
                longitude,
            } => self.by_distance(latitude, longitude),
            Place::Nowhere => Order::from_iter(0..self.regions.len()),
        }
    }

    /// Great-circle distance from a point to region `r`, in km.
    pub fn distance_km(&self, latitude: f64, longitude: f64, r: usize) -> f64 {
        let (lat, lon) = self.regions[r];
        great_circle_km(latitude, longitude, lat, lon)
    }

    fn by_distance(&self, latitude: f64, longitude: f64) -> Order {
        let mut all: Vec<usize> = (0..self.regions.len()).collect();
        // Ties keep the listed order (a stable sort).
        all.sort_by(|a, b| {
            self.distance_km(latitude, longitude, *a)
                .total_cmp(&self.distance_km(latitude, longitude, *b))
        });
        Order::from_iter(all)
    }
}

/// The haversine distance between two points on a sphere of the Earth's mean radius.
pub fn great_circle_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6_371.0;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::good;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The test config's geo table, with one more network of `region`.
    fn with_network(cidr: &str, region: &str) -> Geo {
        let mut c = good();
        c.geo.networks.push(crate::config::NetworkEntry {
            cidr: cidr.parse().unwrap(),
            region: Some(region.into()),
            latitude: None,
            longitude: None,
        });
        Geo::new(&c).unwrap()
    }

    #[test]
    fn the_table_places_clients_by_longest_prefix_with_the_scope_it_holds_for() {
        let g = with_network("192.0.2.128/25", "us-east");
        let l = g.locate(ip("192.0.2.7"));
        assert_eq!(l.place, Place::Region(0));
        assert_eq!(l.by, PlacedBy::Table("192.0.2.0/24".parse().unwrap()));
        // 192.0.2.128/25 goes elsewhere: the answer holds for 192.0.2.0/25 only.
        assert_eq!(l.scope, 25);
        let l = g.locate(ip("192.0.2.200"));
        assert_eq!((l.place, l.scope), (Place::Region(2), 25));
        let l = g.locate(ip("198.51.100.1"));
        assert_eq!((l.place, l.scope), (Place::Region(1), 24));
        // IPv4-mapped IPv6 is the IPv4 address, with the mapping's 96 bits in its scope; a
        // mapped network in the table is its IPv4 network.
        let l = g.locate(ip("::ffff:198.51.100.1"));
        assert_eq!((l.place, l.scope), (Place::Region(1), 96 + 24));
        // Outside every network: the default order, for as far as no network is near.
        let l = g.locate(ip("8.8.8.8"));
        assert_eq!((l.place, l.by), (Place::Nowhere, PlacedBy::Default));
        // 8.0.0.0/7 holds none of the table's networks; 8.0.0.0/6 holds 10.9.0.0/16.
        assert_eq!(l.scope, 7);
        // An IPv6 client's answer keeps out the mapped IPv4 range: 2001:db8::1 parts from
        // ::ffff:0:0 at the third bit.
        let l = g.locate(ip("2001:db8::1"));
        assert_eq!((l.place, l.scope), (Place::Nowhere, 3));
        let g = with_network("::ffff:8.8.0.0/112", "us-east");
        assert_eq!(g.locate(ip("8.8.4.4")).place, Place::Region(2));
    }

    #[test]
    fn regions_are_ordered_by_preference_then_distance() {
        let g = Geo::new(&good()).unwrap();
        // Paris: us-east (6,200 km), then Shanghai (9,300 km), then Singapore (10,700 km).
        let paris = g.locate(ip("10.9.1.1"));
        assert!(matches!(paris.place, Place::Point { .. }));
        assert_eq!(g.order(paris.place).as_slice(), [2, 0, 1]);
        // A Shanghai client falls back to Singapore, the nearest.
        assert_eq!(g.order(Place::Region(0)).as_slice(), [0, 1, 2]);
        // us-east's explicit fallback is Singapore, though Shanghai is nearer to it.
        assert_eq!(g.order(Place::Region(2)).as_slice(), [2, 1, 0]);
        assert_eq!(g.order(Place::Nowhere).as_slice(), [0, 1, 2]);
    }

    #[test]
    fn great_circle_distances_match_known_ones() {
        // Shanghai to Singapore is about 3,800 km; London to New York about 5,570 km.
        let d = great_circle_km(31.23, 121.47, 1.35, 103.82);
        assert!((3_700.0..3_900.0).contains(&d), "{d}");
        let d = great_circle_km(51.51, -0.13, 40.71, -74.01);
        assert!((5_500.0..5_650.0).contains(&d), "{d}");
        assert_eq!(great_circle_km(10.0, 20.0, 10.0, 20.0), 0.0);
    }
}
