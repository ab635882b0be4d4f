//! Damage suite: for every file leaselock writes (a lease file, `token.json`, `index.json`,
//! `generation`), truncation at every length, zero-fill, single-bit flips at every byte (every
//! bit of the checksum header), garbage, replays of older valid copies, and removal. Each case
//! runs what a new process would (a cold handle): a conflicting exclusive acquire, a free
//! acquire, a list, then the repair a person or `doctor` would make. Every case must end in a
//! damaged/corrupt error naming the file, or in a correct result: never a conflicting grant,
//! never a fencing token handed out twice, never a lease silently dropped from the list.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use leaselock::lease::{
    Durability, Lease, LeaseError, LeaseErrorKind, LeaseOptions, LeaseRequest, Leases,
    REPAIR_MARGIN, TokenState,
};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn opts() -> LeaseOptions {
    LeaseOptions::new().durability(Durability::NoSync)
}

/// A root with three held leases (alpha: exclusive `src/`, beta: shared `docs/x.md`, delta:
/// exclusive `other/y`), one released grant in between, and a written index.
struct Template {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
    held: Vec<Lease>,
    /// The highest fencing token handed out before any damage.
    max_token: u64,
    pristine: BTreeMap<String, Vec<u8>>,
}

impl Template {
    fn new() -> Result<Template> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().to_path_buf();
        let leases = Leases::open_with(&root, opts())?;
        let hour = Duration::from_secs(3600);
        let alpha = leases.acquire(&LeaseRequest::exclusive("alpha").dir("src").ttl(hour))?;
        let beta = leases.acquire(&LeaseRequest::shared("beta").file("docs/x.md").ttl(hour))?;
        let gamma = leases.acquire(&LeaseRequest::exclusive("gamma").file("tmp/c"))?;
        leases.release(&gamma.lease)?;
        let delta = leases.acquire(&LeaseRequest::exclusive("delta").file("other/y").ttl(hour))?;
        leases.repair()?; // writes index.json and generation
        let dir = leases.leases_dir().to_path_buf();
        assert!(dir.join("index.json").is_file() && dir.join("generation").is_file());
        let held = vec![alpha.lease, beta.lease, delta.lease];
        let max_token = held
            .iter()
            .map(|l| l.token)
            .max()
            .unwrap_or(0)
            .max(gamma.lease.token);
        let mut template = Template {
            _tmp: tmp,
            root,
            dir,
            held,
            max_token,
            pristine: BTreeMap::new(),
        };
        template.pristine = template.files()?;
        Ok(template)
    }

    /// The regular files of the leases directory (not the mutex's).
    fn files(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_file() && name != "lock" {
                out.insert(name, fs::read(entry.path())?);
            }
        }
        Ok(out)
    }

    /// Puts the leases directory back as it was before the case.
    fn restore(&self) -> Result {
        let now = self.files()?;
        for name in now.keys() {
            if !self.pristine.contains_key(name) {
                fs::remove_file(self.dir.join(name))?;
            }
        }
        for (name, bytes) in &self.pristine {
            if now.get(name) != Some(bytes) {
                fs::write(self.dir.join(name), bytes)?;
            }
        }
        Ok(())
    }

    fn lease_file(&self, lease: &Lease) -> String {
        format!("{}.lease.json", lease.id)
    }

    fn alpha(&self) -> &Lease {
        &self.held[0]
    }
}

/// What a damaged file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// alpha's lease file: damage must fail closed.
    AlphaLease,
    /// `token.json`: damage must stop grants until a repair.
    Token,
    /// `index.json` or `generation`: caches, damage must only cost time.
    Cache,
}

