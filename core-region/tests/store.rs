//! The `Store` contract, checked against every backend: atomic fenced commits, ordered paged
//! scans, reads of a consistent snapshot. redb always; FoundationDB when this is built with
//! `--features foundationdb` and `FDB_CLUSTER_FILE` names a reachable cluster.

use core_region::store::{Op, Store, StoreError, WriteBatch};

fn batch(from: u64, to: u64, ops: Vec<Op>) -> WriteBatch {
    WriteBatch {
        from_applied: from,
        to_applied: to,
        ops,
    }
}

fn conformance(s: &dyn Store) {
    assert_eq!(s.applied().unwrap(), 0);
    let rows: Vec<Op> = (0..300u32)
        .map(|i| Op::Put(format!("P{i:05}").into_bytes(), i.to_be_bytes().to_vec()))
        .collect();
    s.commit(&batch(0, 1, rows)).unwrap();
    assert_eq!(s.applied().unwrap(), 1);

    // A batch from a stale index is refused whole.
    let stale = s.commit(&batch(0, 2, vec![Op::Put(b"Pzzz".to_vec(), vec![1])]));
    assert!(
        matches!(
            stale,
            Err(StoreError::Fenced {
                expected: 0,
                found: 1
            })
        ),
        "{stale:?}"
    );
    assert_eq!(s.get(b"Pzzz").unwrap(), None);

    // Deletes and puts in one batch, in order.
    s.commit(&batch(
        1,
        2,
        vec![
            Op::Delete(b"P00000".to_vec()),
            Op::Put(b"P00001".to_vec(), b"x".to_vec()),
            Op::Delete(b"P00001".to_vec()),
            Op::Put(b"Q".to_vec(), b"q".to_vec()),
        ],
    ))
    .unwrap();
    let got = s
        .get_many(&[
            b"P00000".to_vec(),
            b"P00001".to_vec(),
            b"P00002".to_vec(),
            b"Q".to_vec(),
        ])
        .unwrap();
    assert_eq!(got[0], None);
    assert_eq!(got[1], None);
    assert_eq!(got[2].as_deref(), Some(2u32.to_be_bytes().as_slice()));
    assert_eq!(got[3].as_deref(), Some(b"q".as_slice()));

    // Scans are ordered, bounded, and page without gaps or repeats.
    let first = s.scan(b"P", b"Q", 10).unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].0, b"P00002");
    let mut seen = 0;
    let mut last: Vec<u8> = Vec::new();
    s.for_each(b"P", b"Q", 7, &mut |k, _| {
        assert!(k > last.as_slice());
        last = k.to_vec();
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, 298);
    assert!(s.scan(b"R", b"S", 10).unwrap().is_empty());
}

#[test]
fn redb_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = core_region::store::redb::RedbStore::open(&dir.path().join("s.redb")).unwrap();
    conformance(&s);
}

#[cfg(feature = "foundationdb")]
#[test]
fn foundationdb_backend_keeps_the_contract() {
    let Ok(cluster_file) = std::env::var("FDB_CLUSTER_FILE") else {
        eprintln!("FDB_CLUSTER_FILE is not set: no FoundationDB cluster to test against");
        return;
    };
    let network = core_region::store::fdb::FdbNetwork::start();
    let prefix = format!(
        "tradewind-test/{}/{}/",
        std::process::id(),
        rand::random::<u64>()
    );
    let s = core_region::store::fdb::FdbStore::open(&network, &cluster_file, prefix.as_bytes())
        .unwrap();
    conformance(&s);
    drop(s);
    drop(network);
}
