//! The peers and floors of a durable ID reservation, shared by the `reserve` and
//! `reserve_contention` benches: a SQLite counter as a user would write it, and the least an
//! append-only log and a replace-based store can do.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use atomic_file::lock::{Mode, Wait, lock, unlock};
use rusqlite::{Connection, TransactionBehavior};

/// The prefix every competitor reserves for.
pub const PREFIX: &str = "SEC";
/// The floors' record: as long as an idreserve record (`SEC 100000 6c1bb5f1`).
pub const RECORD: &[u8; 20] = b"SEC 100000 6c1bb5f1\n";

/// A SQLite counter table, as a user would write it.
pub struct SqliteCounter {
    conn: Connection,
}

impl SqliteCounter {
    /// Creates the database with the table and a row for [`PREFIX`] at 0.
    pub fn create(path: &Path) -> rusqlite::Result<SqliteCounter> {
        let counter = SqliteCounter::open(path)?;
        counter.conn.execute_batch(
            "CREATE TABLE counters (prefix TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )?;
        counter
            .conn
            .execute("INSERT INTO counters VALUES (?1, 0)", [PREFIX])?;
        Ok(counter)
    }

    /// Opens a connection: WAL (checked), `synchronous=FULL` (a per-connection setting),
    /// `busy_timeout` 10 s.
    pub fn open(path: &Path) -> rusqlite::Result<SqliteCounter> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        assert!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
        conn.pragma_update(None, "synchronous", "FULL")?;
        let sync: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0))?;
        assert_eq!(sync, 2, "synchronous is not FULL");
        Ok(SqliteCounter { conn })
    }

    /// Reserves `n` numbers; returns the first.
    pub fn reserve(&mut self, prefix: &str, n: u64) -> rusqlite::Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value: i64 = {
            let changed = tx
                .prepare_cached("UPDATE counters SET value = value + ?2 WHERE prefix = ?1")?
                .execute(rusqlite::params![prefix, n as i64])?;
            assert_eq!(changed, 1, "no counter row for {prefix}");
            tx.prepare_cached("SELECT value FROM counters WHERE prefix = ?1")?
                .query_row([prefix], |row| row.get(0))?
        };
        tx.commit()?;
        Ok(value as u64 - n + 1)
    }

    /// The counter's value, read outside any reservation.
    pub fn value(&self, prefix: &str) -> rusqlite::Result<u64> {
        let value: i64 = self.conn.query_row(
            "SELECT value FROM counters WHERE prefix = ?1",
            [prefix],
            |row| row.get(0),
        )?;
        Ok(value as u64)
    }
}

/// The append floor's file, opened for appending.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// One small append and `fdatasync`: what a reservation in an append-only log cannot go below.
pub fn floor_append(file: &mut File) -> io::Result<()> {
    file.write_all(RECORD)?;
    file.sync_data()
}

/// The replace floor's files.
pub struct ReplaceFloor {
    dir: PathBuf,
    lock: File,
    temp: PathBuf,
    /// The file every update replaces.
    pub target: PathBuf,
}

impl ReplaceFloor {
    /// Creates `dir` and its lock file.
    pub fn create(dir: &Path) -> io::Result<ReplaceFloor> {
        fs::create_dir_all(dir)?;
        let lock = File::create(dir.join("counter.lock"))?;
        Ok(ReplaceFloor {
            dir: dir.into(),
            lock,
            temp: dir.join("counter.tmp"),
            target: dir.join("counter"),
        })
    }

    /// `flock` (through `atomic_file::lock`, a bare `flock` call), temp write, fsync, rename, dir fsync, unlock: a replace-by-rename update with no
    /// checks at all.
    pub fn replace(&mut self) -> io::Result<()> {
        lock(&self.lock, Mode::Exclusive, Wait::Forever)?;
        let mut file = File::create(&self.temp)?;
        file.write_all(RECORD)?;
        file.sync_all()?;
        fs::rename(&self.temp, &self.target)?;
        drop(file);
        let synced = File::open(&self.dir).and_then(|d| d.sync_all());
        unlock(&self.lock)?;
        synced
    }
}
