//! Whose turn it is when a lane frees: weighted fair queueing of busy
//! guests by pool, so that each tenant gets lane time in proportion to its
//! weight however many busy guests it has.
//!
//! Start-time fair queueing over pools. Each pool that has had a busy guest
//! has a flow with a virtual time: the CPU its guests had on the lanes,
//! divided by its weight. A free lane goes to the first waiter of the
//! backlogged flow with the smallest virtual time (on a tie, the flow that
//! has been waiting longer), and a pool's own waiters take turns first in,
//! first out. One scheduler, one lock, held only for these bookkeeping
//! steps; the futures and seats around it are in the parent module.
//!
//! The charge is the CPU the guest used while it held the lane, not a
//! count of turns: a guest that gives its lane back early (it waits on its
//! client) pays for what it used. The grant charges one turn's estimate in
//! advance, replaced by the real use when the lane comes back, so that with
//! several lanes those granted at the same moment already count and do not
//! all go to the same flow.
//!
//! A flow that becomes backlogged again starts at the later of its own
//! virtual time and the scheduler's (the start of the latest grant): a pool
//! idle for a while cannot bank credit and burst, and one that used more
//! than its share just before keeps its debt. A pool's weight may change at
//! a reload; it is read at every grant and settlement, so a new weight
//! counts from the next turn, and the virtual time already charged stays.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use super::super::pool::Pool;

/// A lane given to a waiter: the flow it is charged to and the estimate
/// charged in advance, settled when the lane comes back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grant {
    flow: usize,
    advance: u64,
}

/// The scheduler's state. Virtual times are nanoseconds of CPU divided by
/// the weight.
pub(super) struct Wfq {
    /// Lanes nobody holds or has been granted.
    free: usize,
    /// One turn's CPU (a tick), charged in advance at each grant.
    turn_ns: u64,
    /// The start of the latest grant; never goes back.
    now: u64,
    /// By the address of their pool, which the `Weak` keeps from being
    /// reused while the flow is kept.
    flows: HashMap<usize, Flow>,
    /// The backlogged flows: (virtual time, since, key), smallest first.
    ready: BTreeSet<(u64, u64, usize)>,
    waiters: HashMap<u64, Waiter>,
    /// Waiter ids and backlog order.
    next: u64,
    /// Flow count at which idle flows are next swept.
    sweep_at: usize,
}

struct Flow {
    pool: Weak<Pool>,
    vtime: u64,
    /// When it last became backlogged: the tie-break.
    since: u64,
    queue: VecDeque<u64>,
    /// Lanes its guests hold or have been granted.
    held: usize,
}

impl Flow {
    fn weight(&self) -> u64 {
        // A pool gone (its tenant removed) with a guest still waiting.
        self.pool.upgrade().map_or(1, |p| u64::from(p.weight()))
    }
}

struct Waiter {
    flow: usize,
    waker: Option<Waker>,
    grant: Option<Grant>,
}

const SWEEP_MIN: usize = 64;

impl Wfq {
    pub(super) fn new(lanes: usize, turn: Duration) -> Self {
        Self {
            free: lanes,
            turn_ns: nanos(turn),
            now: 0,
            flows: HashMap::new(),
            ready: BTreeSet::new(),
            waiters: HashMap::new(),
            next: 0,
            sweep_at: SWEEP_MIN,
        }
    }

    /// Puts a guest of `pool` in line; returns its waiter id. Wakers of
    /// waiters given a lane are left in `wake`, for after the lock.
    pub(super) fn join(&mut self, pool: &Arc<Pool>, wake: &mut Vec<Waker>) -> u64 {
        self.sweep();
        let key = Arc::as_ptr(pool).addr();
        let id = self.next;
        self.next += 1;
        let now = self.now;
        let flow = self.flows.entry(key).or_insert_with(|| Flow {
            pool: Arc::downgrade(pool),
            vtime: now,
            since: id,
            queue: VecDeque::new(),
            held: 0,
        });
        if flow.queue.is_empty() {
            flow.vtime = flow.vtime.max(now);
            flow.since = id;
            self.ready.insert((flow.vtime, flow.since, key));
        }
        flow.queue.push_back(id);
        self.waiters.insert(
            id,
            Waiter {
                flow: key,
                waker: None,
                grant: None,
            },
        );
        self.dispatch(wake);
        id
    }

