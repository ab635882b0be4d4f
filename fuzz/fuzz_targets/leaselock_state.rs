//! The leases directory with one file replaced by arbitrary bytes, as a new process meets it.
//!
//! Byte 0 picks the file (alpha's lease file, `token.json`, `index.json`, `generation`, or a
//! new lease file `9-planted.lease.json`); the rest is its new content. A template root holds
//! three leases (alpha: exclusive `src/`, beta: shared `docs/x.md`, delta: exclusive
//! `other/y`) after a released grant; it is restored before every input. Then a cold handle
//! asks for an exclusive lease on `src/lib.rs` (conflicting with alpha) and one on a free path.
//!
//! Asserts, beyond "never panics":
//! - the conflicting exclusive lease is granted only if alpha's file now holds a *valid*
//!   (checksummed, consistent) lease that no longer covers `src/lib.rs`: damage never does;
//! - every token handed out is above every token handed out before;
//! - every refusal is a conflict or a damaged-data error naming a file of the leases directory;
//! - `list` never fails on content damage.
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use gapreg::leaselock::lease::{Durability, LeaseOptions, LeaseRequest, Leases};
use libfuzzer_sys::fuzz_target;

struct Template {
    root: PathBuf,
    dir: PathBuf,
    max_token: u64,
    alpha_file: String,
    pristine: BTreeMap<String, Vec<u8>>,
}

fn opts() -> LeaseOptions {
    LeaseOptions::new().durability(Durability::NoSync)
}

fn files(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().expect("type").is_file() && name != "lock" {
            out.insert(name, std::fs::read(entry.path()).expect("read"));
        }
    }
    out
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let base = std::env::temp_dir().join("gapreg-fuzz");
        // Templates of earlier runs whose process is gone.
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("leases-") {
                if !std::path::Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let root = base.join(format!("leases-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("root");
        let leases = Leases::open_with(&root, opts()).expect("open");
        let hour = std::time::Duration::from_secs(3600);
        let alpha = leases
            .acquire(&LeaseRequest::exclusive("alpha").dir("src").ttl(hour))
            .expect("alpha");
        leases
            .acquire(&LeaseRequest::shared("beta").file("docs/x.md").ttl(hour))
            .expect("beta");
        let gamma = leases.acquire(&LeaseRequest::exclusive("gamma").file("t")).expect("gamma");
        leases.release(&gamma.lease).expect("release");
        let delta = leases
            .acquire(&LeaseRequest::exclusive("delta").file("other/y").ttl(hour))
            .expect("delta");
        leases.repair().expect("index");
        let dir = leases.leases_dir().to_path_buf();
        Template {
            pristine: files(&dir),
            max_token: delta.lease.token,
            alpha_file: format!("{}.lease.json", alpha.lease.id),
            root,
            dir,
        }
    })
}

fn restore(t: &Template) {
    let now = files(&t.dir);
    for name in now.keys() {
        if !t.pristine.contains_key(name) {
            std::fs::remove_file(t.dir.join(name)).expect("remove");
        }
    }
    for (name, bytes) in &t.pristine {
        if now.get(name) != Some(bytes) {
            std::fs::write(t.dir.join(name), bytes).expect("restore");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, content)) = data.split_first() else {
        return;
    };
    let t = template();
    restore(t);
    let name = match which % 5 {
        0 => t.alpha_file.clone(),
        1 => "token.json".to_owned(),
        2 => "index.json".to_owned(),
        3 => "generation".to_owned(),
        _ => "9-planted.lease.json".to_owned(),
    };
    std::fs::write(t.dir.join(&name), content).expect("damage");
    let valid_lease = name.ends_with(".lease.json")
        && gapreg::leaselock::lease::Lease::from_file_bytes(
            name.trim_end_matches(".lease.json"),
            content,
        )
        .is_ok();
    let leases = Leases::open_with(&t.root, opts()).expect("open");
    let refusal_ok = |e: &gapreg::leaselock::lease::LeaseError| {
        e.is_conflict() || (e.is_damaged() && e.to_string().contains(&t.dir.display().to_string()))
    };
    match leases.acquire(&LeaseRequest::exclusive("mallory").file("src/lib.rs")) {
        Ok(g) => {
            assert!(
                valid_lease && which % 5 == 0,
                "a conflicting exclusive lease was granted with {name} damaged"
            );
            assert!(g.lease.token > t.max_token, "token {} reused", g.lease.token);
        }
        Err(e) => assert!(refusal_ok(&e), "{e}"),
    }
    match leases.acquire(&LeaseRequest::exclusive("mallory").file("free/z")) {
        Ok(g) => assert!(g.lease.token > t.max_token, "token {} reused", g.lease.token),
        Err(e) => assert!(refusal_ok(&e), "{e}"),
    }
    leases.list().expect("list survives content damage");
});
