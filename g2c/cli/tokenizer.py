"""`g2c tokenizer`: train a byte-level BPE tokenizer, encode, decode, and view how text splits.

    g2c tokenizer train --data tinyshakespeare --vocab 4096 --out DIR [--pattern gpt2|gpt4]
                        [--special course|eot|none] [--text-file PATH]
    g2c tokenizer encode --tokenizer DIR [--text "..."] [--allow-special]   (stdin when no --text)
    g2c tokenizer decode --tokenizer DIR IDS...                             (stdin when no IDS)
    g2c tokenizer view --data tinyshakespeare --text "..." --vocabs 256,1024,8192

``train`` writes a tokenizer artifact (manifest.json, tokenizer.json, tokens.bin with the ids
of the training text); ``--tokenizer`` accepts anything ``g2c.tokenizer.load_tokenizer`` reads:
that directory, a run directory, a tokenizer JSON file of any g2c family (BPE, char, WordPiece,
Unigram) or GPT-2's vocab.json + merges.txt. ``view`` needs a BPE tokenizer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.table import Table
from rich.text import Text

from g2c.artifacts import g2c_home
from g2c.cli._common import console, make_progress
from g2c.data import load_corpus
from g2c.tokenizer import (
    COURSE_SPECIAL_TOKENS,
    SPLIT_PATTERNS,
    BPETokenizer,
    load_tokenizer,
)
from g2c.tokenizer.persistence import save_artifact

_SPECIALS = {"course": "COURSE", "eot": ("<|endoftext|>",), "none": ()}
_COLOURS = (
    "on dark_blue",
    "on dark_green",
    "on dark_red",
    "on purple4",
    "on dark_cyan",
    "on grey30",
)


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `tokenizer` sub-command and its actions (train, encode, decode, view)."""
    p = sub.add_parser(
        "tokenizer",
        help="byte-level BPE: train, encode, decode, view",
        description="Train a byte-level BPE tokenizer (GPT-2/GPT-4 split patterns) and use it.",
    )
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    actions = p.add_subparsers(dest="tokenizer_command", metavar="ACTION")

    tr = actions.add_parser("train", help="train BPE on a dataset and save an artifact")
    _add_data_args(tr)
    tr.add_argument(
        "--vocab", type=int, default=4096, help="vocabulary size incl. bytes and specials"
    )
    tr.add_argument(
        "--out", default=None, help="output directory (default: $G2C_HOME/tokenizer-<data>-<vocab>)"
    )
    tr.add_argument(
        "--pattern", choices=("gpt2", "gpt4"), default="gpt4", help="pre-tokenization split pattern"
    )
    tr.add_argument(
        "--special", choices=tuple(_SPECIALS), default="course", help="special tokens to reserve"
    )
    tr.add_argument(
        "--reference", action="store_true", help="use the clear (slow) reference trainer"
    )
    tr.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    tr.set_defaults(func=_train)

    en = actions.add_parser("encode", help="print the token ids of --text (or stdin)")
    en.add_argument("--tokenizer", required=True, help="tokenizer artifact directory or JSON file")
    en.add_argument("--text", default=None, help="text to encode (default: read stdin)")
    en.add_argument(
        "--allow-special", action="store_true", help="encode special-token strings as specials"
    )
    en.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    en.set_defaults(func=_encode)

    de = actions.add_parser("decode", help="print the text of token ids")
    de.add_argument("--tokenizer", required=True, help="tokenizer artifact directory or JSON file")
    de.add_argument(
        "ids", nargs="*", help="token ids (default: read whitespace-separated ids from stdin)"
    )
    de.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    de.set_defaults(func=_decode)

    vw = actions.add_parser("view", help="show how a passage splits at several vocabulary sizes")
    _add_data_args(vw)
    vw.add_argument(
        "--text", default=None, help="passage to show (default: the first 300 chars of the data)"
    )
    vw.add_argument("--vocabs", default="256,1024,8192", help="comma-separated vocabulary sizes")
    vw.add_argument(
        "--tokenizer", default=None, help="use this trained tokenizer instead of training one"
    )
    vw.add_argument(
        "--pattern", choices=("gpt2", "gpt4"), default="gpt4", help="split pattern when training"
    )
    vw.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    vw.set_defaults(func=_view)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", default="tinyshakespeare", help="dataset name(s), comma-separated (g2c data list)"
    )
    p.add_argument("--data-path", default=None, help="explicit data directory for --data")
    p.add_argument(
        "--text-file", default=None, help="train on this UTF-8 text file instead of --data"
    )


def _load_training_text(args: argparse.Namespace) -> tuple[str, str]:
    """(text, description) from --text-file or --data."""
    if args.text_file:
        path = Path(args.text_file)
        if not path.is_file():
            raise FileNotFoundError(f"--text-file not found: {path}")
        return path.read_text(encoding="utf-8"), str(path)
    names = [n.strip() for n in args.data.split(",") if n.strip()]
    if not names:
        raise ValueError("--data must name at least one dataset, e.g. --data tinyshakespeare")
    return load_corpus(names, args.data_path), ",".join(names)


def _make_tokenizer(special: str, pattern: str) -> BPETokenizer:
    specials = COURSE_SPECIAL_TOKENS if _SPECIALS[special] == "COURSE" else _SPECIALS[special]
    return BPETokenizer(specials, pattern=SPLIT_PATTERNS[pattern])


