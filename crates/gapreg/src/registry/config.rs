//! The registry's settings (`config.yaml`), parsed strictly, and where a registry may be.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{CONFIG, REGISTRY_DIR};

use super::rules::gap_prefix;

/// A registry's settings, kept in `.gapreg/config.yaml`. Parsed strictly: every field is
/// required and an unknown one is an error naming it and its line, so a typo never falls back
/// to a default silently (a registry's gaps filed under the wrong prefix).
///
/// ```yaml
/// loops_dir: ../loop-scopes   # relative to .gapreg/ (default: loops)
/// lock_timeout_secs: 120
/// default_prefix: OP          # gap ids GAP-OP-<N>
/// durable: true               # fsync gap files (false: only for tests and scratch registries)
/// coordination: postgres      # optional: where counters, claims and leases live (default: files)
/// namespace: 3f2c…            # with postgres: this registry's rows on the server (set by init)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where loop files live, relative to the registry directory (or absolute).
    pub loops_dir: PathBuf,
    /// How long a mutation waits for the registry lock before failing with
    /// [`crate::ErrorKind::Timeout`].
    pub lock_timeout_secs: u64,
    /// The prefix of automatic ids: `OP` gives `GAP-OP-<N>`.
    pub default_prefix: String,
    /// Whether gap files are fsynced before a call returns (the id counters always are).
    pub durable: bool,
    /// Where the coordination state (id counters, claims, leases) lives: the clone's files
    /// (default), or a PostgreSQL server shared by every machine.
    #[serde(default, skip_serializing_if = "Backend::is_files")]
    pub coordination: Backend,
    /// This registry's namespace on the coordination server: every clone of the repository
    /// uses the same rows, and two repositories on one server never mix. Written by
    /// `gapreg init --coordination postgres` (or the switch), required with `postgres`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Where a registry's coordination state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Files in the clone's git directory, shared by its worktrees (one machine).
    #[default]
    Files,
    /// A PostgreSQL server, shared by every clone on every machine; its address comes from
    /// `GAPREG_COORDINATION_URL` or `gapreg coordination set URL`, never from the config.
    Postgres,
}

impl Backend {
    fn is_files(&self) -> bool {
        *self == Backend::Files
    }
}

/// The longest namespace.
pub const MAX_NAMESPACE: usize = 64;

/// Checks a namespace: 1 to 64 characters of `a-z 0-9 - _ .`.
pub(crate) fn check_namespace(ns: &str) -> std::result::Result<(), String> {
    if ns.is_empty()
        || ns.len() > MAX_NAMESPACE
        || !ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return Err(format!(
            "namespace {ns:?} must be 1 to {MAX_NAMESPACE} characters of a-z 0-9 - _ ."
        ));
    }
    Ok(())
}

/// A new namespace: 32 random hex digits.
pub(crate) fn new_namespace() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Default for Config {
    fn default() -> Config {
        Config {
            loops_dir: PathBuf::from("loops"),
            lock_timeout_secs: 120,
            default_prefix: "OP".into(),
            durable: true,
            coordination: Backend::Files,
            namespace: None,
        }
    }
}

/// Parses `config.yaml` strictly: unknown and missing keys are errors naming them.
pub(crate) fn parse_config(path: &Path, bytes: &[u8]) -> Result<Config> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::corrupt(
            path,
            "it is empty; it must set loops_dir, lock_timeout_secs, default_prefix and \
             durable (restore it from git)",
        ));
    }
    let config: Config =
        atomic_file::Format::Yaml
            .decode(path, bytes)
            .map_err(|e| match e.kind() {
                atomic_file::ErrorKind::Decode { message, .. } => {
                    Error::corrupt(path, message.clone())
                }
                _ => Error::from(e),
            })?;
    idreserve::check_prefix(&gap_prefix(&config.default_prefix))
        .map_err(|e| Error::corrupt(path, format!("default_prefix: {e}")))?;
    match (&config.coordination, &config.namespace) {
        (_, Some(ns)) => check_namespace(ns).map_err(|e| Error::corrupt(path, e))?,
        (Backend::Postgres, None) => {
            return Err(Error::corrupt(
                path,
                "coordination: postgres needs a namespace (the registry's rows on the \
                 server); restore it from git, or switch with `gapreg coordination switch \
                 postgres`, which writes one",
            ));
        }
        (Backend::Files, None) => {}
    }
    Ok(config)
}

/// Whether `dir` (a `.gapreg` directory, not followed if a symlink) holds a registry.
pub(crate) fn has_registry(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
        && std::fs::symlink_metadata(dir.join(CONFIG)).is_ok_and(|m| m.is_file())
}

/// Refuses a registry in `repo` when a directory above it holds one too: the two would keep
/// separate leases on the same files (the outer one's `sub/x` is the inner one's `x`), so two
/// exclusive leases could cover one file.
pub(crate) fn check_not_nested(repo: &Path) -> Result<()> {
    let abs = std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf());
    for outer in abs.ancestors().skip(1) {
        let candidate = outer.join(REGISTRY_DIR);
        if has_registry(&candidate) {
            return Err(Error::invalid(
                format!("registry in {}", abs.display()),
                format!(
                    "it is nested inside the registry {}: their leases on the same files \
                     would not see each other; use the outer registry (remove {}), or move \
                     the repository out of {}",
                    candidate.display(),
                    abs.join(REGISTRY_DIR).display(),
                    outer.display()
                ),
            ));
        }
    }
    Ok(())
}
