//! The first-come-first-served waiting protocol, as a plain function over a [`Queue`].
//!
//! The same [`acquire`] runs over files in production ([`super::files::Files`]) and over an
//! in-memory queue under loom (`tests` below), so the model checks the code that ships. Each
//! [`Queue`] method is one step whose effect the other participants see atomically; the file
//! implementation documents how it keeps each step atomic (or harmlessly retryable) on disk.

use atomic_file::lock::{Mode, Wait};

/// The steps of the waiting protocol. See the module docs of [`crate::mutex`] for the files
/// behind each step.
pub(crate) trait Queue {
    /// The main lock, held (this is what provides mutual exclusion).
    type Held;
    /// This waiter's own ticket, locked by it while it waits.
    type Ticket;
    /// This waiter's registration as "waiting"; releasing it is dropping it.
    type Registration;
    /// Errors of the underlying storage.
    type Error;

    /// Whether any live waiter is registered. Never waits.
    fn has_waiters(&self) -> Result<bool, Self::Error>;
    /// Takes the main lock in `mode`, waiting as `wait` says; `None` when the wait ran out.
    fn lock_main(&self, mode: Mode, wait: Wait) -> Result<Option<Self::Held>, Self::Error>;
    /// Registers as a waiter (which makes newcomers queue instead of taking the fast path).
    fn register(&self, wait: Wait) -> Result<Option<Self::Registration>, Self::Error>;
    /// Takes the next ticket number and publishes the ticket, already locked.
    fn take_ticket(&self) -> Result<(u64, Self::Ticket), Self::Error>;
    /// The greatest published ticket number below `n`, if any.
    fn predecessor(&self, n: u64) -> Result<Option<u64>, Self::Error>;
    /// Waits until ticket `p` is no longer held by a live waiter, removing it if its owner died.
    /// `false` when the wait ran out first.
    fn wait_for(&self, p: u64, wait: Wait) -> Result<bool, Self::Error>;
    /// Withdraws this waiter's ticket `n`: unlocks it, which wakes the waiter behind. A waiter
    /// that gives up also removes the name first; one that `acquired` the main lock leaves the
    /// name for the waiter behind (or the next newcomer) to remove, which keeps a directory
    /// update off the hand-over's critical path.
    fn leave(&self, n: u64, ticket: Self::Ticket, acquired: bool);
}

/// Takes the main lock in `mode`: at once if nobody is queued and it is free, otherwise in
/// ticket order. `Ok(None)`: busy (`Wait::Never`) or the wait ran out; nothing is left behind.
pub(crate) fn acquire<Q: Queue>(
    q: &Q,
    mode: Mode,
    wait: Wait,
) -> Result<Option<Q::Held>, Q::Error> {
    // Fast path: with nobody registered, a free lock is taken directly. A newcomer never takes
    // it while someone is registered, so it cannot overtake a queued waiter.
    if !q.has_waiters()? {
        if let Some(held) = q.lock_main(mode, Wait::Never)? {
            return Ok(Some(held));
        }
    }
    if wait == Wait::Never {
        return Ok(None);
    }
    let Some(registration) = q.register(wait)? else {
        return Ok(None);
    };
    let (n, ticket) = q.take_ticket()?;
    let result = wait_turn(q, n, mode, wait);
    // Holding the main lock (or giving up): the successor may now move up, and newcomers may
    // take the fast path once every registration is gone.
    let acquired = matches!(result, Ok(Some(_)));
    q.leave(n, ticket, acquired);
    drop(registration);
    result
}

fn wait_turn<Q: Queue>(q: &Q, n: u64, mode: Mode, wait: Wait) -> Result<Option<Q::Held>, Q::Error> {
    loop {
        match q.predecessor(n)? {
            // Not at the head: wait for the nearest earlier ticket to go, then look again (it may
            // have been a waiter that timed out, with more waiters ahead of it).
            Some(p) => {
                if !q.wait_for(p, wait)? {
                    return Ok(None);
                }
            }
            // At the head: only the kernel lock is left to wait for.
            None => return q.lock_main(mode, wait),
        }
    }
}

#[cfg(all(test, loom))]
mod tests {
    //! loom model of [`acquire`] over an in-memory queue: the main lock is a reader-writer
    //! state under a mutex, tickets a set of numbers, registrations a counter. Blocking waits
    //! are condition-variable waits (loom has no clock, so timed waits are not modelled; they
    //! differ from `Forever` only in giving up, which `leave` covers).

    use super::*;
    use crate::sync::{Arc, Condvar, Mutex};
    use std::collections::BTreeSet;

    #[derive(Default)]
    struct State {
        exclusive: bool,
        shared: usize,
        registered: usize,
        seq: u64,
        tickets: BTreeSet<u64>,
        /// (ticket, thread) in the order the main lock was granted to ticket holders.
        granted: Vec<u64>,
        inside_exclusive: usize,
    }

    #[derive(Default)]
    struct Mem {
        state: Mutex<State>,
        changed: Condvar,
    }

    struct Q {
        mem: Arc<Mem>,
    }

    struct Held {
        mem: Arc<Mem>,
        mode: Mode,
    }

    impl Drop for Held {
        fn drop(&mut self) {
            let mut s = self.mem.state.lock().unwrap();
            match self.mode {
                Mode::Exclusive => s.exclusive = false,
                Mode::Shared => s.shared -= 1,
            }
            drop(s);
            self.mem.changed.notify_all();
        }
    }

    struct Registration(Arc<Mem>);

