//! Model-based test: random sequences of reserve / peek / validate / init / reopen against a
//! plain in-memory map of counters.

use std::collections::BTreeMap;

use idreserve::{Config, Store};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Reserve(usize, u64),
    Peek(usize),
    Validate(usize, u64),
    Init(usize, u64, bool),
    Reopen,
}

const PREFIXES: [&str; 3] = ["SEC", "GAP-OP", "T2"];

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PREFIXES.len();
    prop_oneof![
        4 => (p.clone(), 1..5u64).prop_map(|(p, n)| Op::Reserve(p, n)),
        2 => p.clone().prop_map(Op::Peek),
        2 => (p.clone(), 0..30u64).prop_map(|(p, n)| Op::Validate(p, n)),
        1 => (p, 0..30u64, any::<bool>()).prop_map(|(p, n, f)| Op::Init(p, n, f)),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::create(dir.path(), Config::default()).expect("create");
        let mut model: BTreeMap<&str, u64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Reserve(p, n) => {
                    let prefix = PREFIXES[p];
                    let r = store.reserve(prefix, n).expect("reserve");
                    let counter = model.entry(prefix).or_default();
                    prop_assert_eq!(r.first(), *counter + 1);
                    prop_assert_eq!(r.len(), n);
                    *counter += n;
                }
                Op::Peek(p) => {
                    let prefix = PREFIXES[p];
                    let next = store.peek(prefix).expect("peek");
                    prop_assert_eq!(next.number(), model.get(prefix).copied().unwrap_or(0) + 1);
                }
                Op::Validate(p, n) => {
                    let prefix = PREFIXES[p];
                    let ok = store.validate(&format!("{prefix}-{n}")).is_ok();
                    let counter = model.get(prefix).copied().unwrap_or(0);
                    prop_assert_eq!(ok, n >= 1 && n <= counter);
                }
                Op::Init(p, n, force) => {
                    let prefix = PREFIXES[p];
                    let doc = dir.path().join("doc.md");
                    std::fs::write(&doc, format!("see {prefix}-{n} here")).expect("doc");
                    store.init_from(&[doc], None, force).expect("init");
                    let counter = model.entry(prefix).or_default();
                    if force { *counter = n } else { *counter = (*counter).max(n) }
                }
                Op::Reopen => store = Store::open(dir.path()).expect("reopen"),
            }
            let expected: BTreeMap<String, u64> = model
                .iter()
                .filter(|&(_, &v)| v > 0)
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
            let actual: BTreeMap<String, u64> =
                store.counters().expect("counters").into_iter().filter(|&(_, v)| v > 0).collect();
            prop_assert_eq!(actual, expected);
        }
    }
}
