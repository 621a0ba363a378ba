"""`g2c serve MODEL` — one model behind the OpenAI and the Ollama HTTP APIs.

    g2c serve smollm2                                  # http://127.0.0.1:8000
    g2c serve runs/speedrun --port 11434               # where Ollama clients look
    g2c serve model.gguf --host 0.0.0.0 --api-key KEY  # other machines: a key is required

MODEL is a run directory, a run name from `g2c models list`, a saved model directory, a GGUF
file or `smollm2`. Clients: any OpenAI client with base_url http://HOST:PORT/v1, any Ollama
client with host http://HOST:PORT. Ctrl-C stops accepting requests, lets the open ones finish,
then exits. See docs/guides/serve.md.
"""

from __future__ import annotations

import argparse
import os

from g2c.cli._common import add_runtime_flags, err_console, set_threads
from g2c.nn import resolve_device
from g2c.runs.sft import load_any
from g2c.serve import DEFAULT_HOST, DEFAULT_PORT, check_bind, default_model_id, serve


def register(sub: argparse._SubParsersAction) -> None:
    """Register the `serve` sub-command."""
    p = sub.add_parser("serve", help="serve a model over the OpenAI and Ollama HTTP APIs")
    p.add_argument("model", help="run directory or name, model dir, GGUF file, or smollm2")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind (default: {DEFAULT_HOST}, this machine only; any "
                        "other needs --api-key)")  # fmt: skip
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port (default: {DEFAULT_PORT})")  # fmt: skip
    p.add_argument("--api-key", default=os.environ.get("G2C_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $G2C_API_KEY, else "
                        "none)")  # fmt: skip
    p.add_argument("--model-id", default=None,
                   help="name clients use (default: the model's file or directory name)")  # fmt: skip
    p.add_argument("--max-batch-size", type=int, default=8,
                   help="requests decoded together (default: 8)")  # fmt: skip
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests that may wait for a slot; more get 503 (default: 64)")  # fmt: skip
    p.add_argument("--max-len", type=int, default=None,
                   help="context per request in tokens (default: min(model's, 2048))")  # fmt: skip
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])  # fmt: skip
    add_runtime_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the flags, load the model, serve until Ctrl-C."""
    check_bind(args.host, args.api_key)  # before loading: a model takes seconds to load
    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    for flag in ("max_batch_size", "max_queue"):
        if getattr(args, flag) < (1 if flag == "max_batch_size" else 0):
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got "
                             f"{getattr(args, flag)}")  # fmt: skip
    set_threads(args.threads)
    device = str(resolve_device(args.device))
    loaded = load_any(args.model, device=device)[1]
    model_id = args.model_id or default_model_id(args.model)
    err_console.print(
        f"g2c serve — {model_id} ({loaded.kind}, context {loaded.model.max_seq_len} tokens) on "
        f"http://{args.host}:{args.port}  (OpenAI: /v1, Ollama: /api)"
        + ("  [API key required]" if args.api_key else "")
    )
    serve(loaded, host=args.host, port=args.port, api_key=args.api_key, model_id=model_id,
          max_batch_size=args.max_batch_size, max_queue=args.max_queue, max_len=args.max_len,
          log_level=args.log_level)  # fmt: skip
    return 0