    impl Drop for Registration {
        fn drop(&mut self) {
            self.0.state.lock().unwrap().registered -= 1;
            self.0.changed.notify_all();
        }
    }

    impl Queue for Q {
        type Held = Held;
        type Ticket = ();
        type Registration = Registration;
        type Error = std::convert::Infallible;

        fn has_waiters(&self) -> Result<bool, Self::Error> {
            Ok(self.mem.state.lock().unwrap().registered > 0)
        }

        fn lock_main(&self, mode: Mode, wait: Wait) -> Result<Option<Held>, Self::Error> {
            let mut s = self.mem.state.lock().unwrap();
            loop {
                let free = match mode {
                    Mode::Exclusive => !s.exclusive && s.shared == 0,
                    Mode::Shared => !s.exclusive,
                };
                if free {
                    match mode {
                        Mode::Exclusive => s.exclusive = true,
                        Mode::Shared => s.shared += 1,
                    }
                    return Ok(Some(Held {
                        mem: self.mem.clone(),
                        mode,
                    }));
                }
                if wait != Wait::Forever {
                    return Ok(None);
                }
                s = self.mem.changed.wait(s).unwrap();
            }
        }

        fn register(&self, _wait: Wait) -> Result<Option<Registration>, Self::Error> {
            self.mem.state.lock().unwrap().registered += 1;
            Ok(Some(Registration(self.mem.clone())))
        }

        fn take_ticket(&self) -> Result<(u64, ()), Self::Error> {
            let mut s = self.mem.state.lock().unwrap();
            s.seq += 1;
            let n = s.seq;
            s.tickets.insert(n);
            Ok((n, ()))
        }

        fn predecessor(&self, n: u64) -> Result<Option<u64>, Self::Error> {
            let s = self.mem.state.lock().unwrap();
            Ok(s.tickets.range(..n).next_back().copied())
        }

        fn wait_for(&self, p: u64, _wait: Wait) -> Result<bool, Self::Error> {
            let mut s = self.mem.state.lock().unwrap();
            while s.tickets.contains(&p) {
                s = self.mem.changed.wait(s).unwrap();
            }
            Ok(true)
        }

        fn leave(&self, n: u64, _ticket: (), _acquired: bool) {
            let mut s = self.mem.state.lock().unwrap();
            s.tickets.remove(&n);
            // Only a waiter that queued leaves; it holds the main lock here, so this records
            // the order in which ticket holders were granted it.
            s.granted.push(n);
            drop(s);
            self.mem.changed.notify_all();
        }
    }

    /// Runs `f` with the main lock held in `mode`, checking mutual exclusion inside.
    fn critical(q: &Q, mode: Mode) {
        let held = acquire(q, mode, Wait::Forever).unwrap().unwrap();
        {
            let mut s = q.mem.state.lock().unwrap();
            match mode {
                Mode::Exclusive => {
                    assert!(s.exclusive && s.shared == 0);
                    s.inside_exclusive += 1;
                    assert_eq!(s.inside_exclusive, 1, "two exclusive holders");
                }
                Mode::Shared => assert!(!s.exclusive && s.inside_exclusive == 0),
            }
        }
        loom::thread::yield_now();
        if mode == Mode::Exclusive {
            q.mem.state.lock().unwrap().inside_exclusive -= 1;
        }
        drop(held);
    }

    fn model(modes: [Mode; 3]) {
        loom::model(move || {
            let mem = Arc::new(Mem::default());
            let threads: Vec<_> = modes[1..]
                .iter()
                .map(|&mode| {
                    let q = Q { mem: mem.clone() };
                    loom::thread::spawn(move || critical(&q, mode))
                })
                .collect();
            critical(&Q { mem: mem.clone() }, modes[0]);
            for t in threads {
                t.join().unwrap();
            }
            let s = mem.state.lock().unwrap();
            // FIFO: ticket holders were granted the lock in ticket order.
            assert!(s.granted.windows(2).all(|w| w[0] < w[1]), "{:?}", s.granted);
            assert!(s.tickets.is_empty() && s.registered == 0);
            assert!(!s.exclusive && s.shared == 0);
        });
    }

    #[test]
    fn three_writers_exclude_each_other_in_ticket_order() {
        model([Mode::Exclusive; 3]);
    }

    #[test]
    fn readers_and_a_writer() {
        model([Mode::Shared, Mode::Exclusive, Mode::Shared]);
    }

    #[test]
    fn try_lock_never_overtakes_a_registered_waiter() {
        loom::model(|| {
            let mem = Arc::new(Mem::default());
            let q = Q { mem: mem.clone() };
            let first = acquire(&q, Mode::Exclusive, Wait::Forever)
                .unwrap()
                .unwrap();
            let waiter = {
                let q = Q { mem: mem.clone() };
                loom::thread::spawn(move || {
                    let held = acquire(&q, Mode::Exclusive, Wait::Forever)
                        .unwrap()
                        .unwrap();
                    drop(held);
                })
            };
            drop(first);
            // Whatever the interleaving: if the waiter is registered, a try never wins.
            let registered = mem.state.lock().unwrap().registered > 0;
            let tried = acquire(&q, Mode::Exclusive, Wait::Never).unwrap();
            if registered {
                let s = mem.state.lock().unwrap();
                // Either it was refused, or the waiter had already been granted and gone.
                assert!(tried.is_none() || s.granted.len() == 1);
            }
            drop(tried);
            waiter.join().unwrap();
        });
    }
}
