//! Golden bytes of every format this crate stores or sends: Raft's record of what was applied
//! (`RaftMeta`), the Raft log's values (`raft::LOG`: entries, votes, log ids) and the mesh's
//! frames (`frame::PROTOCOL`). Each sample must encode to exactly the bytes kept in
//! `tests/golden/`, and those bytes must read back to it: a changed layout, ours or
//! openraft's after an upgrade, fails here rather than on a mixed-version mesh.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use codec::{Format, check_golden, check_golden_as};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership, Vote};
use replication::frame::PROTOCOL;
use replication::protocol::{
    Entry, FeedMessage, Member, MeshRequest, MeshResponse, NodeId, Payload, PreVote, Subscribe,
    WriteError,
};
use replication::raft::{LOG, RaftMeta};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.hex"))
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 2), index)
}

fn membership() -> Membership<NodeId, Member> {
    let nodes: BTreeMap<NodeId, Member> = (1..=3)
        .map(|id| {
            let m = Member {
                name: format!("region-{id}"),
                raft_addr: format!("127.0.{id}.1:7102"),
                admin_url: format!("http://127.0.{id}.1:7101"),
            };
            (id, m)
        })
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

/// For types without `PartialEq` (openraft's requests): the bytes must match, and decoding
/// them must give a value that encodes to the same bytes.
fn golden_bytes<T: Serialize + DeserializeOwned>(format: Format, name: &str, value: &T) {
    let bytes = codec::encode_as(format, value).unwrap();
    let p = path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() && !p.exists() {
        std::fs::write(&p, codec::hex(&bytes) + "\n").unwrap();
    }
    let kept = codec::unhex(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(
        codec::hex(&kept),
        codec::hex(&bytes),
        "{format} changed layout ({name}): give it a new version"
    );
    let back: T = codec::decode_as(format, &kept).unwrap();
    assert_eq!(codec::encode_as(format, &back).unwrap(), kept, "{name}");
}

#[test]
fn raft_meta() {
    let meta = RaftMeta {
        last_applied: Some(log_id(3, 41)),
        membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
    };
    check_golden(&path("raft-meta-v1"), &meta).unwrap();
}

/// A backup is read by whatever build restores it, perhaps a release later: the file, and the
/// contents whose exact bytes its digest covers.
#[test]
fn backup() {
    use replication::raft::backup::{BackupFile, CONTENTS, Contents};
    let contents = Contents {
        taken_at_ms: 1_796_000_000_000,
        node: 2,
        last_applied: Some(log_id(3, 41)),
        membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
        state: vec![1, 2, 3, 255],
    };
    check_golden_as(CONTENTS, &path("backup-contents-v1"), &contents).unwrap();
    let file = BackupFile {
        contents: vec![9, 8, 7],
        sha256: [7; 32],
    };
    check_golden(&path("backup-v1"), &file).unwrap();
}

#[test]
fn raft_log_values() {
    let normal = Entry {
        log_id: log_id(3, 42),
        payload: EntryPayload::Normal(Payload(vec![1, 2, 3, 255])),
    };
    check_golden_as(LOG, &path("raft-log-v1-entry-normal"), &normal).unwrap();
    let change = Entry {
        log_id: log_id(1, 1),
        payload: EntryPayload::Membership(membership()),
    };
    check_golden_as(LOG, &path("raft-log-v1-entry-membership"), &change).unwrap();
    let blank = Entry {
        log_id: log_id(4, 43),
        payload: EntryPayload::Blank,
    };
    check_golden_as(LOG, &path("raft-log-v1-entry-blank"), &blank).unwrap();
    let mut vote = Vote::new(4, 2);
    vote.commit();
    check_golden_as(LOG, &path("raft-log-v1-vote"), &vote).unwrap();
    check_golden_as(LOG, &path("raft-log-v1-log-id"), &Some(log_id(4, 43))).unwrap();
}

#[test]
fn mesh_frames() {
    golden_bytes(
        PROTOCOL,
        "mesh-frame-v2-write",
        &MeshRequest::Write(Payload(vec![9, 8, 7])),
    );
    golden_bytes(
        PROTOCOL,
        "mesh-frame-v2-submit",
        &MeshRequest::Submit(Payload(vec![1])),
    );
    golden_bytes(
        PROTOCOL,
        "mesh-frame-v2-subscribe",
        &MeshRequest::Subscribe(Subscribe { from_version: 77 }),
    );
    golden_bytes(
        PROTOCOL,
        "mesh-frame-v2-pre-vote",
        &MeshRequest::PreVote(PreVote {
            candidate: 2,
            last_log: Some(log_id(3, 42)),
        }),
    );
    golden_bytes(
        PROTOCOL,
        "mesh-frame-v2-append-entries",
        &MeshRequest::AppendEntries(openraft::raft::AppendEntriesRequest {
            vote: Vote::new_committed(4, 2),
            prev_log_id: Some(log_id(3, 42)),
            entries: vec![Entry {
                log_id: log_id(4, 43),
                payload: EntryPayload::Normal(Payload(vec![5, 6])),
            }],
            leader_commit: Some(log_id(3, 42)),
        }),
    );
    golden_bytes(
        PROTOCOL,
        "mesh-frame-v2-feed-changes",
        &MeshResponse::Feed(FeedMessage::Changes {
            version: 43,
            rows: vec![
                (b"Pp-1".to_vec(), Some(vec![1, 2])),
                (b"Nflash".to_vec(), None),
            ],
        }),
    );
    golden_bytes(
        PROTOCOL,
        "mesh-frame-v2-write-refused",
        &MeshResponse::Write(Err(WriteError::refused(
            fault::Kind::InvalidBody,
            "not an edge write",
        ))),
    );
    golden_bytes(
        PROTOCOL,
        "mesh-frame-v2-read",
        &MeshRequest::Read(Payload(vec![4, 2])),
    );
    golden_bytes(
        PROTOCOL,
        "mesh-frame-v2-read-answer",
        &MeshResponse::Read(Ok(Payload(vec![2, 4]))),
    );
}

/// Every kind of refusal keeps its encoding in a refusal frame (a kind's place in
/// `fault::Kind`): the golden file holds each kind with its stable name, and each must read
/// back as the kind of that name, so a kind inserted before others (rather than added at the
/// end) fails here.
#[test]
fn refusal_kinds_keep_their_encoding() {
    let p = path("mesh-frame-v2-fault-kinds");
    if std::env::var_os("UPDATE_GOLDEN").is_some() && !p.exists() {
        let named: Vec<(fault::Kind, &str)> =
            fault::Kind::ALL.iter().map(|k| (*k, k.slug())).collect();
        let bytes = codec::encode_as(PROTOCOL, &named).unwrap();
        std::fs::write(&p, codec::hex(&bytes) + "\n").unwrap();
    }
    let kept = codec::unhex(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let named: Vec<(fault::Kind, String)> = codec::decode_as(PROTOCOL, &kept).unwrap();
    assert!(named.len() >= 34, "{named:?}");
    for (kind, slug) in named {
        assert_eq!(
            kind.slug(),
            slug,
            "a kind was inserted before {slug}: add kinds at the end"
        );
    }
}

/// A frame of a protocol version this build no longer speaks (a peer not yet upgraded) is
/// refused with both versions named, never misread.
#[test]
fn a_frame_of_a_retired_version_is_refused_by_name() {
    let v1 = codec::unhex(&std::fs::read_to_string(path("retired/mesh-frame-v1-write")).unwrap())
        .unwrap();
    let err = replication::frame::decode_body::<MeshRequest>(&v1).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown format version 1 (this build reads 2)"),
        "{err}"
    );
}