def _train_with_progress(tok, text: str, vocab: int, reference: bool = False) -> list[int]:
    total = max(1, vocab - tok.base_vocab_size)
    with make_progress() as progress:
        task = progress.add_task("BPE merges", total=total, info="")

        def cb(done: int, _total: int, info: dict) -> None:
            token = info["token"].decode("utf-8", "replace")
            progress.update(task, completed=done, info=f"{token!r} ×{info['count']}")

        if reference:
            return tok.train(text, vocab, progress_callback=cb, progress_every=1)
        return tok.train_fast(
            text, vocab, progress_callback=cb, progress_every=max(1, total // 100)
        )


def _train(args: argparse.Namespace) -> int:
    text, source = _load_training_text(args)
    tok = _make_tokenizer(args.special, args.pattern)
    if args.vocab < tok.base_vocab_size:
        raise ValueError(
            f"--vocab must be >= {tok.base_vocab_size} (256 bytes + specials), got {args.vocab}"
        )
    t0 = time.perf_counter()
    ids = _train_with_progress(tok, text, args.vocab, args.reference)
    seconds = time.perf_counter() - t0
    out = (
        Path(args.out)
        if args.out
        else g2c_home() / f"tokenizer-{source.replace(',', '+')}-{args.vocab}"
    )
    n_bytes = len(text.encode("utf-8"))
    manifest = {
        "data": source,
        "config": {
            "vocab_size": args.vocab,
            "pattern": args.pattern,
            "special": args.special,
            "trainer": "train" if args.reference else "train_fast",
        },
        "metrics": {
            "train_seconds": seconds,
            "text_bytes": n_bytes,
            "num_tokens": len(ids),
            "bytes_per_token": n_bytes / max(1, len(ids)),
        },
    }
    save_artifact(tok, ids, manifest, out)
    table = Table(title=f"BPE tokenizer → {out}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for k, v in [
        ("data", source),
        ("vocab size", tok.vocab_size),
        ("merges", len(tok.merges)),
        ("pattern", args.pattern),
        ("text", f"{n_bytes / 1e6:.2f} MB"),
        ("tokens", f"{len(ids):,}"),
        ("bytes / token", f"{n_bytes / max(1, len(ids)):.2f}"),
        ("train time", f"{seconds:.2f} s"),
    ]:
        table.add_row(k, str(v))
    console.print(table)
    longest = sorted(tok.vocab.values(), key=len)[-5:]
    console.print("longest tokens:", ", ".join(repr(b.decode("utf-8", "replace")) for b in longest))
    return 0


def _load_bpe(path: str, action: str) -> BPETokenizer:
    """``load_tokenizer(path)``, which must be a BPE tokenizer for ``action`` (ValueError)."""
    tok = load_tokenizer(path)
    if not isinstance(tok, BPETokenizer):
        raise ValueError(
            f"--tokenizer {path} is a {type(tok).__name__}; `g2c tokenizer {action}` needs a "
            "BPE tokenizer"
        )
    return tok


def _encode(args: argparse.Namespace) -> int:
    if args.allow_special:
        tok = _load_bpe(args.tokenizer, "encode --allow-special")
        encode = lambda text: tok.encode(text, allowed_special="all")  # noqa: E731
    else:
        tok = load_tokenizer(args.tokenizer)
        encode = tok.encode
    text = args.text if args.text is not None else sys.stdin.read()
    ids = encode(text)
    print(" ".join(map(str, ids)))
    return 0


def _decode(args: argparse.Namespace) -> int:
    tok = load_tokenizer(args.tokenizer)
    raw = args.ids if args.ids else sys.stdin.read().split()
    try:
        ids = [int(x) for x in raw]
    except ValueError:
        raise ValueError(f"ids must be integers, got {' '.join(raw)[:80]!r}") from None
    sys.stdout.write(tok.decode(ids))
    sys.stdout.write("\n")
    return 0


def render_tokens(tok, ids: list[int], separator: str = "") -> Text:
    """A rich Text with each token on an alternating background (newlines shown as ↵).

    ``separator`` goes between tokens (used when the output has no colours).
    """
    out = Text()
    for k, piece in enumerate(tok.token_bytes(ids)):
        s = piece.decode("utf-8", "replace").replace("\n", "↵\n")
        if k and separator:
            out.append(separator, style="dim")
        out.append(s, style=_COLOURS[k % len(_COLOURS)])
    return out


def _view(args: argparse.Namespace) -> int:
    try:
        vocabs = sorted({int(v) for v in args.vocabs.split(",") if v.strip()})
    except ValueError:
        raise ValueError(
            f"--vocabs must be comma-separated integers, got {args.vocabs!r}"
        ) from None
    if not vocabs:
        raise ValueError("--vocabs must list at least one size, e.g. 256,1024,8192")
    if args.tokenizer:
        tok = _load_bpe(args.tokenizer, "view")
        training = None
    else:
        training, _ = _load_training_text(args)
        tok = _make_tokenizer("none", args.pattern)
        vocabs = [max(v, tok.base_vocab_size) for v in vocabs]
        _train_with_progress(tok, training, max(vocabs))
    passage = args.text if args.text is not None else (training or "")[:300]
    if not passage:
        raise ValueError("give --text (no training data to take a passage from)")
    n_bytes = len(passage.encode("utf-8"))
    for v in vocabs:
        ids = tok.encode_at_vocab(passage, max(v, tok.base_vocab_size))  # above: every merge
        note = "" if v <= tok.vocab_size else f" (only {tok.vocab_size} learned)"
        console.rule(
            f"vocab {v}{note}: {len(ids)} tokens, {n_bytes / max(1, len(ids)):.2f} bytes/token"
        )
        console.print(render_tokens(tok, ids, "" if console.color_system else "|"))
    return 0