    /// The waiter's lane, once granted (then the waiter is gone); else its
    /// waker is kept for the grant. `Ready(None)`: no such waiter.
    pub(super) fn poll(&mut self, id: u64, waker: &Waker) -> Poll<Option<Grant>> {
        let Some(waiter) = self.waiters.get_mut(&id) else {
            return Poll::Ready(None);
        };
        if waiter.grant.is_some() {
            return Poll::Ready(self.waiters.remove(&id).and_then(|w| w.grant));
        }
        if !waiter.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            waiter.waker = Some(waker.clone());
        }
        Poll::Pending
    }

    /// A waiter gone before it took its lane (its run ended or was
    /// cancelled): out of line, or its lane passed on uncharged.
    pub(super) fn cancel(&mut self, id: u64, wake: &mut Vec<Waker>) {
        let Some(waiter) = self.waiters.remove(&id) else {
            return;
        };
        if let Some(grant) = waiter.grant {
            self.release(grant, Duration::ZERO, wake);
            return;
        }
        let Some(flow) = self.flows.get_mut(&waiter.flow) else {
            return;
        };
        if let Some(at) = flow.queue.iter().position(|&w| w == id) {
            flow.queue.remove(at);
        }
        if flow.queue.is_empty() {
            self.ready.remove(&(flow.vtime, flow.since, waiter.flow));
        }
    }

    /// A lane back after its guest used `used` of CPU on it: the flow's
    /// advance is replaced by that, and the lane goes to the next in line.
    pub(super) fn release(&mut self, grant: Grant, used: Duration, wake: &mut Vec<Waker>) {
        self.free += 1;
        if let Some(flow) = self.flows.get_mut(&grant.flow) {
            flow.held = flow.held.saturating_sub(1);
            let vtime = flow
                .vtime
                .saturating_sub(grant.advance)
                .saturating_add(nanos(used) / flow.weight());
            if !flow.queue.is_empty() {
                self.ready.remove(&(flow.vtime, flow.since, grant.flow));
                self.ready.insert((vtime, flow.since, grant.flow));
            }
            flow.vtime = vtime;
        }
        self.dispatch(wake);
    }

    /// Gives free lanes to the first waiters of the flows with the
    /// smallest virtual time.
    fn dispatch(&mut self, wake: &mut Vec<Waker>) {
        while self.free > 0 {
            let Some(first) = self.ready.pop_first() else {
                return;
            };
            let (vtime, since, key) = first;
            // A flow in `ready` exists and its queue holds only live
            // waiters (`cancel` takes them out); the checks only keep a
            // broken invariant from becoming a panic or a lost lane.
            let Some(flow) = self.flows.get_mut(&key) else {
                continue;
            };
            let Some(id) = flow.queue.pop_front() else {
                continue;
            };
            let Some(waiter) = self.waiters.get_mut(&id) else {
                if !flow.queue.is_empty() {
                    self.ready.insert(first);
                }
                continue;
            };
            self.now = self.now.max(vtime);
            let advance = self.turn_ns / flow.weight();
            flow.vtime = vtime.saturating_add(advance);
            flow.held += 1;
            if !flow.queue.is_empty() {
                self.ready.insert((flow.vtime, since, key));
            }
            self.free -= 1;
            waiter.grant = Some(Grant { flow: key, advance });
            wake.extend(waiter.waker.take());
        }
    }

    /// Forgets flows that no longer matter: idle, and either behind the
    /// scheduler's virtual time (they would start there anyway) or of a
    /// pool that is gone. Run when the count doubles, so it costs little
    /// per turn and the map stays near the number of live busy pools.
    fn sweep(&mut self) {
        if self.flows.len() < self.sweep_at {
            return;
        }
        let now = self.now;
        self.flows.retain(|_, f| {
            !f.queue.is_empty() || f.held > 0 || (f.vtime > now && f.pool.strong_count() > 0)
        });
        self.sweep_at = (self.flows.len() * 2).max(SWEEP_MIN);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::sim::{Sim, TURN};
    use super::*;

    fn near(got: f64, want: f64) -> bool {
        (got - want).abs() <= 2.0
    }

    #[test]
    fn weights_one_and_three_share_the_lane_a_quarter_and_three_quarters() {
        let mut sim = Sim::new(1, &[1, 3]);
        sim.add(0, 5, TURN);
        sim.add(1, 5, TURN);
        sim.run(40);
        sim.count();
        sim.run(1000);
        let (turns, cpu) = sim.share(0);
        assert!(
            near(turns, 25.0) && near(cpu, 25.0),
            "{turns:.1}% {cpu:.1}%"
        );
        let (turns, cpu) = sim.share(1);
        assert!(
            near(turns, 75.0) && near(cpu, 75.0),
            "{turns:.1}% {cpu:.1}%"
        );
    }

    #[test]
    fn one_busy_guest_weighted_three_gets_three_quarters_against_a_hundred() {
        let mut sim = Sim::new(1, &[1, 3]);
        sim.add(0, 100, TURN);
        sim.add(1, 1, TURN);
        sim.run(100);
        sim.count();
        sim.run(2000);
        let (turns, cpu) = sim.share(1);
        assert!(
            near(turns, 75.0) && near(cpu, 75.0),
            "{turns:.1}% {cpu:.1}%"
        );
    }

    #[test]
    fn a_hundred_waiters_and_one_of_equal_weight_split_the_lane_in_half() {
        let mut sim = Sim::new(1, &[1, 1]);
        let many = sim.add(0, 100, TURN);
        sim.add(1, 1, TURN);
        sim.count();
        sim.run(1000);
        let (turns, cpu) = sim.share(0);
        assert!(
            near(turns, 50.0) && near(cpu, 50.0),
            "{turns:.1}% {cpu:.1}%"
        );
        // And the hundred took their turns round-robin: 500 turns, 5 each.
        for g in many {
            assert_eq!(sim.guests[g].clock.used(), 5 * TURN, "guest {g}");
        }
    }

    #[test]
    fn a_guest_that_gives_its_lane_back_early_pays_only_what_it_used() {
        let mut sim = Sim::new(1, &[1, 1]);
        sim.add(0, 3, TURN);
        // These wait on their clients 2 ms into each turn.
        sim.add(1, 3, Duration::from_millis(2));
        sim.count();
        sim.run(1200);
        let (turns, cpu) = sim.share(1);
        assert!(near(cpu, 50.0), "{cpu:.1}% of the CPU");
        // Five short turns for each full one.
        assert!(near(turns, 100.0 * 5.0 / 6.0), "{turns:.1}% of the turns");
    }

    #[test]
    fn a_pool_back_from_idle_gets_one_turn_not_a_burst() {
        let mut sim = Sim::new(1, &[1, 1]);
        sim.add(0, 3, TURN);
        let back = sim.add(1, 1, TURN)[0];
        sim.run(20);
        // Its guest waits on its client while the other pool runs alone.
        sim.guests[back].rests = true;
        while sim.step() != back {}
        sim.run(300);
        sim.guests[back].rests = false;
        sim.tick(back);
        // The turn already running ends first.
        sim.step();
        sim.count();
        sim.run(20);
        // One turn at once, then every other one: no credit for the 300
        // turns it missed.
        assert_eq!(sim.order[0], 1, "{:?}", sim.order);
        assert!(sim.order.windows(2).all(|w| w != [1, 1]), "{:?}", sim.order);
        assert_eq!(sim.turns[1], 10, "{:?}", sim.order);
    }

    #[test]
    fn a_new_weight_counts_from_the_next_turn() {
        let mut sim = Sim::new(1, &[1, 1]);
        sim.add(0, 4, TURN);
        sim.add(1, 4, TURN);
        sim.run(400);
        // A reload gives pool 1 weight 3.
        sim.pools[1].set(None, 3);
        sim.count();
        sim.run(1000);
        let (turns, _) = sim.share(1);
        assert!(near(turns, 75.0), "{turns:.1}%");
    }

    #[test]
    fn several_lanes_are_shared_by_weight_too() {
        let mut sim = Sim::new(3, &[1, 2]);
        sim.add(0, 10, TURN);
        sim.add(1, 10, TURN);
        sim.run(60);
        sim.count();
        sim.run(1500);
        let (turns, cpu) = sim.share(1);
        assert!(
            near(turns, 66.7) && near(cpu, 66.7),
            "{turns:.1}% {cpu:.1}%"
        );
        // Every lane is in use, none lost or doubled.
        assert_eq!(sim.running.len(), 3);
    }

    #[test]
    fn lanes_granted_before_any_comes_back_spread_over_the_pools() {
        let mut sim = Sim::new(3, &[1, 1, 1]);
        // Pool 2 holds the three lanes; its guests then wait on their
        // clients, freeing the lanes one after another.
        for g in sim.add(2, 3, TURN) {
            sim.guests[g].rests = true;
        }
        sim.add(0, 5, TURN);
        sim.add(1, 5, TURN);
        sim.run(3);
        // Each grant counts at once, before its CPU is known: the second
        // lane does not go to the pool that just got the first.
        let mut pools: Vec<usize> = sim.running.iter().map(|&g| sim.guests[g].pool).collect();
        pools.sort();
        assert!(pools == [0, 0, 1] || pools == [0, 1, 1], "{pools:?}");
    }

    #[test]
    fn flows_of_pools_that_are_gone_are_forgotten() {
        let mut wfq = Wfq::new(1, TURN);
        let waker = Waker::noop();
        let kept = Arc::new(Pool::implicit());
        for i in 0..1000 {
            // A tenant removed at a reload after its one busy turn.
            let gone = Arc::new(Pool::implicit());
            let pool = if i == 0 { &kept } else { &gone };
            let id = wfq.join(pool, &mut Vec::new());
            let Poll::Ready(Some(grant)) = wfq.poll(id, waker) else {
                panic!("the free lane was not granted");
            };
            wfq.release(grant, TURN, &mut Vec::new());
        }
        assert!(
            wfq.flows.len() <= 2 * SWEEP_MIN,
            "{} flows",
            wfq.flows.len()
        );
        // A live pool that is ahead keeps its debt.
        let key = Arc::as_ptr(&kept).addr();
        assert!(wfq.flows.get(&key).is_some_and(|f| f.vtime > wfq.now));
    }
}
