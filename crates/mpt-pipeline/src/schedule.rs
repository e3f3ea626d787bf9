//! Which stage goes next: a scheduler over the stage graph's ready set, the stages whose
//! inputs are all settled. It knows only the dependency edges; what "settled" means (ran,
//! found done, not selected) is the coordinator's business, and so is running anything.

use crate::plan::Plan;

/// Where a stage stands in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Not handed out yet.
    Waiting,
    /// Handed out by [`Scheduler::next_ready`], not settled yet.
    Taken,
    /// Settled by [`Scheduler::settle`].
    Settled,
}

/// The ready set of a stage graph (`deps[i]`: the stages stage `i` needs).
#[derive(Debug, Clone)]
pub struct Scheduler {
    deps: Vec<Vec<usize>>,
    slots: Vec<Slot>,
}

impl Scheduler {
    /// A schedule over `plan`, nothing settled.
    pub fn for_plan(plan: &Plan) -> Self {
        Self::new(plan.stages.iter().map(|s| s.deps.clone()).collect())
    }

    /// A schedule over a graph given by its dependency lists (`deps[i]` indexes into `deps`).
    pub fn new(deps: Vec<Vec<usize>>) -> Self {
        let slots = vec![Slot::Waiting; deps.len()];
        Self { deps, slots }
    }

    /// Stages not handed out yet whose inputs are all settled, in plan order.
    pub fn ready(&self) -> Vec<usize> {
        (0..self.deps.len()).filter(|&i| self.is_ready(i)).collect()
    }

    fn is_ready(&self, i: usize) -> bool {
        self.slots[i] == Slot::Waiting && self.deps[i].iter().all(|&d| self.slots.get(d) == Some(&Slot::Settled))
    }

    /// Hands out the first ready stage in plan order (None when none is ready). Run one at a
    /// time, settling each before the next, this visits a plan (dependencies first) in plan
    /// order.
    pub fn next_ready(&mut self) -> Option<usize> {
        let i = (0..self.deps.len()).find(|&i| self.is_ready(i))?;
        self.slots[i] = Slot::Taken;
        Some(i)
    }

    /// Marks stage `i` settled: the stages that wait on it may become ready.
    pub fn settle(&mut self, i: usize) {
        self.slots[i] = Slot::Settled;
    }

    /// Stages never settled (after the last [`Scheduler::next_ready`]: those waiting on inputs that
    /// can never settle, which a plan built by [`crate::plan::build`] does not have).
    pub fn unsettled(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.slots[i] != Slot::Settled).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 and 1 are roots; 2 needs both; 3 needs 2; 4 needs 0.
    fn diamond() -> Scheduler {
        Scheduler::new(vec![vec![], vec![], vec![0, 1], vec![2], vec![0]])
    }

    #[test]
    fn the_ready_set_holds_the_stages_whose_inputs_are_settled_in_plan_order() {
        let mut s = diamond();
        assert_eq!(s.ready(), [0, 1]);
        assert_eq!(s.next_ready(), Some(0));
        assert_eq!(s.ready(), [1], "a taken stage is not ready, and 4 waits until 0 is settled");
        s.settle(0);
        assert_eq!(s.ready(), [1, 4]);
        assert_eq!(s.next_ready(), Some(1));
        assert_eq!(s.next_ready(), Some(4));
        assert_eq!(s.ready(), Vec::<usize>::new(), "2 waits on 1");
        s.settle(4);
        s.settle(1);
        assert_eq!(s.ready(), [2]);
        assert_eq!(s.next_ready(), Some(2));
        assert_eq!(s.next_ready(), None);
        s.settle(2);
        assert_eq!(s.next_ready(), Some(3));
        s.settle(3);
        assert_eq!(s.next_ready(), None);
        assert!(s.unsettled().is_empty());
    }

    #[test]
    fn one_at_a_time_the_schedule_is_the_plan_order() {
        let mut s = diamond();
        let mut order = Vec::new();
        while let Some(i) = s.next_ready() {
            order.push(i);
            s.settle(i);
        }
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn stages_waiting_on_what_never_settles_are_reported() {
        // 1 needs 2, which needs 1: neither is ever ready.
        let mut s = Scheduler::new(vec![vec![], vec![2], vec![1]]);
        assert_eq!(s.next_ready(), Some(0));
        s.settle(0);
        assert_eq!(s.next_ready(), None);
        assert_eq!(s.unsettled(), [1, 2]);
    }
}
