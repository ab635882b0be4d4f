//! Rebuilds a slice of the hand-kept registry this crate replaces (epics with sub-gaps, an
//! "Epic 1 blocks Epic 2" graph, claims, completed work) in a temporary directory, then prints
//! one gap file, `ready`, and the rendered overview.
//!
//! ```sh
//! cargo run -p gapreg --example seed_registry
//! ```

use gapreg::{Config, GapSpec, LoopSpec, Registry, Severity, Status};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = tempfile::tempdir()?;
    let reg = Registry::init(repo.path(), Config::default())?;
    let epic = |id: &str, objective: &str, deps: &[&str]| LoopSpec {
        id: id.into(),
        owner: "@ronny".into(),
        scope: "simulation".into(),
        priority: Some("high".into()),
        objective: objective.into(),
        depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
        ..LoopSpec::default()
    };
    reg.new_loop(epic(
        "EPIC-01-RATE-ALLOCATION",
        "Rate-limited resource allocation",
        &[],
    ))?;
    reg.new_loop(epic(
        "EPIC-02-CONTINUOUS-EXECUTION",
        "Continuous autonomous loops",
        &["EPIC-01-RATE-ALLOCATION"],
    ))?;
    let res = reg.file_batch(vec![
        GapSpec::new("RateTracker class", Severity::High)
            .prefix("RES")
            .gap_type("missing-entry")
            .parent_loop("EPIC-01-RATE-ALLOCATION"),
        GapSpec::new("Remove tick-based reset", Severity::Medium)
            .prefix("RES")
            .parent_loop("EPIC-01-RATE-ALLOCATION")
            .depends_on("@0"),
    ])?;
    let exec = reg.file_batch(vec![
        GapSpec::new("Agent sleep system", Severity::High)
            .prefix("EXEC")
            .parent_loop("EPIC-02-CONTINUOUS-EXECUTION"),
        GapSpec::new("Worker process isolation", Severity::Critical)
            .prefix("EXEC")
            .parent_loop("EPIC-02-CONTINUOUS-EXECUTION")
            .description("Run each agent loop in its own worker process.\nSee plans/epic02.md."),
    ])?;
    reg.file(GapSpec::new("Threat model document", Severity::Medium).prefix("INFRA"))?;
    reg.claim(&res[0].id, "CC-3", None)?;
    reg.set_status(&res[0].id, Status::Complete, None)?;

    println!("--- {} ---", reg.gap_path(&exec[1].id).display());
    print!("{}", std::fs::read_to_string(reg.gap_path(&exec[1].id))?);
    println!("--- ready ---");
    for g in reg.ready()? {
        println!("{} [{}] {}", g.id, g.severity, g.title);
    }
    println!("--- blockers of {} ---", exec[0].id);
    for b in reg.blockers(&exec[0].id)? {
        println!("{b}");
    }
    println!("--- render ---");
    println!("{}", reg.render()?);
    Ok(())
}
