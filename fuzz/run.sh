#!/bin/sh
# Run one cargo-fuzz target for a number of seconds on its corpus, one job, and keep the log.
#   fuzz/run.sh TARGET SECONDS      (after `cargo +nightly fuzz build` and writing the corpus)
# Build:  cd fuzz && cargo +nightly fuzz build
# Corpus: cd fuzz && cargo run --release --example seed_corpus
set -eu
target="$1"
secs="${2:-300}"
cd "$(dirname "$0")"
bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/$target"
mkdir -p "corpus/$target" "artifacts/$target" logs
"$bin" "corpus/$target" -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 > "logs/$target.log" 2>&1 || true
grep -E "DONE|stat::|ERROR|SUMMARY|deadly|Test unit written" "logs/$target.log" | tail -n 20
