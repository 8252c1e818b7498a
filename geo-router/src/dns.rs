//! The authoritative answers (hickory-server's `RequestHandler`).
//!
//! For the zone: SOA and NS at the apex (with the name servers' addresses as glue), A and AAAA
//! for the storefront names from `Route`, A and AAAA for the name servers, NODATA for other
//! types of names that exist, NXDOMAIN (with the SOA, for negative caching) for names that do
//! not; REFUSED for names outside the zone or classes other than IN. An EDNS Client Subnet
//! (RFC 7871) places the client instead of the source address, and is echoed with the scope
//! the answer holds for (0 when the answer does not depend on where the client is).

use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, LowerQuery, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::config::RouterConfig;
use crate::geo::Geo;
use crate::health::{Health, Service};
use crate::metrics::{Metrics, Tally};
use crate::route::Route;

/// TTL of the zone's SOA and NS records.
const ZONE_TTL_S: u32 = 3_600;
/// Largest UDP answer advertised and sent (the DNS flag day 2020 size).
const UDP_PAYLOAD_MAX: u16 = 1_232;

pub struct Authority {
    zone: LowerName,
    /// The storefront names, then the asset names, each with what it is answered with.
    routed: Vec<(LowerName, Service)>,
    /// The name servers in the zone, with their addresses.
    nameservers: Vec<(LowerName, Vec<IpAddr>)>,
    soa: Record,
    ns: Vec<Record>,
    glue: Vec<Record>,
    ttl_s: u32,
    geo: Arc<Geo>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// What a query asks about.
enum Kind {
    Routed(Service),
    NameServer(usize),
    /// The apex, or a name with names under it: it exists, with no data of the type asked.
    Exists,
    Missing,
}

impl Authority {
    pub fn new(
        c: &RouterConfig,
        geo: Arc<Geo>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Authority> {
        let e = anyhow::Error::msg;
        let zone = c.zone_name().map_err(e)?;
        let routed = c
            .names
            .iter()
            .map(|n| (n, Service::Storefront))
            .chain(c.asset_names.iter().map(|n| (n, Service::Assets)))
            .map(|(n, service)| c.name_in_zone(n).map(|n| (LowerName::new(&n), service)))
            .collect::<Result<_, _>>()
            .map_err(e)?;
        let mut ns = Vec::new();
        let mut glue = Vec::new();
        let mut nameservers = Vec::new();
        for s in &c.dns.nameservers {
            let name = c.name_in_zone(&s.name).map_err(e)?;
            ns.push(Record::from_rdata(
                zone.clone(),
                ZONE_TTL_S,
                RData::NS(NS(name.clone())),
            ));
            if zone.zone_of(&name) {
                glue.extend(
                    s.addresses
                        .iter()
                        .map(|ip| address_record(&name, ZONE_TTL_S, *ip)),
                );
                nameservers.push((LowerName::new(&name), s.addresses.clone()));
            }
        }
        let mname = match c.dns.nameservers.first() {
            Some(s) => c.name_in_zone(&s.name).map_err(e)?,
            None => zone.clone(),
        };
        let rname = c.name_in_zone(&c.dns.hostmaster).map_err(e)?;
        // The serial changes with every start: secondaries (if any) see a new zone.
        let serial = (util::clock::now_ms().unsigned_abs() / 1000) as u32;
        let soa = Record::from_rdata(
            zone.clone(),
            c.ttl_s.min(ZONE_TTL_S),
            RData::SOA(SOA::new(mname, rname, serial, 3_600, 600, 86_400, c.ttl_s)),
        );
        Ok(Authority {
            zone: LowerName::new(&zone),
            routed,
            nameservers,
            soa,
            ns,
            glue,
            ttl_s: c.ttl_s,
            geo,
            health,
            metrics,
        })
    }

    fn kind(&self, name: &LowerName) -> Kind {
        if let Some((_, service)) = self.routed.iter().find(|(n, _)| n == name) {
            return Kind::Routed(*service);
        }
        if let Some(i) = self.nameservers.iter().position(|(n, _)| n == name) {
            return Kind::NameServer(i);
        }
        let has_children = self
            .routed
            .iter()
            .map(|(n, _)| n)
            .chain(self.nameservers.iter().map(|(n, _)| n))
            .any(|n| name.zone_of(n));
        if *name == self.zone || has_children {
            Kind::Exists
        } else {
            Kind::Missing
        }
    }
}

fn address_record(name: &Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(a) => RData::A(A(a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
    };
    Record::from_rdata(name.clone(), ttl, rdata)
}

/// The one question of a well-formed query, and its client subnet; or the error code to answer,
/// checked in the order RFCs 1035, 6891 and 7871 ask (`wire` drops answers before they come
/// here). Zone transfers are refused: the zone is made at each query, not kept.
fn accept(request: &Request) -> Result<(&LowerQuery, Option<ClientSubnet>), ResponseCode> {
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Err(ResponseCode::BADVERS);
    }
    if request.metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    let query = request
        .request_info()
        .map_err(|_| ResponseCode::FormErr)?
        .query;
    if matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR) {
        return Err(ResponseCode::Refused);
    }
    let subnet = client_subnet(request.edns.as_ref()).map_err(|()| ResponseCode::FormErr)?;
    Ok((query, subnet))
}

/// The client subnet of a query: its address and source prefix, or why it is malformed.
fn client_subnet(edns: Option<&Edns>) -> Result<Option<ClientSubnet>, ()> {
    let Some(EdnsOption::Subnet(s)) = edns.and_then(|e| e.option(EdnsCode::Subnet)) else {
        return Ok(None);
    };
    // Bits past the source prefix must be zero (RFC 7871 §6). (The decoder refuses a source
    // prefix longer than the address.)
    let (bits, value) = match s.addr() {
        IpAddr::V4(a) => (32u32, u128::from(u32::from(a))),
        IpAddr::V6(a) => (128u32, u128::from(a)),
    };
    let host_bits = bits.saturating_sub(u32::from(s.source_prefix()));
    let host_mask = if host_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - host_bits)
    };
    if value & host_mask != 0 {
        return Err(());
    }
    Ok(Some(*s))
}

