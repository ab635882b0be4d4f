//! Reserves IDs in a store, creating it if needed, and prints them: a small program to watch
//! under `strace`.
//!
//! ```sh
//! cargo run -p idreserve --example reserve -- /tmp/ids SEC 1
//! strace -f -y -e trace=openat,write,pwrite64,fsync,fdatasync,rename,renameat,renameat2 \
//!     target/debug/examples/reserve /tmp/ids SEC 1
//! ```

use idreserve::{Config, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(prefix)) = (args.next(), args.next()) else {
        return Err("usage: reserve DIR PREFIX [COUNT] [TIMES]".into());
    };
    let count: u64 = args.next().as_deref().unwrap_or("1").parse()?;
    let times: u64 = args.next().as_deref().unwrap_or("1").parse()?;
    let store = match Store::open(&dir) {
        Err(e) if e.is_not_found() => Store::create(&dir, Config::default())?,
        other => other?,
    };
    for _ in 0..times {
        let reservation = store.reserve(&prefix, count)?;
        for id in reservation.ids() {
            println!("{id}");
        }
    }
    Ok(())
}
