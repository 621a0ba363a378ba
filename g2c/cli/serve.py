"""`g2c serve MODEL` — one model behind the OpenAI and the Ollama HTTP APIs.

    g2c serve smollm2                                  # http://127.0.0.1:8000
    g2c serve runs/speedrun --port 11434               # where Ollama clients look
    g2c serve model.gguf --host 0.0.0.0 --api-key KEY  # other machines: a key is required
    g2c serve smollm2 --rag docs.sqlite --tools-root ~/notes  # the assistant's corpus and files

MODEL is a run directory, a run name from `g2c models list`, a saved model directory, a GGUF
file or `smollm2`. Clients: any OpenAI client with base_url http://HOST:PORT/v1, any Ollama
client with host http://HOST:PORT, a browser at http://HOST:PORT/ (the web chat). Besides
MODEL the server answers as the assistant, model "g2c-assistant" (tools, RAG over --rag,
conversations stored in --store) unless --no-assistant. Ctrl-C stops accepting requests, lets
the open ones finish, then exits. See docs/guides/serve.md and docs/guides/web-chat.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from g2c.assistant import ConversationStore, build_assistant, open_rag_index
from g2c.cli._common import add_runtime_flags, err_console, set_threads
from g2c.inference import quantize_model
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
    p.add_argument("--no-assistant", action="store_true",
                   help="do not serve the assistant (model g2c-assistant): MODEL only")  # fmt: skip
    p.add_argument("--tools-root", default=None, metavar="DIR",
                   help="the folder the assistant's file tools and run_python see (default: "
                        "the current folder)")  # fmt: skip
    p.add_argument("--rag", default=None, metavar="INDEX",
                   help="a `g2c rag index` file the assistant answers from, with citations")  # fmt: skip
    p.add_argument("--store", default=None, metavar="PATH",
                   help="the conversations' SQLite file (default: $G2C_CONVERSATIONS, else "
                        "$G2C_HOME/conversations.sqlite)")  # fmt: skip
    p.add_argument("--no-web", action="store_true", help="do not serve the chat page at /")
    p.add_argument("--compile", action="store_true",
                   help="compile the decode step with torch.compile (inductor): faster tokens "
                        "after ~30 s of compiling on the first requests")  # fmt: skip
    p.add_argument("--quantize", choices=("int8", "int4"), default=None,
                   help="serve a weight-only quantized copy: int8 per channel or int4 in groups "
                        "of 32 (g2c.inference.quantize_model; SmolLM2 decodes ~1.5x / ~2x "
                        "faster on a CPU)")  # fmt: skip
    p.add_argument("--quantize-head", action="store_true",
                   help="with --quantize: the output head too (int4: ~2.8x, ~4x compiled)")  # fmt: skip
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])  # fmt: skip
    add_runtime_flags(p)
    p.set_defaults(func=run)


def load_served_model(
    spec: str, device: str, quantize: str | None = None, quantize_head: bool = False
) -> Any:
    """What ``g2c serve`` serves: ``load_any(spec)``'s model, quantized in place when asked
    (``quantize`` "int8" / "int4", group 32; ``quantize_head`` the output head too)."""
    loaded = load_any(spec, device=device)[1]
    if quantize:
        quantize_model(loaded.model, quantize, inplace=True, quantize_head=quantize_head)
    return loaded


def run(args: argparse.Namespace) -> int:
    """Check the flags, load the model, serve until Ctrl-C."""
    check_bind(args.host, args.api_key)  # before loading: a model takes seconds to load
    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    for flag in ("max_batch_size", "max_queue"):
        if getattr(args, flag) < (1 if flag == "max_batch_size" else 0):
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got "
                             f"{getattr(args, flag)}")  # fmt: skip
    # the assistant's inputs, checked before the model loads (a mistake costs no waiting)
    tools_root = Path(args.tools_root).expanduser() if args.tools_root else Path.cwd()
    if not tools_root.is_dir():
        raise FileNotFoundError(f"--tools-root: no folder {args.tools_root}")
    rag = Path(args.rag).expanduser() if args.rag and not args.no_assistant else None
    if rag is not None:
        open_rag_index(rag)  # missing or damaged → AssistantError now, not after loading
    store = ConversationStore(Path(args.store).expanduser() if args.store else None)
    if args.quantize_head and not args.quantize:
        raise ValueError("--quantize-head needs --quantize int8 or --quantize int4")
    set_threads(args.threads)
    device = str(resolve_device(args.device))
    loaded = load_served_model(args.model, device, args.quantize, args.quantize_head)
    model_id = args.model_id or default_model_id(args.model)

    def make_assistant(backend: Any) -> Any:  # around the server's own engine (ServerBackend)
        return build_assistant(backend, rag_index=rag, tools_root=tools_root)

    url = f"http://{args.host}:{args.port}"
    err_console.print(
        f"g2c serve — {model_id} ({loaded.kind}, context {loaded.model.max_seq_len} tokens) on "
        f"{url}  (OpenAI: /v1, Ollama: /api"
        + ("" if args.no_web else f", web chat: {url}/")
        + ("" if args.no_assistant else ", assistant: model g2c-assistant")
        + ")"
        + ("  [API key required]" if args.api_key else "")
    )
    serve(loaded, host=args.host, port=args.port, api_key=args.api_key, model_id=model_id,
          max_batch_size=args.max_batch_size, max_queue=args.max_queue, max_len=args.max_len,
          log_level=args.log_level, store=store,
          assistant=None if args.no_assistant else make_assistant,
          web_ui=not args.no_web, compile=args.compile)  # fmt: skip
    return 0
