//! What a caller configures: [`LeaseOptions`] for a root (leases directory, margins,
//! timeouts, durability, the [`Clock`]) and [`LeaseRequest`] for one acquire (holder, mode,
//! paths, task, time to live, wait, [`Binding`]).

use super::*;

/// A source of wall-clock time; inject one to test expiry without waiting.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Settings for [`Leases::open_with`].
///
/// ```
/// use leaselock::lease::{Durability, LeaseOptions, Leases};
/// use std::time::Duration;
///
/// let root = tempfile::tempdir()?;
/// let opts = LeaseOptions::new()
///     .leases_dir(root.path().join("locks"))
///     .skew_margin(Duration::from_secs(2))
///     .durability(Durability::NoSync);
/// let leases = Leases::open_with(root.path(), opts)?;
/// assert_eq!(leases.leases_dir(), root.path().join("locks"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    pub(crate) leases_dir: Option<PathBuf>,
    pub(crate) skew_margin: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) liveness: bool,
    pub(crate) durability: Durability,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions::new()
    }
}

impl LeaseOptions {
    /// Defaults: leases in `<root>/.leaselock/` ([`DEFAULT_LEASES_DIR`]), 5 s skew margin, 30 s mutex timeout,
    /// liveness checks on, full durability, the system clock.
    pub fn new() -> LeaseOptions {
        LeaseOptions {
            leases_dir: None,
            skew_margin: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(30),
            liveness: true,
            durability: Durability::Full,
            clock: Arc::new(SystemClock),
        }
    }

    /// Where lease files live (absolute, or relative to the root).
    pub fn leases_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.leases_dir = Some(dir.into());
        self
    }

    /// How long after `expires_at` others still treat a lease as live (clock skew allowance).
    pub fn skew_margin(mut self, margin: Duration) -> Self {
        self.skew_margin = margin;
        self
    }

    /// How long an operation waits for the root's mutex before [`LeaseErrorKind::Timeout`].
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Whether a holder proven dead on this host loses its lease before expiry (default on).
    pub fn liveness(mut self, enabled: bool) -> Self {
        self.liveness = enabled;
        self
    }

    /// How lease and token files are synced (default [`Durability::Full`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The wall clock used for grant times and expiry.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// Which process a lease's life is tied to, besides its time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Binding {
    /// The process taking the lease (the default): once it is provably dead on this host, so
    /// is the lease.
    #[default]
    ThisProcess,
    /// Another, longer-lived process on this host (an agent, a shell), by pid: its start time
    /// is recorded, so a reused pid does not keep the lease alive.
    Process(u32),
    /// No process: the lease lives until it expires (or is released). For short-lived callers
    /// such as a command-line tool.
    TtlOnly,
    /// The coordination server's session of the handle taking the lease (its open
    /// connection): the lease dies when that session ends, as a dead process's would. Only on
    /// a server ([`super::PgLeases`]); refused by the file store.
    Session,
}

/// What to acquire: built with [`LeaseRequest::exclusive`] or [`LeaseRequest::shared`].
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub(crate) holder: String,
    pub(crate) mode: Mode,
    pub(crate) files: Vec<String>,
    pub(crate) dirs: Vec<String>,
    pub(crate) task: String,
    pub(crate) ttl: Duration,
    pub(crate) wait: Option<Duration>,
    pub(crate) binding: Binding,
}

impl LeaseRequest {
    /// The default time to live, one hour.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    fn new(holder: &str, mode: Mode) -> LeaseRequest {
        LeaseRequest {
            holder: holder.to_owned(),
            mode,
            files: Vec::new(),
            dirs: Vec::new(),
            task: String::new(),
            ttl: Self::DEFAULT_TTL,
            wait: None,
            binding: Binding::ThisProcess,
        }
    }

    /// Ties the lease's life to a process (default: the one taking it); see [`Binding`].
    pub fn bind(mut self, binding: Binding) -> Self {
        self.binding = binding;
        self
    }

    /// An exclusive (writer's) request by `holder`.
    pub fn exclusive(holder: &str) -> LeaseRequest {
        LeaseRequest::new(holder, Mode::Exclusive)
    }

    /// A shared (read-only reviewer's) request by `holder`.
    pub fn shared(holder: &str) -> LeaseRequest {
        LeaseRequest::new(holder, Mode::Shared)
    }

    /// Claims one file.
    pub fn file(mut self, path: impl Into<String>) -> Self {
        self.files.push(path.into());
        self
    }

    /// Claims several files.
    pub fn files<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.files.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Claims a directory prefix (the directory and everything under it).
    pub fn dir(mut self, path: impl Into<String>) -> Self {
        self.dirs.push(path.into());
        self
    }

    /// Claims several directory prefixes.
    pub fn dirs<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.dirs.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Describes the work, for people reading conflicts.
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.task = task.into();
        self
    }

    /// Sets the time to live (default [`LeaseRequest::DEFAULT_TTL`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// On conflict, retry with backoff for up to `wait` before returning the conflict.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }
}
