#!/usr/bin/env python3
"""Regenerate llamacpp.json: llama.cpp's logits and token ids on thinkscope's tiny oracle models.

The tiny models (one per architecture and rope variant, `oracle_specs()` in
crates/engine/src/tiny/mod.rs) are written by the engine's own writer, through the ignored test
`write_oracle_models`; this script then loads each file in llama.cpp (llama-cpp-python) and
records, per model:

- `sha256`: of the file llama.cpp ran. The engine test rewrites the file from the same spec and
  seed and fails if the bytes differ, so the logits always belong to the file under test.
- `prompt`/`ids`: a fixed conversation rendered with the file's chat template (jinja2, as
  llama.cpp's server would with `--jinja`), tokenized by llama.cpp with its BOS policy and
  special tokens parsed (no BOS added when the template wrote it).
- `prompt_no_think`/`ids_no_think`: the same with `enable_thinking=False` passed to the
  template (as llama.cpp's server passes `chat_template_kwargs`); templates without the switch
  ignore it.
- `logits`: the logits after a few prompt positions (the first, one past Gemma's sliding window,
  the middle, the last), rounded to 1e-4.
- `tokenize`: llama.cpp's ids for the default model's stress texts
  (../smollm2-135m-llamacpp.json, key `tokenize`) and a few more, without BOS, special tokens
  parsed.

llama.cpp runs with one thread and the file's own context length (thinkscope always runs with the
trained context; for LongRoPE that picks the long factors), and with YaRN's factors left to the
model (-1: llama-cpp-python's defaults would override them).

Usage (from anywhere; needs cargo and llama-cpp-python, e.g. bench/setup_llamacpp.sh):
    ~/.cache/thinkscope/llama-venv/bin/python crates/engine/tests/data/oracle/make_oracle.py
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jinja2
import llama_cpp
from llama_cpp import Llama

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[4]
OUT = HERE / "llamacpp.json"

MESSAGES = [
    {
        "role": "user",
        "content": "What is 17 * 23? Think step by step, then say: the answer is 391.",
    }
]
EXTRA_TEXTS = [
    "I'M SURE it's fine; they'll say we'd DONE it, HelloWorld and ÉCOLE école.",
    "<think>\nLet me check 12345 again.\n</think>\n\nThe answer is 391.",
    "aÉb ΣΑΣ Straße 1,000,000 and 3.5%",
]


def render(template: str, bos: str, eos: str, **kwargs) -> str:
    env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=False, lstrip_blocks=False)
    return env.from_string(template).render(
        messages=MESSAGES, add_generation_prompt=True, bos_token=bos, eos_token=eos, **kwargs
    )


def piece(m: Llama, tok: int) -> str:
    if tok < 0:
        return ""
    return llama_cpp.llama_vocab_get_text(llama_cpp.llama_model_get_vocab(m.model), tok).decode()


def main() -> None:
    stress = json.loads((HERE.parent / "smollm2-135m-llamacpp.json").read_text())["tokenize"]
    texts = [t["text"] for t in stress] + EXTRA_TEXTS
    out = {
        "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}, "
        "n_threads=1, n_ctx=context_length, yarn factors from the model",
        "how": "crates/engine/tests/data/oracle/make_oracle.py",
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, THINKSCOPE_ORACLE_DIR=tmp)
        subprocess.run(
            [
                "cargo", "test", "--release", "-p", "thinkscope-engine", "--test", "oracle",
                "--", "--ignored", "--exact", "write_oracle_models",
            ],
            cwd=ROOT, env=env, check=True,
        )
        for path in sorted(Path(tmp).glob("*.gguf")):
            name = path.stem
            data = path.read_bytes()
            from gguf import GGUFReader

            reader = GGUFReader(path)
            arch = reader.fields["general.architecture"].contents()
            n_ctx = int(reader.fields[f"{arch}.context_length"].contents())
            template = reader.fields["tokenizer.chat_template"].contents()
            m = Llama(
                model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=1,
                n_threads_batch=1, logits_all=True, verbose=False,
                yarn_attn_factor=-1.0, yarn_beta_fast=-1.0, yarn_beta_slow=-1.0,
            )
            bos = piece(m, m.token_bos())

            def tokenize_prompt(p: str) -> list[int]:
                # As llama.cpp's chat code does: a template that writes BOS gets no second one.
                return m.tokenize(p.encode(), add_bos=not (bos and p.startswith(bos)), special=True)

            prompt = render(template, bos, piece(m, m.token_eos()))
            ids = tokenize_prompt(prompt)
            no_think = render(template, bos, piece(m, m.token_eos()), enable_thinking=False)
            m.eval(ids)
            n = len(ids)
            positions = sorted({0, min(9, n - 1), n // 2, n - 1})
            logits = {
                str(p): [round(float(x), 4) for x in m.scores[p]] for p in positions
            }
            tokenize = [
                {"text": t, "ids": m.tokenize(t.encode(), add_bos=False, special=True)}
                for t in texts
            ]
            out["models"][name] = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "file_bytes": len(data),
                "prompt": prompt,
                "ids": ids,
                "prompt_no_think": no_think,
                "ids_no_think": tokenize_prompt(no_think),
                "logits": logits,
                "tokenize": tokenize,
            }
            print(f"{name}: {n} prompt tokens, vocabulary {m.n_vocab()}", file=sys.stderr)
            del m
    OUT.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
