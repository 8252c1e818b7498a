//! The state machine with everything in memory: commands decided and their effects taken in,
//! orders kept in a map instead of a store, no dedup records. It is what `decide` means, run:
//! the reference the core's store-backed machine is checked against, and what the property
//! tests drive.

use std::collections::HashMap;

use super::{Input, decide};
use crate::command::{Command, Outcome};
use crate::id::OrderId;
use crate::order::Order;
use crate::record::{Record, Write};
use crate::state::State;

#[derive(Clone, Debug, Default)]
pub struct MemoryMachine {
    pub state: State,
    /// Every decided order, by id.
    pub orders: HashMap<OrderId, Order>,
    /// The last version applied.
    pub version: u64,
    /// Customers' epochs ended by erasures (`Record::EpochEnded`).
    pub ended: std::collections::BTreeSet<(crate::CustomerId, i64)>,
}

impl MemoryMachine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `command` at the next version with the proposer's clock at `at_ms`.
    pub fn apply(&mut self, command: &Command, at_ms: i64) -> Outcome {
        self.version += 1;
        let v1 = command.v1_ids_beside();
        let mut decided: HashMap<OrderId, Order> = command
            .order_ids()
            .into_iter()
            .chain(&v1)
            .filter_map(|id| self.orders.get(id).map(|o| (id.clone(), o.clone())))
            .collect();
        for (id, customer, key) in command.v1_keyed() {
            if decided.contains_key(id) {
                continue;
            }
            let mut theirs: Vec<&Order> = self
                .orders
                .values()
                .filter(|o| &o.customer_id == customer)
                .collect();
            // Newest first, as the store's index lists them (times before 1970 as 1970).
            let at = |o: &Order| o.accepted_at_ms.max(0);
            theirs.sort_by(|a, b| at(b).cmp(&at(a)).then_with(|| a.order_id.cmp(&b.order_id)));
            if let Some(o) = crate::order::v2_order_of(theirs, key) {
                decided.insert(id.clone(), o.clone());
            }
        }
        let input = Input {
            state: &self.state,
            decided: &decided,
            version: self.version,
            at_ms,
        };
        match decide(&input, command) {
            Ok(effects) => {
                for w in effects.writes {
                    match w {
                        Write::Put(Record::Order(o)) => {
                            self.orders.insert(o.order_id.clone(), *o);
                        }
                        Write::Put(Record::EpochEnded(customer, epoch, _)) => {
                            self.ended.insert((customer, epoch));
                        }
                        w => self.state.apply(w),
                    }
                }
                effects.outcome
            }
            Err(refusal) => Outcome::Rejected(refusal),
        }
    }
}
