"""Module 10 — pretrain a character-level transformer on TinyShakespeare.

Builds the classic small configuration (4 layers, 4 heads, width 128, context 64, batch 12),
trains it with ``g2c.pretraining.Trainer`` (AdamW, warmup + cosine lr, clipping), writes a
checkpoint halfway, resumes from it in a fresh Trainer and checks that the resumed losses
equal an uninterrupted run's, then prints a sample.

    .venv/bin/python examples/10_pretraining.py            # 2000 steps (~2 min on 1 CPU core)
    .venv/bin/python examples/10_pretraining.py --smoke    # seconds, tiny text and model
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from g2c.pretraining import Trainer, split_token_stream
from g2c.sampling import generate
from g2c.tokenizer import CharTokenizer
from g2c.transformer import TransformerLM

SMOKE_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40


def load_text(smoke: bool) -> str:
    """TinyShakespeare (or a small in-script text for --smoke)."""
    if smoke:
        return SMOKE_TEXT
    from g2c.data import load_text as _load

    return _load("tinyshakespeare")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="pretrain a char-level transformer")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("G2C_THREADS", "1")))
    text = load_text(args.smoke)
    tok = CharTokenizer(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train, val = split_token_stream(ids, 0.9)
    steps = args.steps or (20 if args.smoke else 2000)
    dims = (32, 2, 2, 32) if args.smoke else (128, 4, 4, 64)

    def build() -> tuple[TransformerLM, Trainer]:
        torch.manual_seed(1337)
        D, L, H, T = dims
        model = TransformerLM(
            tok.vocab_size, D, L, H, T, init="gpt2", attention_impl="sdpa", fused=True
        )
        trainer = Trainer(
            model, batch_size=12 if not args.smoke else 4, context_length=T, max_steps=steps,
            max_lr=1e-3, min_lr=1e-4, warmup_steps=min(100, steps // 10), grad_clip=1.0,
            optimizer="adamw", betas=(0.9, 0.99), device="cpu", loss_impl="fused", seed=1337,
            eval_every=max(1, steps // 4), eval_iters=5 if args.smoke else 50,
        )  # fmt: skip
        return model, trainer

    def log(e: dict) -> None:
        val_loss = "" if e["val_loss"] is None else f"  val {e['val_loss']:.3f}"
        print(f"step {e['step']:5d}  train {e['train_loss']:.3f}{val_loss}  "
              f"{e['tokens_per_s']:.0f} tok/s  MFU {100 * e['mfu']:.1f}%")  # fmt: skip

    model, trainer = build()
    history = trainer.train(train, val, on_log=log)

    # resume check: half the steps, checkpoint, a fresh trainer continues
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "ckpt.pt"
        _, first = build()
        first.train(train, val, checkpoint_path=ckpt, stop_step=steps // 2)
        _, second = build()
        state = second.load_checkpoint(ckpt)
        resumed = second.train(train, val, history=state["history"])
    same = resumed["train_loss"] == history["train_loss"]
    print(f"resumed run reproduces the uninterrupted losses exactly: {same}")
    out = generate(model, torch.tensor(tok.encode("\n")), 200 if not args.smoke else 40,
                   temperature=0.8, top_k=20, generator=torch.Generator().manual_seed(0))  # fmt: skip
    print(tok.decode(out.tolist()))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
