//! The reservation protocol, as plain functions over a [`CounterLog`], so that the same code
//! runs over the file log in production and over an in-memory log in the loom model.
//!
//! The caller holds the store's lock around each call; the functions read the log, decide, and
//! append one record.

use crate::error::{Error, ErrorKind};
use crate::log::{Record, Scan};

/// Where counter records live.
pub trait CounterLog {
    /// Reads the whole log (cutting off a torn tail if the implementation can).
    fn load(&mut self) -> Result<Scan, Error>;
    /// Appends one record. It must be durable before the reservation is handed to the caller
    /// (the file log flushes after releasing the lock, so concurrent reservations can share a
    /// flush).
    fn append(&mut self, record: &Record) -> Result<(), Error>;
}

/// Reserves `count` consecutive numbers for `prefix`: returns the first. The prefix must
/// already be checked and allowed.
pub fn reserve(log: &mut impl CounterLog, prefix: &str, count: u64) -> Result<u64, Error> {
    if count == 0 {
        return Err(Error::new(ErrorKind::EmptyReservation));
    }
    let counter = log.load()?.counters.get(prefix).copied().unwrap_or(0);
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
    let counter = log.load()?.counters.get(prefix).copied().unwrap_or(0);
    if value > counter || (force && value != counter) {
        log.append(&Record {
            prefix: prefix.to_owned(),
            value,
        })?;
    }
    Ok(counter)
}

#[cfg(loom)]
mod loom_model {
    use super::*;
    use loom::sync::{Arc, Mutex};

    /// The flock'd log file, modelled as a mutex over its records.
    #[derive(Default)]
    struct MemLog(Vec<Record>);

    impl CounterLog for MemLog {
        fn load(&mut self) -> Result<Scan, Error> {
            let mut scan = Scan::default();
            for r in &self.0 {
                scan.counters.insert(r.prefix.clone(), r.value);
                scan.records += 1;
            }
            Ok(scan)
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
                    loom::thread::spawn(move || {
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
}
