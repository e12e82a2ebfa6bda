#!/usr/bin/env python3
"""llama.cpp counterpart of `thinkscope-cli bench`, through llama-cpp-python's low-level API.

Same workload as the Rust bench (src/bin/thinkscope-cli.rs):
  prefill   a pseudo-text prompt decoded in one batch from an empty cache (median tok/s)
  fork      one seq_cp of the prompt's sequence into a fresh sequence (median µs of 100)
  decode    for each batch size B: copy the prompt into B sequences, then `decode_tokens`
            steps of one llama_decode holding one token per sequence (median total tok/s)

The KV cache is unified (kv_unified=true), so seq_cp shares the prompt's cells between
sequences, like our copy-on-write fork; --split-kv gives each sequence its own stream.

  bench/setup_llamacpp.sh
  bench/.venv/bin/python bench/llamacpp_bench.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2 --json
"""
import argparse
import ctypes
import json
import os
import sys
import time

import llama_cpp as L


def median(xs):
    # Upper median, as the Rust bench does (v[len / 2] of the sorted values).
    return sorted(xs)[len(xs) // 2]


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


@L.llama_log_callback
def _log(level, text, _user):
    if level == 3:  # GGML_LOG_LEVEL_ERROR; drop the load-time chatter
        sys.stderr.write(text.decode("utf-8", "replace"))


class KV:
    """Sequence operations on the context's KV cache, across llama.cpp API generations."""

    def __init__(self, ctx):
        if hasattr(L, "llama_get_memory"):  # llama.cpp >= mid-2025
            mem = L.llama_get_memory(ctx)
            self.cp = lambda src, dst: L.llama_memory_seq_cp(mem, src, dst, -1, -1)
            self.rm = lambda seq: L.llama_memory_seq_rm(mem, seq, -1, -1)
            self.clear = lambda: L.llama_memory_clear(mem, True)
        else:
            self.cp = lambda src, dst: L.llama_kv_self_seq_cp(ctx, src, dst, -1, -1)
            self.rm = lambda seq: L.llama_kv_self_seq_rm(ctx, seq, -1, -1)
            self.clear = lambda: L.llama_kv_self_clear(ctx)


class Batch:
    def __init__(self, capacity):
        self.b = L.llama_batch_init(capacity, 0, 1)

    def fill(self, items):
        """items: (token, pos, seq, want_logits) tuples."""
        b = self.b
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = int(logits)
        b.n_tokens = len(items)
        return b

    def free(self):
        L.llama_batch_free(self.b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", default="1,4,8,16", help="comma-separated batch sizes")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--split-kv", action="store_true", help="one KV stream per sequence (kv_unified=false)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    batches = [int(x) for x in a.batch.split(",") if x.strip()]
    if a.prompt_tokens < 1 or a.decode_tokens < 1 or a.repeats < 1 or not batches or min(batches) < 1:
        ap.error("prompt tokens, decode tokens, repeats and batch sizes must be at least 1")
    max_b, n_prompt, n_dec = max(batches), a.prompt_tokens, a.decode_tokens

    L.llama_log_set(_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    model = L.llama_model_load_from_file(a.model.encode(), mparams)
    if not model:
        sys.exit(f"error: could not load {a.model}")
    vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))

    # Sequence 0 holds the prompt; 1..max_b are its copies.
    n_seq = max_b + 1
    unified = not a.split_kv
    if unified:  # prompt cells are shared; each copy adds its own decoded tokens
        n_ctx = n_prompt + n_seq * n_dec + 256
    else:  # every stream gets n_ctx / n_seq cells (llama.cpp pads n_ctx to a multiple of 256)
        n_ctx = n_seq * 256 * -(-(n_prompt + n_dec + 1) // 256)
    cparams = L.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_batch = cparams.n_ubatch = max(n_prompt, max_b, 512)
    cparams.n_seq_max = n_seq
    cparams.n_threads = cparams.n_threads_batch = a.threads
    if hasattr(cparams, "kv_unified"):
        cparams.kv_unified = unified
    if hasattr(cparams, "no_perf"):
        cparams.no_perf = True
    ctx = L.llama_init_from_model(model, cparams)
    if not ctx:
        sys.exit("error: could not create the llama.cpp context")
    kv = KV(ctx)
    batch = Batch(max(n_prompt, max_b))

    def decode(items=None):  # items=None: decode the batch as it was last filled
        rc = L.llama_decode(ctx, batch.fill(items) if items is not None else batch.b)
        if rc != 0:
            sys.exit(f"error: llama_decode returned {rc}")
        L.llama_synchronize(ctx)

    prompt = [200 + (i * 7919) % (vocab - 400) for i in range(n_prompt)]
    prompt_items = [(t, p, 0, p == n_prompt - 1) for p, t in enumerate(prompt)]

    # Warm-up, then prefill from an empty cache.
    decode(prompt_items)
    prefill = []
    for _ in range(a.repeats):
        kv.clear()
        batch.fill(prompt_items)
        t = time.perf_counter()
        decode()
        prefill.append(n_prompt / (time.perf_counter() - t))
    # The last prefill leaves the prompt in sequence 0: the root of the forks.

    fork_us = []
    for _ in range(100):
        t = time.perf_counter()
        kv.cp(0, 1)
        fork_us.append((time.perf_counter() - t) * 1e6)
        kv.rm(1)

    decode_tok_s = {}
    for b in batches:
        seqs = range(1, b + 1)
        rates = []
        for _ in range(a.repeats):
            for s in seqs:
                kv.cp(0, s)
            t = time.perf_counter()
            for step in range(n_dec):
                decode([(300 + ((i * 31 + step * 17) % (vocab - 600)), n_prompt + step, s, True)
                        for i, s in enumerate(seqs)])
            rates.append(b * n_dec / (time.perf_counter() - t))
            for s in seqs:
                kv.rm(s)
        decode_tok_s[str(b)] = median(rates)

    out = {
        "model": os.path.basename(a.model),
        "engine": "llama.cpp",
        "llama_cpp_python_version": L.__version__,
        "threads": a.threads,
        "prefill_tok_s": median(prefill),
        "decode_tok_s": decode_tok_s,
        "fork_micros": median(fork_us),
        "peak_rss_mb": peak_rss_mb(),
    }
    batch.free()
    L.llama_free(ctx)
    L.llama_model_free(model)

    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"model: {out['model']} on llama.cpp {L.__version__} (llama-cpp-python), {a.threads} threads, "
              f"{'unified' if unified else 'split'} KV")
        print(f"prefill ({n_prompt} tokens): {out['prefill_tok_s']:.1f} tok/s")
        for b, r in decode_tok_s.items():
            print(f"decode batch {int(b):>3}: {r:.1f} tok/s total ({r / int(b):.1f} per sequence)")
        print(f"fork: {out['fork_micros']:.1f} µs")
        print(f"peak RSS: {out['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
