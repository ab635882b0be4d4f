//! Loom models of the engine over the in-memory stores: every interleaving of two writers,
//! with the registry lock, the documents and the counters as loom mutexes.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p gapreg --release --lib loom`.

use loom::sync::Arc;
use loom::thread;

use crate::error::ErrorKind;
use crate::model::{GapSpec, Severity, Status};
use crate::store::{ManualClock, MemCoordination, MemDocuments};
use crate::{ConflictDetail, Engine};

#[derive(Default)]
struct Stores {
    docs: MemDocuments,
    coord: MemCoordination,
    clock: ManualClock,
}

impl Stores {
    fn engine(&self) -> Engine<'_, MemDocuments, MemCoordination, ManualClock> {
        Engine::new(&self.docs, &self.coord, &self.clock, "OP")
    }
}

/// Two agents claim one open gap at once: exactly one wins, the other is told who holds
/// it, and the document records the winner with one more revision.
#[test]
fn loom_claim_race_has_one_winner() {
    loom::model(|| {
        let stores = Arc::new(Stores::default());
        stores
            .engine()
            .file(GapSpec::new("contended", Severity::High))
            .expect("file");
        let handles: Vec<_> = ["CC-1", "CC-2"]
            .into_iter()
            .map(|agent| {
                let stores = Arc::clone(&stores);
                thread::spawn(move || (agent, stores.engine().claim("GAP-OP-1", agent, None)))
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let winners: Vec<&str> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(a, _)| *a)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for (agent, r) in &results {
            if let Err(e) = r {
                match e.kind() {
                    ErrorKind::Conflict {
                        detail: ConflictDetail::ClaimedBy { agent: holder, .. },
                        ..
                    } => assert_eq!(holder, winners[0], "{agent} was told the wrong holder"),
                    other => panic!("{agent}: {other:?}"),
                }
            }
        }
        let gap = stores.docs.gaps().remove("GAP-OP-1").expect("gap");
        assert_eq!(gap.claimed_by.as_deref(), Some(winners[0]));
        assert_eq!((gap.status, gap.rev), (Status::InProgress, 2));
    });
}

/// Two batches of two filed at once: four distinct ids, each batch's ids consecutive and its
/// registry positions contiguous, no position shared, every document written.
#[test]
fn loom_batches_stay_contiguous() {
    loom::model(|| {
        let stores = Arc::new(Stores::default());
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let stores = Arc::clone(&stores);
                thread::spawn(move || {
                    let specs = (0..2)
                        .map(|i| GapSpec::new(format!("batch {t} entry {i}"), Severity::Low))
                        .collect();
                    stores.engine().file_batch(specs, None).expect("batch")
                })
            })
            .collect();
        let batches: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let mut seqs = Vec::new();
        let mut numbers = Vec::new();
        for batch in &batches {
            assert_eq!(batch[1].seq, batch[0].seq + 1, "positions not contiguous");
            let n: Vec<u64> = batch
                .iter()
                .map(|g| {
                    g.id.rsplit('-')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                })
                .collect();
            assert_eq!(n[1], n[0] + 1, "ids not consecutive: {batch:?}");
            seqs.extend(batch.iter().map(|g| g.seq));
            numbers.extend(n);
        }
        seqs.sort_unstable();
        numbers.sort_unstable();
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(numbers, [1, 2, 3, 4]);
        assert_eq!(stores.docs.gaps().len(), 4);
    });
}
