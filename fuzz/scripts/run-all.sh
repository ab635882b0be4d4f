#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) each, one after the other, on stable Rust.
# Usage: fuzz/scripts/run-all.sh [SECONDS] [extra libFuzzer flags...]
# Exits non-zero as soon as a target fails; the reproducer is in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
shift || true
cargo fuzz build --sanitizer none
for target in $(cargo fuzz list); do
    log="target/fuzz-${target}.log"
    echo "== ${target} (${seconds}s, log in fuzz/${log})"
    if ! cargo fuzz run "${target}" --sanitizer none -- -max_total_time="${seconds}" "$@" >"${log}" 2>&1; then
        tail -n 40 "${log}"
        echo "== ${target} FAILED" >&2
        exit 1
    fi
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "${log}" || true
done
