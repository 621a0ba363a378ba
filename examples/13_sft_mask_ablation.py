"""Module 13 deliverable: masked vs unmasked SFT of a tiny model on the generated task family.

Same model init, same data, same batches (same seed); the only difference is the loss mask:
"masked" learns assistant tokens only (render_with_mask), "unmasked" learns every token of the
conversation (prompt included). Reported on HELD-OUT problems: assistant-token loss (the same
masked metric for both) and exact-match task accuracy with greedy decoding, overall and per
family.

    G2C_DATA_DIR=... .venv/bin/python examples/13_sft_mask_ablation.py [--steps 600] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from g2c.sampling import generate
from g2c.sft import (
    FAMILIES,
    ChatTemplate,
    SFTExample,
    SFTTrainer,
    generate_tasks,
    render_with_mask,
    score_answer,
    sft_eval_loss,
)
from g2c.tokenizer import BPETokenizer
from g2c.transformer import TransformerLM


def accuracy(model, tok, items, template) -> dict[str, float]:
    end = tok.special_to_id[ChatTemplate.END]
    hits: dict[str, list[bool]] = {f: [] for f in FAMILIES}
    for it in items:
        prompt = template.encode_prompt(it.messages[:-1], tok)
        out = generate(model, prompt, 40, temperature=0.0, eos_id=end)[len(prompt) :].tolist()
        text = tok.decode([i for i in out if i != end])
        hits[it.family].append(score_answer(it, text))
    per = {f: sum(h) / len(h) for f, h in hits.items() if h}
    per["all"] = sum(sum(h) for h in hits.values()) / len(items)
    return per


def run(masked: bool, args, tok, train, heldout_items, heldout) -> dict:
    torch.manual_seed(args.seed)
    model = TransformerLM(tok.vocab_size, args.dim, args.layers, 4, 96)
    examples = train if masked else [SFTExample(ex.ids, [1] * len(ex.ids)) for ex in train]
    trainer = SFTTrainer(
        model, examples=examples, max_seq_len=96, pad_id=tok.special_to_id["<|pad|>"],
        batch_size=32, max_steps=args.steps, max_lr=3e-3, min_lr=3e-4,
        warmup_steps=args.steps // 20, weight_decay=0.01, grad_clip=1.0, eval_iters=1,
        device="cpu", seed=args.seed,
    )  # fmt: skip
    t0 = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    seconds = time.perf_counter() - t0
    loss = sft_eval_loss(model, heldout, max_seq_len=96, pad_id=0)["loss"]
    acc = accuracy(model, tok, heldout_items, ChatTemplate())
    return {"masked": masked, "heldout_assistant_loss": loss, "accuracy": acc,
            "train_seconds": seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.dim, args.layers = 5, 32, 1
    torch.set_num_threads(1)
    tok = BPETokenizer.with_course_special_tokens()  # byte-level: 256 bytes + specials
    train_items = generate_tasks(3000, seed=args.seed)
    heldout_items = generate_tasks(60 if args.smoke else 300, seed=args.seed, split="heldout")
    train = [render_with_mask(it.messages, tok) for it in train_items]
    heldout = [render_with_mask(it.messages, tok) for it in heldout_items]
    results = [run(m, args, tok, train, heldout_items, heldout) for m in (True, False)]
    print(json.dumps({"args": vars(args), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
