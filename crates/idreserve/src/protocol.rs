//! The reservation protocol, as plain functions over a [`CounterLog`], so that the same code
//! runs over the file log in production and over an in-memory log in the loom model.
//!
//! The caller holds the store's lock around each call; the functions read the log, decide, and
//! append one record.

use crate::error::{Error, ErrorKind};
use crate::log::Record;

/// The most IDs one reservation may ask for. A batch of gaps or a migration needs a few
/// hundred or thousand; a count in the billions is a typo or an attack, and is refused before
/// the counter moves (a caller that lists the IDs then never holds more than this many).
pub const MAX_COUNT: u64 = 100_000;

/// Where counter records live.
pub trait CounterLog {
    /// `prefix`'s counter (0 if it has none): read from the log the first time, then from
    /// what this log handle appended.
    fn counter(&mut self, prefix: &str) -> Result<u64, Error>;
    /// Appends one record. It must be durable before the reservation is handed to the caller
    /// (the file log flushes after releasing the lock, so concurrent reservations can share a
    /// flush).
    fn append(&mut self, record: &Record) -> Result<(), Error>;
}

/// Checks a reservation's count: at least one, at most [`MAX_COUNT`]. Called before the
/// lock is taken and again under it, so the counter never moves for a refused count.
pub fn check_count(count: u64) -> Result<(), Error> {
    if count == 0 {
        return Err(Error::new(ErrorKind::EmptyReservation));
    }
    if count > MAX_COUNT {
        return Err(Error::new(ErrorKind::CountTooLarge {
            count,
            max: MAX_COUNT,
        }));
    }
    Ok(())
}

/// Reserves `count` consecutive numbers for `prefix`: returns the first. The prefix must
/// already be checked and allowed.
pub fn reserve(log: &mut impl CounterLog, prefix: &str, count: u64) -> Result<u64, Error> {
    check_count(count)?;
    let counter = log.counter(prefix)?;
    let last = counter.checked_add(count).ok_or_else(|| {
        Error::new(ErrorKind::Overflow {
            prefix: prefix.to_owned(),
            counter,
            count,
        })
    })?;
    log.append(&Record {
        prefix: prefix.to_owned(),
        value: last,
    })?;
    Ok(counter + 1)
}

/// Sets `prefix`'s counter to `value` if that raises it (or always, with `force`). Returns the
/// old counter; appends nothing when it would not change.
pub fn raise(
    log: &mut impl CounterLog,
    prefix: &str,
    value: u64,
    force: bool,
) -> Result<u64, Error> {
    let counter = log.counter(prefix)?;
    if value > counter || (force && value != counter) {
        log.append(&Record {
            prefix: prefix.to_owned(),
            value,
        })?;
    }
    Ok(counter)
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use crate::sync::{Arc, Mutex, thread};

    /// The flock'd log file, modelled as a mutex over its records.
    #[derive(Default)]
    struct MemLog(Vec<Record>);

    impl CounterLog for MemLog {
        fn counter(&mut self, prefix: &str) -> Result<u64, Error> {
            Ok(self
                .0
                .iter()
                .rev()
                .find(|r| r.prefix == prefix)
                .map_or(0, |r| r.value))
        }
        fn append(&mut self, record: &Record) -> Result<(), Error> {
            self.0.push(record.clone());
            Ok(())
        }
    }

    #[test]
    fn loom_reservations_are_distinct_and_contiguous() {
        loom::model(|| {
            let log = Arc::new(Mutex::new(MemLog::default()));
            let handles: Vec<_> = [1u64, 2, 1]
                .into_iter()
                .map(|count| {
                    let log = log.clone();
                    thread::spawn(move || {
                        let mut guard = log.lock().expect("lock");
                        let first = reserve(&mut *guard, "SEC", count).expect("reserve");
                        (first..first + count).collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut all: Vec<u64> = handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect();
            all.sort_unstable();
            assert_eq!(all, (1..=4).collect::<Vec<_>>(), "duplicates or holes");
        });
    }

    #[test]
    fn loom_raise_never_lowers_and_reservations_stay_above_it() {
        loom::model(|| {
            let log = Arc::new(Mutex::new(MemLog::default()));
            let raiser = {
                let log = log.clone();
                thread::spawn(move || {
                    let mut guard = log.lock().expect("lock");
                    raise(&mut *guard, "SEC", 2, false).expect("raise")
                })
            };
            let reservers: Vec<_> = (0..2)
                .map(|_| {
                    let log = log.clone();
                    thread::spawn(move || {
                        let mut guard = log.lock().expect("lock");
                        reserve(&mut *guard, "SEC", 1).expect("reserve")
                    })
                })
                .collect();
            let before = raiser.join().expect("raiser");
            let mut got: Vec<u64> = reservers
                .into_iter()
                .map(|h| h.join().expect("reserver"))
                .collect();
            got.sort_unstable();
            assert!(got[0] != got[1], "a number handed out twice: {got:?}");
            let last = log.lock().expect("lock").counter("SEC").expect("counter");
            // Every reservation made after the raise is above 2; the counter covers them all.
            assert!(last >= 2 && last >= got[1], "counter {last} below {got:?}");
            if before == 0 {
                assert!(
                    got.iter().all(|&n| n > 2),
                    "reserved below a raise: {got:?}"
                );
            }
        });
    }
}
