//! The schema on the coordination server: one PostgreSQL schema, [`SCHEMA`], holding every
//! crate's tables, and `gapreg.schema_version`, one row per component (`leaselock`,
//! `gapreg`) with the number of its migrations applied. Each crate owns its migrations; they
//! run in order, under one advisory lock, so two first users never race, and a server whose
//! schema is newer than this build is refused rather than used.

use std::collections::BTreeMap;

use postgres::error::SqlState;
use postgres::types::{ToSql, Type};

use super::{Server, ServerError, ServerErrorKind};

/// The PostgreSQL schema the tool keeps its tables in.
pub const SCHEMA: &str = "gapreg";

/// The advisory lock every migration holds (an arbitrary constant: "gapreg" in ASCII).
const MIGRATION_LOCK: i64 = 0x0000_6761_7072_6567;

/// What a component's schema on the server is, against what this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaState {
    /// Not created yet (the first use creates it).
    Missing,
    /// At `version`, older than this build's `known`: the next use migrates it.
    Older {
        /// The version on the server.
        version: i32,
        /// The version this build knows.
        known: i32,
    },
    /// At the version this build knows.
    Current {
        /// The version.
        version: i32,
    },
    /// Newer than this build: refused.
    Newer {
        /// The version on the server.
        version: i32,
        /// The version this build knows.
        known: i32,
    },
}

/// The versions a handle's users need, for a statement that must run only while the
/// server's tables are at exactly those versions (see [`Server::schema_guard`]): a statement
/// that checks the schema itself, instead of a query before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaGuard {
    /// Each component once, with its version.
    pub components: Vec<(String, i32)>,
}

impl SchemaGuard {
    /// The condition, true only while every component is at its version, its parameters
    /// numbered from `$first` on ([`SchemaGuard::params`], appended to the statement's own).
    /// One primary-key lookup per component: in a new session, an aggregate or a join here
    /// would cost more than the statement it guards.
    pub fn condition(&self, first: usize) -> String {
        if self.components.is_empty() {
            return "TRUE".to_owned();
        }
        let mut sql = String::new();
        for i in 0..self.components.len() {
            let (c, v) = (first + 2 * i, first + 2 * i + 1);
            if i > 0 {
                sql.push_str(" AND ");
            }
            sql.push_str(&format!(
                "(SELECT version FROM {SCHEMA}.schema_version WHERE component = ${c}) = ${v}"
            ));
        }
        sql
    }

    /// The parameters of [`SchemaGuard::condition`], in order.
    pub fn params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        self.components
            .iter()
            .flat_map(|(c, v)| {
                [
                    (c as &(dyn ToSql + Sync), Type::TEXT),
                    (v as &(dyn ToSql + Sync), Type::INT4),
                ]
            })
            .collect()
    }
}

impl Server {
    /// Records that this handle's users need `component` at the version of `migrations`
    /// (asking the server nothing): statements guarded by [`Server::schema_guard`] then run
    /// only while the server has it at exactly that version. [`Server::migrate`] records it
    /// too.
    pub fn expect(&self, component: &str, migrations: &[&str]) {
        let known = i32::try_from(migrations.len()).unwrap_or(i32::MAX);
        self.expected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(component.to_owned(), known);
    }

    /// The versions recorded by [`Server::expect`] and [`Server::migrate`], to bind to a
    /// [`SchemaGuard::condition`].
    pub fn schema_guard(&self) -> SchemaGuard {
        let expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        SchemaGuard {
            components: expected.iter().map(|(c, v)| (c.clone(), *v)).collect(),
        }
    }

    /// `component`'s schema state, against `known` migrations.
    ///
    /// # Errors
    ///
    /// As [`Server::transaction`].
    pub fn schema_state(&self, component: &str, known: usize) -> Result<SchemaState, ServerError> {
        let known = i32::try_from(known).unwrap_or(i32::MAX);
        Ok(match self.versions()?.get(component).copied() {
            None => SchemaState::Missing,
            Some(v) if v < known => SchemaState::Older { version: v, known },
            Some(v) if v == known => SchemaState::Current { version: v },
            Some(v) => SchemaState::Newer { version: v, known },
        })
    }