#[async_trait::async_trait]
impl RequestHandler for Authority {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let (info, tally) = self.respond(request, response_handle).await;
        self.metrics.count(&tally);
        info
    }
}

impl Authority {
    /// Answers `request` through `response_handle`, and says what to count (not counted here).
    pub async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> (ResponseInfo, Tally) {
        use hickory_server::net::xfer::Protocol;
        let mut tally = Tally {
            tcp: request.protocol() != Protocol::Udp,
            ecs: false,
            routed: None,
            code: ResponseCode::NoError,
        };
        let mut edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().clamp(512, UDP_PAYLOAD_MAX));
            e.set_version(0);
            e
        });
        let (query, subnet) = match accept(request) {
            Ok(q) => q,
            Err(code) => {
                tally.code = code;
                let info = self
                    .error(request, edns.as_ref(), code, response_handle)
                    .await;
                return (info, tally);
            }
        };
        let name = query.name();
        if !self.zone.zone_of(name) || query.query_class() != DNSClass::IN {
            tally.code = ResponseCode::Refused;
            let info = self
                .error(request, edns.as_ref(), tally.code, response_handle)
                .await;
            return (info, tally);
        }

        let owner: Name = query.original().name().clone();
        let qtype = query.query_type();
        let mut answers: Vec<Record> = Vec::new();
        let mut additionals: Vec<&Record> = Vec::new();
        let mut scope = 0u8;
        let kind = self.kind(name);
        let apex = *name == self.zone;
        match (&kind, qtype) {
            (Kind::Routed(service), RecordType::A | RecordType::AAAA | RecordType::ANY) => {
                let client = match &subnet {
                    Some(s) if s.source_prefix() > 0 => {
                        tally.ecs = true;
                        s.addr()
                    }
                    _ => request.src().ip(),
                };
                let v6 = qtype == RecordType::AAAA;
                let board = self.health.board();
                let routes = board.answers(*service);
                let route = Route::new(&self.geo, routes, client);
                answers.extend(
                    route
                        .addresses(routes, v6)
                        .iter()
                        .map(|ip| address_record(&owner, self.ttl_s, *ip)),
                );
                // The router's answer counts are the storefront's.
                if *service == Service::Storefront {
                    tally.routed = Some((route.region, route.skipped > 0, route.fail_open));
                }
                // A source prefix of 0 asks for an answer that does not depend on the subnet.
                if subnet.as_ref().is_some_and(|s| s.source_prefix() > 0) {
                    scope = route.located.scope;
                }
            }
            (Kind::NameServer(i), RecordType::A | RecordType::AAAA) => {
                let v6 = qtype == RecordType::AAAA;
                answers.extend(
                    self.nameservers[*i]
                        .1
                        .iter()
                        .filter(|ip| ip.is_ipv6() == v6)
                        .map(|ip| address_record(&owner, ZONE_TTL_S, *ip)),
                );
            }
            _ if apex && qtype == RecordType::SOA => answers.push(self.soa.clone()),
            _ if apex && qtype == RecordType::NS => {
                answers.extend(self.ns.iter().cloned());
                additionals.extend(self.glue.iter());
            }
            _ => {}
        }
        if let (Some(e), Some(s)) = (edns.as_mut(), &subnet) {
            let mut echo = *s;
            echo.set_scope_prefix(scope);
            e.options_mut().insert(EdnsOption::Subnet(echo));
        }

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.response_code = match kind {
            Kind::Missing => ResponseCode::NXDomain,
            _ => ResponseCode::NoError,
        };
        tally.code = metadata.response_code;
        // A negative answer (NXDOMAIN or NODATA) carries the SOA for negative caching.
        let soa = answers.is_empty().then_some(&self.soa);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let response = builder.build(metadata, answers.iter(), [], soa, additionals);
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending a DNS response");
                failed(request)
            }
        };
        (info, tally)
    }

    /// A query whose answer panicked (a bug; the listener goes on).
    pub fn count_panic(&self) {
        tracing::error!("answering a DNS query panicked");
        self.metrics.panicked();
    }

    /// A query too malformed to parse, answered FORMERR by the listener.
    pub fn count_malformed(&self, tcp: bool) {
        self.count(&Tally {
            tcp,
            ecs: false,
            routed: None,
            code: ResponseCode::FormErr,
        });
    }

    /// The health board's generation (`Health::generation`).
    pub fn generation(&self) -> u64 {
        self.health.generation()
    }

    /// Counts an answer in the metrics.
    pub fn count(&self, tally: &Tally) {
        self.metrics.count(tally);
    }

    /// Counts an answer given again from a cache: as it was counted the first time, and as a
    /// cache hit.
    /// A UDP answer held back by response-rate limiting: sent truncated, or dropped.
    pub fn count_rate_limited(&self, truncated: bool) {
        self.metrics.rate_limited(truncated);
    }

    pub fn count_cached(&self, tally: &Tally) {
        self.metrics.count(tally);
        self.metrics.cache_hit();
    }

    async fn error<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        code: ResponseCode,
        mut response_handle: R,
    ) -> ResponseInfo {
        // (hickory puts the high bits of an extended code, BADVERS's, in the OPT record.)
        let response =
            MessageResponseBuilder::new(&request.queries, edns).error_msg(&request.metadata, code);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending a DNS error response");
                failed(request)
            }
        }
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}
