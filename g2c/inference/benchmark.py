"""``benchmark(backend, prompts, **sampling)``: latency, time to first token, tokens/s.

Every prompt is streamed (``backend.stream_complete``) one after another; per prompt:

- time to first token (TTFT) — mostly the prefill: the prompt's forward and the first sample;
- latency — the whole request;
- prefill tokens/s = prompt tokens / TTFT; decode tokens/s = (completion tokens − 1) /
  (latency − TTFT) — the tokens after the first, over the time after it.

Aggregates are sums over prompts (so long requests weigh more), latency quantiles are linear
interpolations (NumPy's default). Use ``temperature=0`` and a fixed ``max_new_tokens`` to
compare engines on the same work. A backend that reports its own TTFT
(``result.metadata["ttft_ms"]``) is trusted over the wall-clock first piece.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from g2c.inference.backends import Backend, BackendInfo, InferenceResult


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) by linear interpolation between order statistics; empty →
    ValueError, q outside [0, 100] → ValueError."""
    if not values:
        raise ValueError("values is empty")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclasses.dataclass
class BenchmarkResult:
    """What :func:`benchmark` measured (times in ms, rates in tokens/s).

    ``backend``, ``num_prompts``, ``latency_ms_mean`` / ``_p50`` / ``_p90``, ``ttft_ms_mean`` /
    ``ttft_ms_p50``, ``prefill_tokens_per_s``, ``decode_tokens_per_s``, ``tokens_per_second``
    (completion tokens over total latency), ``prompt_tokens``, ``completion_tokens`` (totals),
    ``results`` (the :class:`InferenceResult` of every prompt).
    """

    backend: BackendInfo
    num_prompts: int
    latency_ms_mean: float
    latency_ms_p50: float
    latency_ms_p90: float
    ttft_ms_mean: float
    ttft_ms_p50: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    tokens_per_second: float
    prompt_tokens: int
    completion_tokens: int
    results: list[InferenceResult] = dataclasses.field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers (no results), for JSON."""
        d = dataclasses.asdict(self)
        d.pop("results")
        return d


def benchmark(backend: Backend, prompts: Sequence[str], **sampling: Any) -> BenchmarkResult:
    """Run every prompt through ``backend.stream_complete(prompt, **sampling)`` in turn and
    summarise. ``backend`` not a :class:`Backend` → TypeError; no prompts → ValueError."""
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a g2c Backend, got {type(backend).__name__}")
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    results = []
    ttfts = []
    for prompt in prompts:
        stream = backend.stream_complete(prompt, **sampling)
        stream.text()
        r = stream.result
        ttft = r.metadata.get("ttft_ms") or stream.ttft_ms or r.latency_ms
        results.append(r)
        ttfts.append(min(float(ttft), r.latency_ms))
    lat = [r.latency_ms for r in results]
    n_prompt = sum(r.prompt_tokens for r in results)
    n_new = sum(r.completion_tokens for r in results)
    decode_tokens = sum(max(r.completion_tokens - 1, 0) for r in results)
    decode_ms = sum(r.latency_ms - t for r, t in zip(results, ttfts))
    return BenchmarkResult(
        backend=backend.info,
        num_prompts=len(results),
        latency_ms_mean=sum(lat) / len(lat),
        latency_ms_p50=percentile(lat, 50),
        latency_ms_p90=percentile(lat, 90),
        ttft_ms_mean=sum(ttfts) / len(ttfts),
        ttft_ms_p50=percentile(ttfts, 50),
        prefill_tokens_per_s=n_prompt / (sum(ttfts) / 1000) if sum(ttfts) > 0 else 0.0,
        decode_tokens_per_s=decode_tokens / (decode_ms / 1000) if decode_ms > 0 else 0.0,
        tokens_per_second=n_new / (sum(lat) / 1000) if sum(lat) > 0 else 0.0,
        prompt_tokens=n_prompt,
        completion_tokens=n_new,
        results=results,
    )
