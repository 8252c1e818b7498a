//! Answers already given, kept by each UDP loop. An answer depends only on the query's bytes
//! after its ID, on the source address (when the query has no client subnet) and on the health
//! board: the zone and the geo data do not change while the router runs. So the same bytes from
//! the same address under the same board get the answer given before, with the query's ID, and
//! are counted as that answer was, without parsing the query or building the answer again.
//! Each loop keeps its own cache, so no lock is taken per query.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::metrics::Tally;

/// Longer queries are answered without the cache (a storefront query with a client subnet is
/// about 60 bytes).
const QUERY_MAX: usize = 512;
/// What an entry costs besides its key's and answer's bytes: the map's slot, the boxes' headers
/// and the allocator's rounding, roughly.
const ENTRY_OVERHEAD: usize = 128;
/// A DNS header: the ID, then 10 bytes the key keeps.
const HEADER_BYTES: usize = 12;

pub struct AnswerCache {
    /// The board generation the entries were answered under.
    generation: u64,
    /// Key: the query without its ID, then the source address and its family.
    entries: HashMap<Box<[u8]>, Cached>,
    bytes: usize,
    /// What `bytes` may reach; when an entry would take it past, the cache starts over.
    bytes_max: usize,
    /// The key being looked up (kept to spare an allocation per query).
    key: Vec<u8>,
}

struct Cached {
    answer: Box<[u8]>,
    tally: Tally,
}

impl AnswerCache {
    /// A cache of at most about `bytes_max` bytes.
    pub fn new(bytes_max: usize) -> AnswerCache {
        AnswerCache {
            generation: 0,
            entries: HashMap::new(),
            bytes: 0,
            bytes_max,
            key: Vec::with_capacity(QUERY_MAX + 17),
        }
    }

    /// The answer given before to `query` from `src`, with `query`'s ID, and what it counted;
    /// none when there is none under board `generation` (read before answering anything).
    pub fn lookup(
        &mut self,
        generation: u64,
        query: &[u8],
        src: IpAddr,
    ) -> Option<(Vec<u8>, Tally)> {
        if generation != self.generation {
            self.entries.clear();
            self.bytes = 0;
            self.generation = generation;
        }
        if !self.make_key(query, src) {
            return None;
        }
        let hit = self.entries.get(self.key.as_slice())?;
        let mut answer = hit.answer.to_vec();
        answer[..2].copy_from_slice(&query[..2]);
        Some((answer, hit.tally))
    }

    /// Keeps `answer` to `query` from `src` (the query just looked up and missed).
    pub fn keep(&mut self, query: &[u8], src: IpAddr, answer: &[u8], tally: Tally) {
        if answer.len() < HEADER_BYTES || !self.make_key(query, src) {
            return;
        }
        let cost = self.key.len() + answer.len() + ENTRY_OVERHEAD;
        if self.bytes + cost > self.bytes_max {
            self.entries.clear();
            self.bytes = 0;
        }
        let cached = Cached {
            answer: answer.into(),
            tally,
        };
        if self
            .entries
            .insert(self.key.as_slice().into(), cached)
            .is_none()
        {
            self.bytes += cost;
        }
    }

    /// Entries kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets `key` for `query` from `src`; false when the query is not one to cache.
    fn make_key(&mut self, query: &[u8], src: IpAddr) -> bool {
        if !(HEADER_BYTES..=QUERY_MAX).contains(&query.len()) {
            return false;
        }
        self.key.clear();
        self.key.extend_from_slice(&query[2..]);
        match src {
            IpAddr::V4(a) => {
                self.key.extend_from_slice(&a.octets());
                self.key.push(4);
            }
            IpAddr::V6(a) => {
                self.key.extend_from_slice(&a.octets());
                self.key.push(6);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::op::ResponseCode;

    const TALLY: Tally = Tally {
        tcp: false,
        ecs: true,
        routed: Some((1, false, false)),
        code: ResponseCode::NoError,
    };

    fn query(id: u16, name: &[u8]) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(name);
        q
    }

    #[test]
    fn the_same_bytes_from_the_same_address_get_the_same_answer_with_their_own_id() {
        let mut c = AnswerCache::new(1 << 20);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let q = query(7, b"\x03www");
        assert!(c.lookup(1, &q, src).is_none());
        let mut answer = q.clone();
        answer.extend_from_slice(b"answer");
        c.keep(&q, src, &answer, TALLY);

        let (again, tally) = c.lookup(1, &query(0xabcd, b"\x03www"), src).unwrap();
        assert_eq!(&again[..2], &[0xab, 0xcd]);
        assert_eq!(&again[2..], &answer[2..]);
        assert_eq!(tally, TALLY);

        // Another address, another name (or case), another board: not the same answer.
        assert!(c.lookup(1, &q, "192.0.2.2".parse().unwrap()).is_none());
        assert!(
            c.lookup(1, &q, "::ffff:192.0.2.1".parse().unwrap())
                .is_none()
        );
        assert!(c.lookup(1, &query(7, b"\x03WWW"), src).is_none());
        assert!(c.lookup(2, &q, src).is_none());
        assert!(c.is_empty(), "a new board empties the cache");
    }

    #[test]
    fn short_and_long_queries_are_not_kept_and_the_bytes_are_bounded() {
        const BYTES_MAX: usize = 4 << 20;
        let mut c = AnswerCache::new(BYTES_MAX);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        c.keep(&[0; 11], src, &[0; 20], TALLY);
        let long = query(1, &[b'a'; QUERY_MAX]);
        c.keep(&long, src, &[0; 20], TALLY);
        assert!(c.is_empty());
        assert!(c.lookup(0, &long, src).is_none());

        let answer = vec![0u8; 1_000];
        let mut most = 0;
        for i in 0..20_000u32 {
            let q = query(1, &i.to_be_bytes());
            assert!(c.lookup(0, &q, src).is_none());
            c.keep(&q, src, &answer, TALLY);
            most = most.max(c.len());
            assert!(c.bytes <= BYTES_MAX);
        }
        assert!(most > 1_000, "{most} entries at most");
        assert!(most < 20_000, "{most} entries at most");
    }
}
