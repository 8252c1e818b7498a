//! The shell carries out exactly what `commerce::decide` decides: any history of stock changes,
//! grants, returns, edge commits and central orders, applied over a real redb file in batches
//! of any size, with the log replayed and the store reopened at any point, gives the outcomes,
//! the state and the stored orders of the in-memory machine (`commerce::decide::MemoryMachine`)
//! that applies the same commands one by one.

use std::collections::BTreeMap;
use std::sync::Arc;

use commerce::command::Proposal;
use commerce::decide::MemoryMachine;
use commerce::escrow::Inventory;
use commerce::testing::{catalog, op};
use core_region::machine::{LogEntry, StateMachine};
use core_region::reads::read_order;
use core_region::store::redb::RedbStore;
use proptest::prelude::*;

fn open(path: &std::path::Path) -> StateMachine {
    StateMachine::open(Arc::new(RedbStore::open(path).unwrap())).unwrap()
}

fn inventories(m: &commerce::state::State) -> BTreeMap<String, Inventory> {
    m.inventories()
        .map(|(s, i)| (s.to_string(), i.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_store_backed_machine_is_the_in_memory_one(
        ops in proptest::collection::vec(op(), 1..40),
        cuts in proptest::collection::vec(1usize..6, 1..40),
        reopen_at in proptest::collection::vec(any::<bool>(), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("core.redb");
        let mut m = open(&path);
        let mut model = MemoryMachine::new();
        let mut log: Vec<LogEntry> = Vec::new();
        let mut next_id = 0u128;
        let mut proposal = |command| {
            next_id += 1;
            let id = next_id.to_be_bytes();
            Proposal { command_id: id, fingerprint: id, at_ms: 0, command, key_ms: None, actor: None }
        };
        let seed: Vec<Proposal> = catalog().into_iter().map(&mut proposal).collect();
        for p in &seed {
            model.apply(&p.command, p.at_ms);
        }
        let entries = LogEntry::numbered(1, seed);
        m.apply(&entries).unwrap();
        log.extend(entries);
        let mut i = 0;
        let mut round = 0;
        while i < ops.len() {
            let n = cuts[round % cuts.len()].min(ops.len() - i);
            // Commands priced from the state before the batch, as edges price from their mirror.
            let proposals: Vec<Proposal> =
                ops[i..i + n].iter().map(|op| proposal(op.command(m.state()))).collect();
            let expected: Vec<_> =
                proposals.iter().map(|p| model.apply(&p.command, p.at_ms)).collect();
            let batch = LogEntry::numbered(m.applied() + 1, proposals);
            let outcomes = m.apply(&batch).unwrap();
            prop_assert_eq!(outcomes, expected);
            log.extend(batch);
            prop_assert_eq!(inventories(m.state()), inventories(&model.state));
            // Replaying the whole log so far (a restart that re-reads its log) changes nothing.
            m.apply(&log).unwrap();
            prop_assert_eq!(inventories(m.state()), inventories(&model.state));
            if reopen_at[round % reopen_at.len()] {
                drop(m);
                m = open(&path);
                prop_assert_eq!(inventories(m.state()), inventories(&model.state), "reloaded state differs");
            }
            i += n;
            round += 1;
        }
        for (id, order) in &model.orders {
            let stored = read_order(&**m.store(), id).unwrap();
            prop_assert_eq!(stored.as_ref(), Some(order));
        }
    }
}
