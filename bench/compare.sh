#!/usr/bin/env bash
# Run `thinkscope-cli bench` and the llama.cpp bench alternately and print a Markdown table
# of the medians over rounds, with the ratio ours / llama.cpp.
#   bench/compare.sh [--batch 1,4,8,16] [--prompt-tokens 128] [--decode-tokens 32] [--repeats 3]
# Environment: THREADS (2), ROUNDS (3), MODEL (models/SmolLM2-135M-Instruct.Q4_1.gguf),
#   CLI (${CARGO_TARGET_DIR:-target}/release/thinkscope-cli), PY (bench/.venv/bin/python).
# Extra arguments go to both benches. Needs `cargo build --release` and bench/setup_llamacpp.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-3}"
MODEL="${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
CLI="${CLI:-${CARGO_TARGET_DIR:-target}/release/thinkscope-cli}"
PY="${PY:-bench/.venv/bin/python}"
for f in "$CLI" "$PY" "$MODEL"; do
    [ -e "$f" ] || { echo "missing $f (see the comment at the top of $0)" >&2; exit 1; }
done

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for r in $(seq 1 "$ROUNDS"); do
    echo "round $r/$ROUNDS: thinkscope" >&2
    "$CLI" --threads "$THREADS" bench --json --model "$MODEL" "$@" > "$OUT/ours.$r.json"
    echo "round $r/$ROUNDS: llama.cpp" >&2
    "$PY" bench/llamacpp_bench.py --threads "$THREADS" --json --model "$MODEL" "$@" > "$OUT/llama.$r.json"
done

python3 - "$OUT" "$ROUNDS" "$THREADS" "$MODEL" <<'EOF'
import json, statistics, sys
out, rounds, threads, model = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
load = lambda name: [json.load(open(f"{out}/{name}.{r}.json")) for r in range(1, rounds + 1)]
ours, llama = load("ours"), load("llama")

def metrics(runs):
    rows = {"prefill (tok/s)": [r["prefill_tok_s"] for r in runs]}
    for b in sorted(runs[0]["decode_tok_s"], key=int):
        rows[f"decode batch {b} (tok/s total)"] = [r["decode_tok_s"][b] for r in runs]
    rows["fork (µs, lower is better)"] = [r["fork_micros"] for r in runs]
    rows["peak RSS (MB, lower is better)"] = [r["peak_rss_mb"] for r in runs]
    return {k: statistics.median(v) for k, v in rows.items()}

a, b = metrics(ours), metrics(llama)
print(f"Model `{model}`, {threads} threads, median of {rounds} rounds; "
      f"llama.cpp via llama-cpp-python {llama[0]['llama_cpp_python_version']}.\n")
print("| metric | thinkscope | llama.cpp | ours / llama.cpp |")
print("|---|---:|---:|---:|")
for k in a:
    if k in b:
        ratio = f"{a[k] / b[k]:.2f}" if b[k] else "n/a"
        print(f"| {k} | {a[k]:.1f} | {b[k]:.1f} | {ratio} |")
EOF
