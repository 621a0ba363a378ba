"""The inference engine: prefill / decode split, a pre-allocated KV cache, batching.

Generation has two phases with different costs (Pope et al. 2022; vLLM, Kwon et al. 2023):

- **prefill** — the whole prompt in one forward: T tokens per weight read, compute-bound;
- **decode** — one token per sequence per forward: every weight is read for a single
  position, memory-bound. Batching B sequences shares each weight read among B tokens.

:class:`Engine` keeps one :class:`~g2c.inference.cache.StaticKVCache` of ``max_batch_size``
rows (slots). ``submit(request)`` queues a :class:`Request` and returns a
:class:`RequestHandle`; ``step()`` admits queued requests into free slots (prefilling each
prompt into its row), then runs ONE decode forward for every running request together —
**continuous batching**: requests join and leave between decode steps, a finished request
(eos, stop string, ``max_new_tokens``, constraint complete, cancelled) frees its slot at once.
A handle iterates its text as it is produced (``StreamingDetokenizer``), driving ``step()``.

``generate(prompts)`` is the static-batch path: the prompts LEFT-padded into one (B, T) batch,
one prefill with an attention mask, then batched decode; per-row positions make every row's
positions start at 0 at its first real token, so each row gets exactly what it would get
alone (greedy: the same tokens as ``g2c.sampling.generate``, tested).

Sampling per request: temperature (0 = greedy), top-k, top-p, repetition penalty, stop
strings, eos ids, seed, and constraints (JSON value, JSON-Schema object, tool call — see
:mod:`g2c.inference.constrained`); all through ``g2c.sampling.sample_next_token``. When every
running request is greedy and unconstrained, one argmax over the batch replaces the per-row
sampling.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from g2c.inference.cache import StaticKVCache
from g2c.inference.compiled import BACKENDS as COMPILE_BACKENDS
from g2c.inference.compiled import CompiledDecoder
from g2c.inference.constrained import SegmentConstraint, json_segments, schema_segments
from g2c.sampling import StreamingDetokenizer, sample_next_token, token_vocab_bytes
from g2c.sampling.generate import _check_sampling_args, inference_mode
from g2c.sft import template_for

FINISH_REASONS = ("stop", "length", "cancelled")
#: default cache columns per slot (the model's max_seq_len when smaller): SmolLM2's 8192
#: would pre-allocate 190 MB of keys/values per slot in float32
DEFAULT_MAX_LEN = 2048


@dataclasses.dataclass
class Request:
    """One generation request.

    ``prompt``: text (encoded with the engine's tokenizer) or token ids. ``max_new_tokens``
    (≥ 0), ``temperature`` (0 = greedy, default 1.0 as ``g2c.sampling.generate``), ``top_k``,
    ``top_p``, ``repetition_penalty``, ``stop`` (strings: generation ends when the text
    contains one; the returned text stops before it, OpenAI-style, the tokens are kept),
    ``eos_ids`` (None = the engine's: the chat template's end-of-turn and the tokenizer's eos),
    ``seed`` (a private ``torch.Generator`` for this request), ``json`` ("any" / "object" /
    "array": output constrained to one JSON value), ``json_schema`` (a JSON Schema; the
    enforced keywords are listed in :func:`g2c.inference.constrained.schema_segments`),
    ``constraint`` (any object with ``allowed
    (remaining) -> bool (V,) | None``, ``advance(token_id)``, ``done``). Bad values →
    ValueError naming the field.
    """

    prompt: str | Sequence[int]
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    stop: Sequence[str] = ()
    eos_ids: Sequence[int] | None = None
    seed: int | None = None
    json: str | None = None
    json_schema: dict | None = None
    constraint: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be an int, got {self.max_new_tokens!r}")
        _check_sampling_args(
            self.temperature, self.top_k, self.top_p, self.repetition_penalty,
            self.max_new_tokens,
        )  # fmt: skip
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop must be a list of non-empty strings, got {self.stop!r}")
        if self.json is not None and self.json not in ("any", "object", "array"):
            raise ValueError(f"json must be 'any', 'object' or 'array', got {self.json!r}")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int or None, got {self.seed!r}")


class RequestHandle:
    """A submitted request: its progress, its stream of text, its result.

    Attributes: ``id``, ``request``, ``prompt_ids``, ``token_ids`` (new ids, eos included),
    ``text`` (the text so far, stop string excluded), ``finished``, ``finish_reason``
    ("stop", "length", "cancelled"), timings ``submitted_at`` / ``first_token_at`` /
    ``finished_at`` (``time.perf_counter`` seconds). Iterating yields text pieces as they are
    produced (driving the engine); ``result()`` runs to the end and returns ``text``;
    ``cancel()`` frees the slot at the next step.
    """

    def __init__(self, engine: Engine, request: Request, prompt_ids: list[int], rid: int):
        self.engine = engine
        self.request = request
        self.id = rid
        self.prompt_ids = prompt_ids
        self.token_ids: list[int] = []
        self.text = ""
        self.finished = False
        self.finish_reason: str | None = None
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.slot: int | None = None
        self._full = ""  # all decoded text (stop strings are searched here)
        self._chunks: deque[str] = deque()
        self._cancel = False
        self._detok = engine._detokenizer()
        self.generator = (
            torch.Generator(device="cpu").manual_seed(request.seed)
            if request.seed is not None
            else None
        )
        self.constraint = engine._constraint_for(request)

    # -- consumer side ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        while True:
            while self._chunks:
                yield self._chunks.popleft()
            if self.finished:
                return
            self.engine.step()

    def result(self) -> str:
        """Run until this request finishes; its text."""
        for _ in self:
            pass
        return self.text

    def cancel(self) -> None:
        """Stop generating; the slot is freed at the next ``step()`` (reason "cancelled")."""
        self._cancel = True

    @property
    def greedy(self) -> bool:
        """True when the next token is a plain argmax: temperature 0, no repetition penalty, no
        constraint."""
        r = self.request
        return r.temperature == 0 and r.repetition_penalty == 1.0 and self.constraint is None

    # -- engine side --------------------------------------------------------------------------
    def _emit(self, piece: str) -> None:
        if piece:
            self.text += piece
            self._chunks.append(piece)

    def _push(self, tok: int) -> None:
        """Record one new token: text, stop strings, limits."""
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        self.token_ids.append(tok)
        if self.constraint is not None:
            self.constraint.advance(tok)
        if tok in self.engine._eos_for(self.request):
            return self._finish("stop")
        self._full += self._detok_push(tok)
        stops = self.request.stop
        if stops:
            emitted = len(self.text)
            window = self._full[max(0, emitted - max(map(len, stops))) :]
            hits = [window.find(s) for s in stops if s in window]
            if hits:
                cut = max(0, emitted - max(map(len, stops))) + min(hits)
                self._emit(self._full[emitted:cut])
                return self._finish("stop", flush=False)
            hold = max((k for s in stops for k in range(1, len(s)) if self._full.endswith(s[:k])),
                       default=0)  # fmt: skip
            self._emit(self._full[emitted : len(self._full) - hold])
        else:
            self._emit(self._full[len(self.text) :])
        if self.constraint is not None and self.constraint.done:
            return self._finish("stop")
        if len(self.token_ids) >= self.request.max_new_tokens:
            return self._finish("length")

    def _detok_push(self, tok: int) -> str:
        if self._detok is not None:
            return self._detok.push(tok)
        return ""  # no tokenizer: ids only

    def _finish(self, reason: str, flush: bool = True) -> None:
        if flush and self._detok is not None:
            self._full += self._detok.flush()
            self._emit(self._full[len(self.text) :])
        self.finished = True
        self.finish_reason = reason
        self.finished_at = time.perf_counter()

    def __repr__(self) -> str:
        return (
            f"RequestHandle(id={self.id}, prompt_tokens={len(self.prompt_ids)}, "
            f"new_tokens={len(self.token_ids)}, finished={self.finished}, "
            f"reason={self.finish_reason!r})"
        )


class Engine:
    """Batched, continuously batched generation for a g2c ``TransformerLM``.

    ``Engine(model, tokenizer=None, *, max_batch_size=8, max_len=None, chat_template=None,
    eos_ids=None, compile=False)``; ``Engine(load_model(...))`` (or ``Engine.from_loaded``)
    takes the model, its tokenizer and its own chat template. ``max_len``: cache columns per
    slot (default min(max_seq_len, :data:`DEFAULT_MAX_LEN`), at most the model's
    ``max_seq_len``); a prompt that does not fit → ValueError naming both lengths.
    ``compile``: True (inductor) or a ``torch.compile`` backend name runs every decode step
    through :class:`~g2c.inference.compiled.CompiledDecoder` (one compiled graph; the first
    step compiles); prefill stays eager. Same tokens as the eager path (tested).

    Methods: ``submit(request) -> RequestHandle``, ``step()``, ``run()`` (until idle),
    ``generate(prompts, **sampling) -> list[list[int]]`` (static left-padded batch),
    ``complete(prompt, **sampling) -> RequestHandle`` (finished), ``chat(messages,
    **sampling) -> RequestHandle`` (finished), ``stream(prompt, **sampling)`` (text pieces),
    ``chat_prompt(messages) -> list[int]`` (the chat template). Not thread-safe: drive one
    engine from one thread (a server wraps ``submit``/``step`` in one loop or a lock).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        max_batch_size: int = 8,
        max_len: int | None = None,
        chat_template: Any = None,
        eos_ids: Sequence[int] | None = None,
        compile: bool | str = False,
    ) -> None:
        if hasattr(model, "model") and hasattr(model, "tokenizer") and tokenizer is None:
            loaded = model  # a LoadedModel: its model, tokenizer and chat template
            tokenizer = loaded.tokenizer
            if chat_template is None and tokenizer is not None:
                try:
                    chat_template = template_for(loaded)
                except ValueError:
                    chat_template = None
            model = loaded.model
        if not hasattr(model, "forward_prefill") or not hasattr(model, "blocks"):
            raise TypeError(
                f"model must be a g2c TransformerLM (forward_prefill, blocks), got "
                f"{type(model).__name__}"
            )
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive int, got {max_batch_size!r}")
        limit = int(model.max_seq_len)
        max_len = min(limit, DEFAULT_MAX_LEN) if max_len is None else int(max_len)
        if not 1 < max_len <= limit:
            raise ValueError(f"max_len must be in [2, {limit}] (the model's max_seq_len)")
        if compile not in (False, True) and compile not in COMPILE_BACKENDS:
            raise ValueError(f"compile must be False, True or one of {COMPILE_BACKENDS}, got "
                             f"{compile!r}")  # fmt: skip
        self.model = model.eval()
        #: the compiled decode step (``compile``), or None: the eager ``forward_prefill``
        self.decoder: CompiledDecoder | None = None
        if compile:
            backend = "inductor" if compile is True else compile
            self.decoder = CompiledDecoder(model, backend=backend)
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.max_batch_size = max_batch_size
        self.max_len = max_len
        self.eos_ids = frozenset(self._default_eos() if eos_ids is None else eos_ids)
        self.cache: StaticKVCache | None = None
        self.slots: list[RequestHandle | None] = [None] * max_batch_size
        self.waiting: deque[RequestHandle] = deque()
        self._ids = itertools.count()
        self._vocab_bytes: list[bytes | None] | None = None
        self.steps = 0  # decode forwards run

    @classmethod
    def from_loaded(cls, loaded: Any, **kwargs: Any) -> Engine:
        """An engine for what ``g2c.transformer.load_model`` returned: its model, tokenizer and
        chat template (``g2c.sft.template_for``; none when the tokenizer has no specials).
        ``Engine(loaded)`` does the same."""
        return cls(loaded, None, **kwargs)

    # -- setup helpers -----------------------------------------------------------------------
    def _default_eos(self) -> list[int]:
        tok = self.tokenizer
        specials = getattr(tok, "special_to_id", None) or {}
        ids = []
        if self.chat_template is not None:
            ids += [specials[t] for t in self.chat_template.stop_tokens if t in specials]
        for name in ("<|endoftext|>", "</s>", "<|im_end|>", "<|eos|>"):
            if name in specials and self.chat_template is None:
                ids.append(specials[name])
        return ids

    def _eos_for(self, request: Request) -> frozenset[int]:
        return self.eos_ids if request.eos_ids is None else frozenset(request.eos_ids)

    def _detokenizer(self) -> StreamingDetokenizer | None:
        if self.tokenizer is None:
            return None
        try:
            return StreamingDetokenizer(self.tokenizer)
        except TypeError:
            return None

    def vocab_bytes(self) -> list[bytes | None]:
        """Token id → bytes for constrained decoding (special tokens None), computed once."""
        if self._vocab_bytes is None:
            if self.tokenizer is None:
                raise ValueError("constrained decoding needs the engine's tokenizer")
            self._vocab_bytes = token_vocab_bytes(self.tokenizer, self.model.vocab_size)
        return self._vocab_bytes

    def _constraint_for(self, request: Request) -> Any:
        if request.constraint is not None:
            return request.constraint
        if request.json_schema is not None:
            return SegmentConstraint(schema_segments(request.json_schema), self.vocab_bytes())
        if request.json is not None:
            return SegmentConstraint(json_segments(request.json), self.vocab_bytes())
        return None

    def encode(self, text: str) -> list[int]:
        """Text → ids with the engine's tokenizer (no tokenizer → ValueError)."""
        if self.tokenizer is None:
            raise ValueError("this engine has no tokenizer; pass token ids as the prompt")
        return list(self.tokenizer.encode(text))

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        """Ids of ``messages`` rendered with the model's chat template plus the generation
        prompt; an engine without a template → ValueError."""
        if self.chat_template is None or self.tokenizer is None:
            raise ValueError("this engine has no chat template (use Engine.from_loaded)")
        return list(self.chat_template.encode_prompt(messages, self.tokenizer))

    def _prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            ids = self.encode(prompt)
        elif isinstance(prompt, torch.Tensor):
            ids = [int(t) for t in prompt.reshape(-1).tolist()]
        else:
            ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError("prompt is empty; give at least one token")
        V = self.model.vocab_size
        if not 0 <= min(ids) <= max(ids) < V:
            raise ValueError(f"prompt ids must lie in [0, {V}), got [{min(ids)}, {max(ids)}]")
        if len(ids) >= self.max_len:
            raise ValueError(
                f"the prompt has {len(ids)} tokens but the context holds {self.max_len} "
                f"(max_len); shorten the prompt by at least {len(ids) - self.max_len + 1} tokens"
            )
        return ids

    # -- continuous batching -----------------------------------------------------------------
    def submit(self, request: Request | str | Sequence[int], **sampling: Any) -> RequestHandle:
        """Queue a request (a :class:`Request`, or a prompt plus Request fields as keywords);
        returns its handle. Checked here: bad fields / prompt → ValueError, nothing queued."""
        if not isinstance(request, Request):
            request = Request(request, **sampling)
        elif sampling:
            request = dataclasses.replace(request, **sampling)
        ids = self._prompt_ids(request.prompt)
        handle = RequestHandle(self, request, ids, next(self._ids))
        need = getattr(handle.constraint, "min_tokens", None)
        if need is not None and need() > request.max_new_tokens:
            raise ValueError(
                f"max_new_tokens={request.max_new_tokens} is too small for the constrained "
                f"output: it needs at least {need()} tokens"
            )
        if request.max_new_tokens == 0:
            handle._finish("length")
        else:
            self.waiting.append(handle)
        return handle

    @property
    def running(self) -> list[RequestHandle]:
        """Requests holding a slot."""
        return [h for h in self.slots if h is not None]

    def has_work(self) -> bool:
        """True while a request is queued or running."""
        return bool(self.waiting) or any(h is not None for h in self.slots)

    def _ensure_cache(self) -> StaticKVCache:
        if self.cache is None:
            self.cache = StaticKVCache(self.model, self.max_batch_size, self.max_len)
        return self.cache

    def _free(self, handle: RequestHandle) -> None:
        if handle.slot is not None:
            self.slots[handle.slot] = None
            self._ensure_cache().reset_rows([handle.slot])
            handle.slot = None

    def _sample(self, handle: RequestHandle, logits: torch.Tensor) -> int:
        r = handle.request
        allowed = None
        if handle.constraint is not None:
            allowed = handle.constraint.allowed(r.max_new_tokens - len(handle.token_ids))
        return sample_next_token(
            logits, temperature=r.temperature, top_k=r.top_k, top_p=r.top_p,
            repetition_penalty=r.repetition_penalty,
            prev_ids=handle.prompt_ids + handle.token_ids if r.repetition_penalty != 1.0 else None,
            allowed=allowed, generator=handle.generator,
        )  # fmt: skip

    def _admit(self) -> None:
        cache = self._ensure_cache()
        while self.waiting and None in self.slots:
            handle = self.waiting.popleft()
            if handle._cancel:
                handle._finish("cancelled")
                continue
            b = self.slots.index(None)
            self.slots[b], handle.slot = handle, b
            ids = torch.tensor([handle.prompt_ids], dtype=torch.long, device=cache.device)
            logits, _ = self.model.forward_prefill(ids, cache.slot(b))  # (1, T, V)
            handle._push(self._sample(handle, logits[0, -1]))
            if handle.finished:
                self._free(handle)

    def step(self) -> list[RequestHandle]:
        """One scheduler step: free cancelled slots, admit queued requests (prefill), then
        one decode forward for every running request. Returns the requests that progressed."""
        with inference_mode(self.model):
            for h in self.running:
                if h._cancel:
                    h._finish("cancelled")
                    self._free(h)
            before = {h.id for h in self.running}
            waiting = list(self.waiting)
            self._admit()
            for h in self.running:  # out of room: the next token would not fit
                if self.cache.ptr[h.slot] + 1 > self.max_len:
                    h._finish("length")
                    self._free(h)
            rows = [h for h in self.slots if h is not None and h.id in before]
            if rows:
                self._decode(rows)
        admitted = [h for h in waiting if h not in self.waiting]
        return rows + admitted

    def _decode(self, rows: list[RequestHandle]) -> None:
        # only the range of slots in use takes part (a view of those cache rows): one request
        # in a 16-slot engine costs one row's forward, not sixteen (slots fill lowest first)
        lo = min(h.slot for h in rows)
        hi = max(h.slot for h in rows) + 1
        cache = self.cache if (lo, hi) == (0, self.max_batch_size) else self.cache.rows(lo, hi)
        last = [0] * (hi - lo)
        active = [False] * (hi - lo)
        for h in rows:
            last[h.slot - lo] = h.token_ids[-1]
            active[h.slot - lo] = True
        idx = torch.tensor(last, dtype=torch.long, device=cache.device)[:, None]  # (B', 1)
        cache.advance_rows = None if all(active) else active  # idle slots stay where they are
        try:
            if self.decoder is not None:
                logits = self.decoder(idx, cache)  # (B', 1, V), one compiled graph
            else:
                logits, _ = self.model.forward_prefill(idx, cache)  # (B', 1, V)
        finally:
            cache.advance_rows = None
        self.steps += 1
        for h in self._pick(rows, [h.slot - lo for h in rows], logits[:, -1]):
            if h.finished:
                self._free(h)

    def _pick(self, handles: list[RequestHandle], rows: list[int], logits: torch.Tensor):
        """Sample each handle's next token from its row of ``logits`` (B, V) and record it;
        one argmax over the batch when every handle is greedy and unconstrained."""
        if all(h.greedy for h in handles):
            toks = logits.argmax(-1).tolist()
            picks = [toks[b] for b in rows]
        else:
            picks = [self._sample(h, logits[b]) for h, b in zip(handles, rows)]
        for h, tok in zip(handles, picks):
            h._push(tok)
        return handles

    def embed(self, rows: Sequence[Sequence[int]]) -> list[list[float]]:
        """One embedding per row of token ids: the mean of the model's final hidden states
        (``ln_final`` applied; ``forward_hidden``), L2-normalised — a float vector of the
        model's ``embedding_dim`` per row (what ``/v1/embeddings`` and ``/api/embed`` serve).
        Runs under no_grad on the model's device; an empty row → ValueError."""
        model = self.model
        device = model.token_embed.weight.device
        out = []
        with torch.no_grad():
            for n, ids in enumerate(rows):
                if len(ids) == 0:
                    raise ValueError(f"rows[{n}] is empty: embed needs at least one token")
                idx = torch.tensor([list(ids)], dtype=torch.long, device=device)
                h = model.forward_hidden(idx)[0].float()  # (T, D)
                v = torch.nn.functional.normalize(h.mean(dim=0), dim=0)  # (D,)
                out.append(v.cpu().tolist())
        return out

    def run(self) -> None:
        """Step until every queued and running request has finished."""
        while self.has_work():
            self.step()

    # -- convenience -------------------------------------------------------------------------
    def complete(self, prompt: str | Sequence[int], **sampling: Any) -> RequestHandle:
        """Submit one request and run it to the end (other queued requests progress too)."""
        handle = self.submit(prompt, **sampling)
        handle.result()
        return handle

    def chat(self, messages: list[dict], **sampling: Any) -> RequestHandle:
        """Render ``messages`` with the chat template, generate the reply to the end (stops
        at the template's end-of-turn token); the finished handle (``.text``)."""
        return self.complete(self.chat_prompt(messages), **sampling)

    def stream(self, prompt: str | Sequence[int], **sampling: Any) -> Iterator[str]:
        """Submit one request; iterate its text pieces."""
        return iter(self.submit(prompt, **sampling))

    @torch.no_grad()
    def generate(self, prompts: Sequence[str | Sequence[int]], **sampling: Any) -> list[list[int]]:
        """Static batching: all ``prompts`` LEFT-padded into one batch, one prefill with an
        attention mask, then batched decode until every row is finished. Returns each row's
        new token ids. ``sampling``: :class:`Request` fields. A batch larger than
        ``max_batch_size`` is fine (its own cache is allocated for it). The rows share one
        time axis: padding + prompt + new tokens of the longest prompt fill ``max_len``
        columns, after which every unfinished row ends with "length"."""
        handles = [
            RequestHandle(self, Request(p, **sampling), self._prompt_ids(p), next(self._ids))
            for p in prompts
        ]
        if not handles:
            return []
        B = len(handles)
        T = max(len(h.prompt_ids) for h in handles)
        new = max(h.request.max_new_tokens for h in handles)
        cache = StaticKVCache(self.model, B, min(self.max_len, T + max(new, 1)))
        ids = torch.zeros(B, T, dtype=torch.long, device=cache.device)
        mask = torch.zeros(B, T, dtype=torch.long, device=cache.device)
        for b, h in enumerate(handles):  # left padding: real tokens at the end of the row
            n = len(h.prompt_ids)
            ids[b, T - n :] = torch.tensor(h.prompt_ids)
            mask[b, T - n :] = 1
            if h.request.max_new_tokens == 0:
                h._finish("length")
        with inference_mode(self.model):
            logits, _ = self.model.forward_prefill(ids, cache, attention_mask=mask)
            rows = [b for b, h in enumerate(handles) if not h.finished]
            self._pick([handles[b] for b in rows], rows, logits[:, -1])
            while True:
                alive = [h for h in handles if not h.finished]
                if not alive:
                    break
                if cache.length + 1 > cache.max_len:
                    for h in alive:
                        h._finish("length")
                    break
                last = torch.tensor(
                    [h.token_ids[-1] if h.token_ids else 0 for h in handles], device=cache.device
                )[:, None]  # (B, 1)
                step_mask = torch.tensor([[0 if h.finished else 1] for h in handles])
                logits, _ = self.model.forward_prefill(last, cache, attention_mask=step_mask)
                rows = [b for b, h in enumerate(handles) if not h.finished]
                self._pick([handles[b] for b in rows], rows, logits[:, -1])
        return [h.token_ids for h in handles]

    def __repr__(self) -> str:
        return (
            f"Engine(max_batch_size={self.max_batch_size}, max_len={self.max_len}, "
            f"running={len(self.running)}, waiting={len(self.waiting)})"
        )
