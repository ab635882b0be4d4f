//! The floor of `gapreg ids reserve` as a process: the least a Rust program can do to reserve
//! one id on the server — start, connect (the `postgres` crate, no TLS, the library's session
//! options), send [`RESERVE_SQL`] once with its parameters (one round trip), print the number,
//! close. No registry, no argument parsing beyond the three it needs, no schema check.
//!
//! `pg-reserve URL NAMESPACE PREFIX`

use postgres::types::Type;

use gapreg_benches::pg::{RESERVE_SQL, config};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(ns), Some(prefix)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: pg-reserve URL NAMESPACE PREFIX".into());
    };
    let mut client = config(&url)?.connect(postgres::NoTls)?;
    let row = client.query_typed_one(
        RESERVE_SQL,
        &[
            (&ns, Type::TEXT),
            (&prefix, Type::TEXT),
            (&1i64, Type::INT8),
        ],
    )?;
    println!("{}", row.get::<_, i64>(0));
    Ok(())
}