    /// Whether `e` says a table (or the whole schema) is not there: the schema not created
    /// yet, which [`Server::migrate`] creates.
    pub fn is_missing_table(e: &postgres::Error) -> bool {
        e.code() == Some(&SqlState::UNDEFINED_TABLE)
            || e.code() == Some(&SqlState::INVALID_SCHEMA_NAME)
    }

    /// Every component's version on the server, read once per handle (one round trip for all
    /// the components a process opens) and kept up to date by [`Server::migrate`].
    fn versions(&self) -> Result<BTreeMap<String, i32>, ServerError> {
        let mut cache = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = &*cache {
            return Ok(v.clone());
        }
        let versions = self.run(true, |client| {
            match client.query_typed("SELECT component, version FROM gapreg.schema_version", &[]) {
                Ok(rows) => Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect()),
                Err(e) if Server::is_missing_table(&e) => Ok(BTreeMap::new()),
                Err(e) => Err(self.error(e)),
            }
        })?;
        *cache = Some(versions.clone());
        Ok(versions)
    }

    /// Brings `component`'s tables to the last of `migrations` (SQL scripts, applied in
    /// order, each once), under an advisory lock. A no-op (one query) when they are current.
    ///
    /// # Errors
    ///
    /// [`ServerErrorKind::Schema`] when the server's schema is newer than `migrations`; the
    /// server's errors otherwise.
    pub fn migrate(&self, component: &str, migrations: &[&str]) -> Result<(), ServerError> {
        self.expect(component, migrations);
        match self.schema_state(component, migrations.len())? {
            SchemaState::Current { .. } => return Ok(()),
            SchemaState::Newer { version, known } => {
                return Err(self.newer(component, version, known));
            }
            _ => {}
        }
        self.transaction(false, |tx| {
            tx.execute_typed(
                "SELECT pg_advisory_xact_lock($1)::text",
                &[(&MIGRATION_LOCK, Type::INT8)],
            )
            .map_err(|e| self.error(e))?;
            tx.batch_execute(
                "CREATE SCHEMA IF NOT EXISTS gapreg;
                 CREATE TABLE IF NOT EXISTS gapreg.schema_version (
                     component text PRIMARY KEY,
                     version integer NOT NULL CHECK (version >= 0),
                     migrated_at timestamptz NOT NULL DEFAULT now()
                 );",
            )
            .map_err(|e| self.error(e))?;
            let version: i32 = tx
                .query_typed_opt(
                    "SELECT version FROM gapreg.schema_version WHERE component = $1",
                    &[(&component, Type::TEXT)],
                )
                .map_err(|e| self.error(e))?
                .map_or(0, |r| r.get(0));
            let from = usize::try_from(version).unwrap_or(usize::MAX);
            if from > migrations.len() {
                let known = i32::try_from(migrations.len()).unwrap_or(i32::MAX);
                return Err(self.newer(component, version, known));
            }
            for script in &migrations[from..] {
                tx.batch_execute(script).map_err(|e| self.error(e))?;
            }
            let to = i32::try_from(migrations.len()).unwrap_or(i32::MAX);
            tx.execute_typed(
                "INSERT INTO gapreg.schema_version (component, version) VALUES ($1, $2)
                 ON CONFLICT (component) DO UPDATE SET version = $2, migrated_at = now()",
                &[(&component, Type::TEXT), (&to, Type::INT4)],
            )
            .map_err(|e| self.error(e))?;
            Ok(to)
        })
        .map(|to| {
            let mut cache = self.versions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = cache.as_mut() {
                v.insert(component.to_owned(), to);
            }
        })
        .map_err(|e| match e.kind() {
            ServerErrorKind::Sql { source, .. }
                if source.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                ServerError::new(ServerErrorKind::Schema {
                    server: self.name.clone(),
                    reason: format!(
                        "the user may not create the {SCHEMA} schema or its tables; grant it \
                         CREATE on the database, or have its owner run the first use once"
                    ),
                })
            }
            _ => e,
        })
    }

    fn newer(&self, component: &str, version: i32, known: i32) -> ServerError {
        ServerError::new(ServerErrorKind::Schema {
            server: self.name.clone(),
            reason: format!(
                "{component}'s tables are at version {version}, newer than this build knows \
                 ({known}); upgrade gapreg on this machine"
            ),
        })
    }
}
