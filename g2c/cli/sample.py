"""`g2c sample RUN` — sample from a trained model, one-shot or in an interactive playground.

    g2c sample runs/speedrun --prompt "ROMEO:" --max-tokens 200 --temperature 0.8 --top-k 40
    g2c sample ShakespeareLM-0.8M --num-samples 3
    g2c sample GutenbergLM -i          # playground: type a prompt, /help for the commands

RUN is a run directory or a model name from `g2c models list` (a family name without size
picks its largest model). Output is streamed token by token. In the playground, slash
commands change the settings: /temperature, /top_k, /top_p, /repetition_penalty, /seed,
/max_tokens, /settings, /help, /quit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from g2c.cli._common import add_runtime_flags, set_threads
from g2c.runs import load_run, resolve_model
from g2c.sampling import StreamingDetokenizer, stream_generate

HELP = """commands (values: a number, or 'off' for top_k / top_p):
  /temperature X        sampling temperature (0 = greedy)         alias /temp
  /top_k N | off        keep the N most likely tokens               alias /k
  /top_p P | off        nucleus: smallest set with probability ≥ P  alias /p
  /repetition_penalty X divide repeated tokens' positive logits     alias /rep
  /seed N               reseed the sampler
  /max_tokens N         tokens to generate per prompt               alias /n
  /settings             show the current settings
  /help                 this help
  /quit                 leave (also /exit, Ctrl-D)
anything else is a prompt; an empty line starts from a newline."""

_ALIASES = {"temp": "temperature", "k": "top_k", "p": "top_p", "rep": "repetition_penalty",
            "n": "max_tokens", "exit": "quit"}  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `sample` sub-command."""
    p = sub.add_parser("sample", help="sample from a trained model (one-shot or -i playground)")
    p.add_argument("run", help="run directory or model name (see `g2c models list`)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument(
        "--max-tokens",
        "--max-new-tokens",
        dest="max_tokens",
        type=int,
        default=200,
        help="new tokens per sample",
    )
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("-i", "--interactive", action="store_true", help="the playground")
    add_runtime_flags(p)
    p.set_defaults(func=run)


class Settings:
    """The playground's sampling settings, changed by slash commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.temperature = args.temperature
        self.top_k = args.top_k
        self.top_p = args.top_p
        self.repetition_penalty = args.repetition_penalty
        self.max_tokens = args.max_tokens
        self.seed = args.seed

    def show(self) -> str:
        """One line with every setting."""
        return (f"temperature={self.temperature} top_k={self.top_k} top_p={self.top_p} "
                f"repetition_penalty={self.repetition_penalty} max_tokens={self.max_tokens} "
                f"seed={self.seed}")  # fmt: skip

    def apply(self, name: str, value: str) -> str:
        """Set ``name`` from text ``value``; bad values → ValueError naming the setting."""
        name = _ALIASES.get(name, name)
        if name in ("top_k", "top_p") and value.lower() in ("off", "none", "0"):
            setattr(self, name, None)
            return f"{name} off"
        try:
            if name in ("top_k", "max_tokens", "seed"):
                v = int(value)
            elif name in ("temperature", "top_p", "repetition_penalty"):
                v = float(value)
            else:
                raise ValueError(f"unknown command /{name}; /help lists the commands")
        except ValueError as exc:
            if "unknown command" in str(exc):
                raise
            raise ValueError(f"/{name} needs a number, got {value!r}") from None
        checks = {
            "temperature": v >= 0, "top_k": v > 0, "top_p": 0 < v <= 1,
            "repetition_penalty": v > 0, "max_tokens": v > 0, "seed": True,
        }  # fmt: skip
        if not checks[name]:
            raise ValueError(f"/{name} {value} is out of range")
        setattr(self, name, v)
        return f"{name} = {v}"


def stream_sample(model, tok, prompt: str, s: Settings, write: Callable[[str], None]) -> str:
    """Stream one sample after ``prompt`` through ``write``; returns the new text.

    Each token's text goes out as soon as its characters are complete
    (:class:`~g2c.sampling.StreamingDetokenizer`: O(1) work per token, a character split
    across byte-level tokens is held back until its last byte arrives).
    """
    ids = tok.encode(prompt) or tok.encode("\n")
    ids = ids[-model.max_seq_len :]
    gen = torch.Generator().manual_seed(s.seed)
    detok = StreamingDetokenizer(tok)
    parts: list[str] = []
    for t in stream_generate(model, ids, s.max_tokens, temperature=s.temperature, top_k=s.top_k,
                             top_p=s.top_p, repetition_penalty=s.repetition_penalty,
                             generator=gen):  # fmt: skip
        parts.append(detok.push(t))
        write(parts[-1])
    parts.append(detok.flush())
    write(parts[-1])
    return "".join(parts)


def _writer(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    """Load the model, then one-shot samples or the playground."""
    set_threads(args.threads)
    path = resolve_model(args.run)
    device = "cpu" if args.device == "auto" else args.device
    model, tok, manifest = load_run(path, device=device)
    s = Settings(args)
    s.apply("temperature", str(args.temperature))  # validates the flags the same way
    for name in ("top_p", "repetition_penalty", "max_tokens"):
        if getattr(args, name) is not None:
            s.apply(name, str(getattr(args, name)))
    if args.top_k is not None:
        s.apply("top_k", str(args.top_k))
    if not args.interactive:
        for i in range(args.num_samples):
            if i:
                _writer("\n" + "-" * 40 + "\n")
            _writer(args.prompt)
            stream_sample(model, tok, args.prompt, s, _writer)
            s.seed += 1
        _writer("\n")
        return 0
    return playground(model, tok, manifest, s, sys.stdin)


def playground(model, tok, manifest: dict, s: Settings, stream) -> int:
    """The interactive loop: read lines from ``stream``; slash commands or prompts."""
    name = manifest.get("name", "model")
    _writer(f"g2c playground — {name}. Type a prompt, /help for commands, /quit to leave.\n")
    while True:
        _writer("> ")
        line = stream.readline()
        if not line:  # EOF
            _writer("\n")
            return 0
        line = line.rstrip("\n")
        if line.startswith("/"):
            cmd, _, value = line[1:].strip().partition(" ")
            cmd = _ALIASES.get(cmd, cmd)
            if cmd == "quit":
                return 0
            if cmd == "help":
                _writer(HELP + "\n")
            elif cmd == "settings":
                _writer(s.show() + "\n")
            else:
                try:
                    _writer(s.apply(cmd, value.strip()) + "\n")
                except ValueError as exc:
                    _writer(f"error: {exc}\n")
            continue
        prompt = line.replace("\\n", "\n") or "\n"
        _writer(prompt)
        stream_sample(model, tok, prompt, s, _writer)
        _writer("\n")
