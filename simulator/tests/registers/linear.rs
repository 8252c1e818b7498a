//! A linearizability check (Wing and Gong's search, with the memo of Lowe's refinement) of the
//! operations clients ran on one object: is there an order of them, each taking effect
//! between its call and its answer, in which the object's model gives every answer seen? An
//! operation whose answer was lost (a timeout) may take effect at any time after its call, or
//! never.

use std::collections::HashSet;

/// One operation on one object; its times are the numbers of its call and answer among all
/// the events of a run, in the order they happened.
#[derive(Clone, Debug)]
pub struct Op<I, O> {
    pub input: I,
    pub called: f64,
    /// The answer and when it came; `None` when it never came.
    pub answered: Option<(f64, O)>,
}

/// An object's model: the state after `input` from `state`, if the object could answer
/// `output` (`None` for an operation whose answer was lost: any answer will do).
pub trait Model {
    type State: Clone + Eq + std::hash::Hash;
    type Input;
    type Output;
    fn init(&self) -> Self::State;
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// What the search found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the answers.
    Violation,
    /// The search gave up after its budget of steps (not counted as a violation).
    Undecided,
}

/// Most operations one check takes (one bit each in the search's memo).
pub const OPS_MAX: usize = 128;
const STEPS_MAX: u64 = 2_000_000;

pub fn check<M: Model>(model: &M, ops: &[Op<M::Input, M::Output>]) -> Verdict {
    assert!(
        ops.len() <= OPS_MAX,
        "at most {OPS_MAX} operations per check"
    );
    let answered = |o: &Op<M::Input, M::Output>| o.answered.as_ref().map_or(f64::INFINITY, |a| a.0);
    let must: u128 = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.answered.is_some())
        .fold(0, |m, (i, _)| m | 1 << i);
    let mut seen: HashSet<(u128, M::State)> = HashSet::new();
    let mut stack = vec![(0u128, model.init())];
    let mut steps = 0u64;
    while let Some((done, state)) = stack.pop() {
        if done & must == must {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > STEPS_MAX {
            return Verdict::Undecided;
        }
        // The earliest answer among operations not yet placed: whatever goes next was called
        // before it.
        let first_answer = ops
            .iter()
            .enumerate()
            .filter(|(i, _)| done & (1 << i) == 0)
            .map(|(_, o)| answered(o))
            .fold(f64::INFINITY, f64::min);
        for (i, op) in ops.iter().enumerate() {
            if done & (1 << i) != 0 || op.called > first_answer {
                continue;
            }
            let Some(next) = model.step(&state, &op.input, op.answered.as_ref().map(|a| &a.1))
            else {
                continue;
            };
            let key = (done | 1 << i, next);
            if seen.insert(key.clone()) {
                stack.push(key);
            }
        }
    }
    Verdict::Violation
}

/// A register: `Some(v)` writes `v`, `None` reads (answering the value, `None` if unset).
pub struct Register;

impl Model for Register {
    type State = Option<String>;
    type Input = Option<String>;
    type Output = Option<String>;

    fn init(&self) -> Self::State {
        None
    }

    fn step(
        &self,
        s: &Self::State,
        i: &Self::Input,
        o: Option<&Self::Output>,
    ) -> Option<Self::State> {
        match i {
            Some(v) => Some(Some(v.clone())),
            None => (o.is_none_or(|o| o == s)).then(|| s.clone()),
        }
    }
}

/// A counter: `true` adds one (answering the new count), `false` reads it.
pub struct Counter;

impl Model for Counter {
    type State = u64;
    type Input = bool;
    type Output = u64;

    fn init(&self) -> u64 {
        0
    }

    fn step(&self, s: &u64, add: &bool, o: Option<&u64>) -> Option<u64> {
        let next = if *add { s + 1 } else { *s };
        o.is_none_or(|o| *o == next).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op<I, O>(input: I, called: f64, answered: Option<(f64, O)>) -> Op<I, O> {
        Op {
            input,
            called,
            answered,
        }
    }

    #[test]
    fn a_stale_read_after_a_write_answered_is_a_violation() {
        let w = op(Some("1".to_owned()), 0.0, Some((1.0, None)));
        let stale = op(None, 2.0, Some((3.0, None)));
        assert_eq!(check(&Register, &[w.clone(), stale]), Verdict::Violation);
        let overlapping = op(None, 0.5, Some((3.0, None)));
        assert_eq!(check(&Register, &[w, overlapping]), Verdict::Linearizable);
    }

    #[test]
    fn a_lost_answer_may_take_effect_late_or_never() {
        let lost = op(Some("1".to_owned()), 0.0, None);
        let before = op(None, 1.0, Some((2.0, None)));
        let after = op(None, 3.0, Some((4.0, Some("1".to_owned()))));
        assert_eq!(
            check(&Register, &[lost.clone(), before.clone(), after]),
            Verdict::Linearizable
        );
        let back = op(None, 5.0, Some((6.0, None)));
        let after = op(None, 3.0, Some((4.0, Some("1".to_owned()))));
        assert_eq!(
            check(&Register, &[lost, before, after, back]),
            Verdict::Violation
        );
    }

    #[test]
    fn a_count_that_skips_or_repeats_is_a_violation() {
        let a = op(true, 0.0, Some((1.0, 1)));
        let b = op(true, 2.0, Some((3.0, 3)));
        assert_eq!(check(&Counter, &[a.clone(), b]), Verdict::Violation);
        let lost = op(true, 1.5, None);
        let b = op(true, 2.0, Some((3.0, 3)));
        assert_eq!(
            check(&Counter, &[a.clone(), lost, b]),
            Verdict::Linearizable
        );
        let twice = op(true, 2.0, Some((3.0, 1)));
        assert_eq!(check(&Counter, &[a, twice]), Verdict::Violation);
    }
}
