"""Module 11 — from logits to text: greedy, temperature, top-k, top-p, beam search, streaming,
stop strings and JSON-constrained decoding, with the KV cache.

Trains a small char model briefly (or a tiny one with --smoke), then decodes the same prompt
several ways, shows that cached and uncached greedy decoding give the same tokens, and that
even this model emits valid JSON under the constraint.

    .venv/bin/python examples/11_sampling.py            # ~1 min on 1 CPU core
    .venv/bin/python examples/11_sampling.py --smoke    # seconds
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from g2c.pretraining import Trainer
from g2c.sampling import beam_search, generate, generate_json, stream_generate
from g2c.tokenizer import CharTokenizer
from g2c.transformer import TransformerLM

TEXT = (
    'ROMEO:\nBut soft, what light through yonder window breaks?\n{"name": "Juliet", "age": 13}\n'
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo? [1, 2, 3] true null\n"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="decoding strategies")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    text = TEXT * 50
    tok = CharTokenizer(text + "0456789-.eE+\\")
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    torch.manual_seed(0)
    model = TransformerLM(
        tok.vocab_size, 64, 2, 4, 128, init="gpt2", attention_impl="sdpa", fused=True
    )
    steps = 30 if args.smoke else 400
    Trainer(model, batch_size=8, context_length=64, max_steps=steps, max_lr=3e-3,
            optimizer="adamw", device="cpu", seed=0, loss_impl="fused").train(ids)  # fmt: skip
    model.eval()
    prompt = torch.tensor(tok.encode("ROMEO:\n"))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    n = 40 if args.smoke else 120
    show = lambda name, out: print(f"--- {name}\n{tok.decode(out.tolist())}")  # noqa: E731
    t0 = time.perf_counter()
    greedy = generate(model, prompt, n, temperature=0)
    t_cache = time.perf_counter() - t0
    t0 = time.perf_counter()
    greedy_nc = generate(model, prompt, n, temperature=0, use_cache=False)
    t_nocache = time.perf_counter() - t0
    show("greedy", greedy)
    print(f"cache: identical={torch.equal(greedy, greedy_nc)}, "
          f"{t_cache:.2f}s vs {t_nocache:.2f}s without")  # fmt: skip
    show("temperature 1.2", generate(model, prompt, n, temperature=1.2, generator=g()))
    show("top-k 5", generate(model, prompt, n, top_k=5, generator=g()))
    show("top-p 0.9", generate(model, prompt, n, top_p=0.9, generator=g()))
    show("repetition penalty 1.3", generate(model, prompt, n, temperature=0,
                                            repetition_penalty=1.3))  # fmt: skip
    show("beam search (4 beams)", beam_search(model, prompt, n, num_beams=4))
    show("stop at 'Romeo'", generate(model, prompt, n, temperature=0, stop_strings=["Romeo"],
                                     decode=tok.decode))  # fmt: skip
    print("--- streaming: ", end="")
    for t in stream_generate(model, prompt, 30, top_k=5, generator=g()):
        print(tok.decode([t]), end="", flush=True)
    print()
    js = generate_json(model, tok, "JULIET:\n", max_new_tokens=60, top_level="object",
                       generator=g())  # fmt: skip
    print(f"--- JSON-constrained: {js!r} -> {json.loads(js)!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