/// Every damage of `bytes`: (label, new contents or `None` for removal).
fn damages(bytes: &[u8]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = vec![("removed".to_owned(), None)];
    for len in 0..bytes.len() {
        out.push((format!("truncated to {len}"), Some(bytes[..len].to_vec())));
    }
    out.push(("zero-filled".to_owned(), Some(vec![0; bytes.len()])));
    let header = bytes.iter().position(|&b| b == b'\n').map_or(0, |n| n + 1);
    for i in 0..bytes.len() {
        let bits: Vec<u8> = if i < header {
            (0..8).collect()
        } else {
            vec![(i % 8) as u8]
        };
        for bit in bits {
            let mut flipped = bytes.to_vec();
            flipped[i] ^= 1 << bit;
            out.push((format!("bit {bit} of byte {i} flipped"), Some(flipped)));
        }
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let random: Vec<u8> = (0..bytes.len()).map(|_| rng.u8(..)).collect();
    for (label, garbage) in [
        ("garbage", b"\x00garbage{{".to_vec()),
        ("an empty JSON object", b"{}\n".to_vec()),
        ("a raw token reset", b"{\"last\":0}\n".to_vec()),
        ("random bytes", random),
        ("the payload without its header", bytes[header..].to_vec()),
        ("doubled", [bytes, bytes].concat()),
    ] {
        out.push((label.to_owned(), Some(garbage)));
    }
    out
}

fn names(err: &LeaseError, file: &str) -> bool {
    err.to_string().contains(file)
}

/// Runs one case; panics with `label` on any wrong outcome.
fn run_case(
    t: &Template,
    target: Target,
    file: &str,
    label: &str,
    damage: Option<&[u8]>,
) -> Result {
    t.restore()?;
    let path = t.dir.join(file);
    match damage {
        Some(bytes) => fs::write(&path, bytes)?,
        None => fs::remove_file(&path)?,
    }
    let case = format!("{file} {label}");
    let removed_alpha = target == Target::AlphaLease && damage.is_none();

    // 1. A new process asks for an exclusive lease overlapping alpha's.
    let cold = Leases::open_with(&t.root, opts())?;
    match cold.acquire(&LeaseRequest::exclusive("mallory").file("src/lib.rs")) {
        Ok(g) => {
            assert!(
                removed_alpha,
                "{case}: a conflicting exclusive lease was granted"
            );
            assert!(
                g.lease.token > t.max_token,
                "{case}: token {} reused",
                g.lease.token
            );
            cold.release(&g.lease)?;
        }
        Err(e) => match (target, e.kind()) {
            (Target::AlphaLease, LeaseErrorKind::Corrupt { path: p, .. }) => {
                assert_eq!(p, &path, "{case}: {e}")
            }
            (Target::Token | Target::Cache, LeaseErrorKind::Conflict { conflicts }) => {
                assert_eq!(conflicts.len(), 1, "{case}: {e}");
                assert_eq!(conflicts[0].lease.as_ref(), Some(t.alpha()), "{case}: {e}");
            }
            _ => panic!("{case}: unexpected refusal: {e}"),
        },
    }

    // 2. The same process asks for a lease nobody holds.
    match cold.acquire(&LeaseRequest::exclusive("mallory").file("free/z")) {
        Ok(g) => {
            assert!(
                target == Target::Cache || removed_alpha,
                "{case}: granted although {file} is damaged"
            );
            assert!(
                g.lease.token > t.max_token,
                "{case}: fencing token {} handed out again (max before: {})",
                g.lease.token,
                t.max_token
            );
        }
        Err(e) => {
            assert!(
                target != Target::Cache,
                "{case}: a damaged cache refused a grant: {e}"
            );
            assert!(e.is_damaged() && names(&e, file), "{case}: {e}");
        }
    }
    if target != Target::Cache {
        // Fail closed means left as it was, for a person to see.
        match damage {
            Some(bytes) => assert_eq!(fs::read(&path)?, bytes, "{case}: the damaged file changed"),
            None => assert!(!path.exists(), "{case}: the removed file came back"),
        }
    }

    // 3. A list: nothing silently dropped, the damage named. (Another new process, except for
    //    a damaged cache, which the first one may have rewritten already: it lists itself.)
    let listing = match target {
        Target::Cache => cold.list()?,
        _ => Leases::open_with(&t.root, opts())?.list()?,
    };
    let listed: Vec<&Lease> = listing
        .leases
        .iter()
        .map(|(l, _)| l)
        .filter(|l| l.holder != "mallory")
        .collect();
    let expected: Vec<&Lease> = t
        .held
        .iter()
        .filter(|l| !(target == Target::AlphaLease && l.id == t.alpha().id))
        .collect();
    assert_eq!(listed, expected, "{case}: the listing is wrong");
    let corrupt: Vec<&Path> = listing.corrupt.iter().map(|c| c.path.as_path()).collect();
    if target == Target::AlphaLease && !removed_alpha {
        assert_eq!(corrupt, [path.as_path()], "{case}");
    } else {
        assert!(corrupt.is_empty(), "{case}: {corrupt:?}");
    }

    // 4. The repair a person (or `doctor --repair`) makes, then a grant: always above every
    //    token handed out before. (A damaged cache needs none: step 2 was granted.)
    if target == Target::Cache {
        return Ok(());
    }
    let fixer = Leases::open_with(&t.root, opts())?;
    if target == Target::Token {
        let report = fixer.check()?;
        assert!(
            !report.token.is_sound(),
            "{case}: check found {:?}",
            report.token
        );
        let report = fixer.repair()?;
        let written = report.token_written.ok_or("no token written")?;
        assert!(written >= t.max_token + REPAIR_MARGIN, "{case}: {report:?}");
    }
    if target == Target::AlphaLease && !removed_alpha {
        assert_eq!(fixer.sweep_forced()?.corrupt_removed.len(), 1, "{case}");
    }
    let g = fixer.acquire(&LeaseRequest::exclusive("after").file("after/repair"))?;
    assert!(
        g.lease.token > t.max_token,
        "{case}: token {} reused",
        g.lease.token
    );
    Ok(())
}

fn suite(target: Target, file: impl Fn(&Template) -> String) -> Result {
    let t = Template::new()?;
    let file = file(&t);
    let pristine = t.pristine.get(&file).ok_or("no such file")?.clone();
    let cases = damages(&pristine);
    let count = cases.len();
    for (label, damage) in cases {
        run_case(&t, target, &file, &label, damage.as_deref())?;
    }
    assert!(count > pristine.len() * 2, "{count} cases");
    Ok(())
}

#[test]
fn every_damage_to_a_lease_file_fails_closed() -> Result {
    suite(Target::AlphaLease, |t| t.lease_file(t.alpha()))
}

#[test]
fn every_damage_to_the_token_counter_stops_grants_until_repaired() -> Result {
    suite(Target::Token, |_| "token.json".to_owned())
}

#[test]
fn every_damage_to_the_index_only_costs_a_rescan() -> Result {
    suite(Target::Cache, |_| "index.json".to_owned())
}

#[test]
fn every_damage_to_the_generation_only_costs_a_rescan() -> Result {
    suite(Target::Cache, |_| "generation".to_owned())
}

/// Another lease's valid file under alpha's name, and alpha's older valid self: replays.
#[test]
fn replayed_lease_files_are_refused_or_harmless() -> Result {
    let t = Template::new()?;
    let alpha = t.lease_file(t.alpha());
    let beta = t
        .pristine
        .get(&t.lease_file(&t.held[1]))
        .ok_or("beta")?
        .clone();
    run_case(
        &t,
        Target::AlphaLease,
        &alpha,
        "holding beta's file",
        Some(&beta),
    )?;
    Ok(())
}

/// The examples, by hand: `"src"` → `"sbc"` and `exclusive` → `shared` in a lease file.
#[test]
fn one_byte_edits_of_a_lease_file_fail_closed() -> Result {
    let t = Template::new()?;
    let file = t.lease_file(t.alpha());
    let bytes = String::from_utf8(t.pristine[&file].clone())?;
    for (from, to) in [("\"src\"", "\"sbc\""), ("\"exclusive\"", "\"shared\"")] {
        let edited = bytes.replacen(from, to, 1);
        assert_ne!(edited, bytes);
        run_case(
            &t,
            Target::AlphaLease,
            &file,
            &format!("{from} -> {to}"),
            Some(edited.as_bytes()),
        )?;
    }
    Ok(())
}

/// Editing a path in `index.json`, without and with a recomputed checksum: the index entry no
/// longer matches the lease file's own checksum header, so it is not believed.
#[test]
fn an_edited_index_cannot_grant_a_conflict() -> Result {
    let t = Template::new()?;
    let index = String::from_utf8(t.pristine["index.json"].clone())?;
    let payload = atomic_file::checksum::decode(index.as_bytes())?;
    let payload = std::str::from_utf8(payload)?;
    for (from, to) in [("\"src\"", "\"sbc\""), ("\"exclusive\"", "\"shared\"")] {
        let raw = index.replacen(from, to, 1);
        assert_ne!(raw, index);
        run_case(
            &t,
            Target::Cache,
            "index.json",
            &format!("{from} -> {to}"),
            Some(raw.as_bytes()),
        )?;
        let resealed = atomic_file::checksum::encode(payload.replacen(from, to, 1).as_bytes());
        atomic_file::checksum::decode(&resealed)?;
        run_case(
            &t,
            Target::Cache,
            "index.json",
            &format!("{from} -> {to} with a valid checksum"),
            Some(&resealed),
        )?;
    }
    Ok(())
}

/// `token.json` removed, reset by hand, reset with a valid checksum, or replaced by an older
/// valid copy: never token 1 (or any used token) again.
#[test]
fn a_lost_or_reset_token_counter_never_reissues_a_token() -> Result {
    let root = tempfile::tempdir()?;
    let leases = Leases::open_with(root.path(), opts())?;
    let first = leases
        .acquire(&LeaseRequest::exclusive("a").file("f"))?
        .lease;
    let old_copy = fs::read(leases.leases_dir().join("token.json"))?;
    let mut max = first.token;
    leases.release(&first)?;
    for _ in 0..5 {
        let g = leases
            .acquire(&LeaseRequest::exclusive("a").file("f"))?
            .lease;
        max = g.token;
        leases.release(&g)?;
    }
    // Every lease is released: only token.json and generation record the last token.
    let token = leases.leases_dir().join("token.json");
    let sealed_zero = atomic_file::checksum::encode(b"{\"last\":0}\n");
    for (label, damage) in [
        ("removed", None),
        ("raw {\"last\":0}", Some(b"{\"last\":0}".to_vec())),
        (
            "{\"last\":0} with a valid checksum",
            Some(sealed_zero.clone()),
        ),
        ("an older valid copy", Some(old_copy.clone())),
    ] {
        let good = fs::read(&token)?;
        match &damage {
            None => fs::remove_file(&token)?,
            Some(bytes) => fs::write(&token, bytes)?,
        }
        let cold = Leases::open_with(root.path(), opts())?;
        let err = cold
            .acquire(&LeaseRequest::exclusive("b").file("g"))
            .expect_err(label);
        assert!(
            err.is_damaged() && names(&err, "token.json"),
            "{label}: {err}"
        );
        let state = cold.check()?.token;
        match (label, &state) {
            ("removed", TokenState::Missing)
            | (_, TokenState::Damaged { .. } | TokenState::WentBack { .. }) => {}
            _ => panic!("{label}: {state:?}"),
        }
        fs::write(&token, &good)?;
    }
    // Repaired from what can still be seen: above every token ever handed out.
    fs::remove_file(&token)?;
    let report = leases.repair()?;
    assert_eq!(report.token, TokenState::Missing);
    assert_eq!(
        report.highest_seen, max,
        "generation still records the last token"
    );
    let next = leases
        .acquire(&LeaseRequest::exclusive("c").file("h"))?
        .lease;
    assert_eq!(next.token, max + REPAIR_MARGIN + 1);
    assert!(leases.check()?.is_healthy());
    Ok(())
}

/// A leases directory created by hand (without its counter) is not a fresh one.
#[test]
fn a_leases_directory_without_its_counter_is_corrupt_not_new() -> Result {
    let root = tempfile::tempdir()?;
    fs::create_dir_all(root.path().join(".gapreg/leases"))?;
    let opts = || opts().leases_dir(".gapreg/leases");
    let leases = Leases::open_with(root.path(), opts())?;
    let err = leases
        .acquire(&LeaseRequest::exclusive("a").file("f"))
        .expect_err("no counter");
    assert!(err.is_damaged() && names(&err, "token.json"), "{err}");
    // A directory leaselock creates always has one, and no staging directory is left.
    let fresh = tempfile::tempdir()?;
    let leases = Leases::open_with(fresh.path(), opts())?;
    assert!(leases.check()?.is_healthy());
    let names: Vec<String> = fs::read_dir(fresh.path().join(".gapreg"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    assert_eq!(names, ["leases"]);
    assert_eq!(
        leases
            .acquire(&LeaseRequest::exclusive("a").file("f"))?
            .lease
            .token,
        1
    );
    Ok(())
}
