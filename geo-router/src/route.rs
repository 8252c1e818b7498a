//! The one decision DNS answers and `/v1/route` explains: for a client address and a service
//! (the storefront's edges, or the caches for assets), the first region in the client's order
//! that has a healthy server of it, with that region's healthy addresses. When no region has
//! one, the first region that has any server of it, with all its addresses (fail open: a
//! shopper sent to a region that may recover beats no answer at all).

use std::net::IpAddr;

use crate::geo::{Geo, Located, Order};
use crate::health::RegionAnswer;

#[derive(Clone, Copy)]
pub struct Route {
    pub located: Located,
    pub order: Order,
    /// The region chosen (an index into the config's regions).
    pub region: usize,
    /// Regions of the order passed over for having no healthy edge (`order[..skipped]`).
    pub skipped: usize,
    /// No region had a healthy edge.
    pub fail_open: bool,
}

impl Route {
    /// The route for `client` among `answers` (a board's, for one service).
    pub fn new(geo: &Geo, answers: &[RegionAnswer], client: IpAddr) -> Route {
        let located = geo.locate(client);
        let order = geo.order(located.place);
        let first_healthy = order
            .as_slice()
            .iter()
            .position(|r| answers[usize::from(*r)].healthy_edges > 0);
        // Failing open, the first region that has any server of the service at all (a region
        // may have no cache).
        let (skipped, fail_open) = match first_healthy {
            Some(i) => (i, false),
            None => {
                let any = order.as_slice().iter().position(|r| {
                    let all = &answers[usize::from(*r)].all;
                    !all.v4.is_empty() || !all.v6.is_empty()
                });
                (any.unwrap_or(0), true)
            }
        };
        Route {
            located,
            order,
            region: usize::from(order.as_slice()[skipped]),
            skipped,
            fail_open,
        }
    }

    /// The addresses to answer an A (`v6` false) or AAAA query with.
    pub fn addresses<'b>(&self, answers: &'b [RegionAnswer], v6: bool) -> &'b [IpAddr] {
        let r = &answers[self.region];
        let set = if self.fail_open { &r.all } else { &r.healthy };
        if v6 { &set.v6 } else { &set.v4 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::good;
    use crate::health::{Check, Health};

    fn pass(h: &Health, edge: usize, ok: bool) {
        for _ in 0..3 {
            h.record(
                edge,
                Check {
                    at_unix_ms: util::clock::now_ms().unsigned_abs(),
                    ok,
                    reason: String::new(),
                    latency_ms: 1,
                },
            );
        }
    }

    #[test]
    fn clients_go_to_their_region_then_the_next_healthy_one_then_fail_open() {
        let c = good();
        let geo = Geo::new(&c).unwrap();
        let h = Health::new(&c);
        for e in 0..3 {
            pass(&h, e, true);
        }
        let shanghai_client: IpAddr = "192.0.2.9".parse().unwrap();
        let r = Route::new(&geo, &h.board().regions, shanghai_client);
        assert_eq!((r.region, r.skipped, r.fail_open), (0, 0, false));
        assert_eq!(
            r.addresses(&h.board().regions, false),
            ["127.0.1.1".parse::<IpAddr>().unwrap()]
        );
        assert!(r.addresses(&h.board().regions, true).is_empty());
        pass(&h, 0, false);
        let r = Route::new(&geo, &h.board().regions, shanghai_client);
        assert_eq!((r.region, r.skipped, r.fail_open), (1, 1, false));
        assert_eq!(
            r.addresses(&h.board().regions, true),
            ["::1".parse::<IpAddr>().unwrap()]
        );
        pass(&h, 1, false);
        pass(&h, 2, false);
        let r = Route::new(&geo, &h.board().regions, shanghai_client);
        assert_eq!((r.region, r.fail_open), (0, true));
        assert_eq!(
            r.addresses(&h.board().regions, false),
            ["127.0.1.1".parse::<IpAddr>().unwrap()]
        );
    }
}
