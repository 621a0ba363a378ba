# %% [markdown]
# # 04b — tokenizer families: BPE, WordPiece and Unigram on the same text
#
# Three ways to learn a subword vocabulary, trained on the same text at the same vocabulary
# size, then run on the same passage:
#
# * **BPE** (`g2c.tokenizer.BPETokenizer`, byte-level, GPT-2/4 style): merge the most *frequent*
#   adjacent pair; encode by replaying merges.
# * **WordPiece** (`g2c.tokenizer.wordpiece`, BERT style): merge the pair with the best
#   *likelihood score* count(ab) / (count(a) count(b)); encode greedily, longest match first.
# * **Unigram** (`g2c.tokenizer.unigram`, SentencePiece style): start big, prune by EM on a
#   unigram language model; encode with Viterbi (most probable segmentation).
#
# The model is trained on the first 90 % of TinyShakespeare; the counts are measured on the
# held-out last 10 % and on one passage from it, shown split per family.
#
#     .venv/bin/python examples/04_tokenizer_families.py                 # ~4 min on one core
#     .venv/bin/python examples/04_tokenizer_families.py --smoke --out /tmp/t.json   # seconds
# %%
from __future__ import annotations

import argparse
import time
from pathlib import Path

from g2c.artifacts import atomic_write_json
from g2c.tokenizer import BPETokenizer
from g2c.tokenizer.unigram import UnigramTokenizer
from g2c.tokenizer.wordpiece import WordPieceTokenizer

REPO = Path(__file__).resolve().parents[1]

_SMOKE_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. "
    "resolved.\n\nROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, "
    "and Juliet is the sun.\n\n"
)


# %% 1. the text: train on 90 %, measure on the held-out 10 %
def load_texts(smoke: bool) -> tuple[str, str]:
    """(train_text, held_out_text). Smoke mode uses a short built-in excerpt."""
    if smoke:
        return _SMOKE_TEXT * 20, _SMOKE_TEXT
    from g2c.data import load_text

    text = load_text("tinyshakespeare")
    cut = int(0.9 * len(text))
    return text[:cut], text[cut:]


def pick_passage(held_out: str, max_chars: int, min_chars: int = 150) -> str:
    """The first whole speech (block between blank lines) of at least ``min_chars`` characters
    in the held-out text, cut to ``max_chars``; the first block is skipped (it may be partial)."""
    blocks = held_out.split("\n\n")[1:] or [held_out]
    passage = next((b for b in blocks if len(b) >= min_chars), max(blocks, key=len))
    return passage[:max_chars]


# %% 2. three tokenizers, one interface: (name, train, pieces)
def train_all(
    text: str, vocab_size: int, wp_min_frequency: int = 2
) -> dict[str, tuple[object, float]]:
    """Train BPE (train_fast), WordPiece and Unigram on ``text``; name → (tokenizer, CPU s)."""
    out = {}
    for name, make in [
        ("BPE", lambda: _train_bpe(text, vocab_size)),
        ("WordPiece", lambda: WordPieceTokenizer().train(text, vocab_size, wp_min_frequency)),
        ("Unigram", lambda: UnigramTokenizer().train(text, vocab_size)),
    ]:
        t0 = time.process_time()  # CPU seconds: fair on a loaded machine (all single-threaded)
        tok = make()
        out[name] = (tok, time.process_time() - t0)
    return out


def _train_bpe(text: str, vocab_size: int) -> BPETokenizer:
    tok = BPETokenizer()
    tok.train_fast(text, vocab_size)
    return tok


def pieces(name: str, tok, text: str) -> list[str]:
    """The passage split into visible pieces (BPE: each token's bytes decoded on their own)."""
    if name == "BPE":
        return [tok.decode_bytes([i]).decode("utf-8", errors="replace") for i in tok.encode(text)]
    return tok.tokenize(text)


def n_tokens(name: str, tok, text: str) -> int:
    """Number of tokens ``tok`` gives ``text``."""
    return len(tok.encode(text))


# %% 3. the comparison
def compare(
    train_text: str, held_out: str, vocab_sizes: list[int], passage: str, wp_min_frequency: int = 2
) -> tuple[list[dict], dict]:
    """Rows of the comparison table and the visible splits of ``passage``."""
    rows, splits = [], {}
    for v in vocab_sizes:
        for name, (tok, seconds) in train_all(train_text, v, wp_min_frequency).items():
            held = n_tokens(name, tok, held_out)
            got = pieces(name, tok, passage)
            rows.append(
                {
                    "family": name,
                    "vocab_size": v,
                    "vocab_len": len(tok.vocab),
                    "train_cpu_seconds": round(seconds, 2),
                    "tokens": len(got),
                    "chars_per_token": round(len(passage) / len(got), 3),
                    "held_out_tokens": held,
                    "held_out_chars_per_token": round(len(held_out) / held, 3),
                }
            )
            splits[f"{name}@{v}"] = got
    return rows, splits


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (pasted into docs/modules/04b-tokenizer-families.md)."""
    head = "| family | vocab | passage tokens | passage chars/token | held-out tokens | held-out chars/token | train CPU s |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['vocab_size']} | {r['tokens']} | {r['chars_per_token']:.2f} | "
            f"{r['held_out_tokens']:,} | {r['held_out_chars_per_token']:.2f} | {r['train_cpu_seconds']:.1f} |"
        )
    return "\n".join(lines)


def show_split(tokens: list[str]) -> str:
    """Pieces joined by ``|`` with newlines shown as ``\\n`` (spaces kept visible as-is)."""
    return "|".join(t.replace("\n", "\\n") for t in tokens)


def main(argv: list[str] | None = None) -> int:
    """Train the three families, print the table and the splits, write JSON to ``--out``."""
    parser = argparse.ArgumentParser(
        description="04b tokenizer families: BPE vs WordPiece vs Unigram"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="short built-in text, tiny vocab (seconds)"
    )
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--wordpiece-min-frequency", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "04_tokenizer_families.json"
    )
    args = parser.parse_args(argv)
    vocab_sizes = args.vocab_sizes or ([300] if args.smoke else [1000, 4000])

    train_text, held_out = load_texts(args.smoke)
    passage = pick_passage(held_out, max_chars=400)
    rows, splits = compare(train_text, held_out, vocab_sizes, passage, args.wordpiece_min_frequency)

    print(
        f"train {len(train_text):,} chars; held-out {len(held_out):,} chars; passage {len(passage)} chars:\n"
    )
    print(passage, "\n")
    print(markdown_table(rows), "\n")
    for key, toks in splits.items():
        print(f"{key} ({len(toks)} tokens):\n  {show_split(toks)}\n")
    atomic_write_json(
        args.out, {"passage": passage, "rows": rows, "splits": splits, "smoke": args.smoke}
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
