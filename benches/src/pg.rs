//! What the PostgreSQL bench (`benches/postgres.rs`) and its floor process
//! (`src/bin/pg-reserve.rs`) share: the reservation statement and the session options.

/// The statement `PgCounters::reserve` sends, word for word (`idreserve/src/pg.rs`).
pub const RESERVE_SQL: &str =
    "INSERT INTO gapreg.id_counters AS c (ns, prefix, last) VALUES ($1, $2, $3)
                     ON CONFLICT (ns, prefix) DO UPDATE SET last = c.last + $3
                       WHERE c.last <= 9223372036854775807 - $3
                     RETURNING last";

/// Session options the library sets (`leaselock::server`): every commit waits for its flush.
pub const SESSION_OPTIONS: &str = "-c synchronous_commit=on";

/// `url`'s connection settings with [`SESSION_OPTIONS`] added to its own options.
///
/// # Errors
///
/// When `url` is not a PostgreSQL address.
pub fn config(url: &str) -> Result<postgres::Config, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    let options = match config.get_options() {
        Some(o) => format!("{o} {SESSION_OPTIONS}"),
        None => SESSION_OPTIONS.to_owned(),
    };
    config.options(&options);
    Ok(config)
}
