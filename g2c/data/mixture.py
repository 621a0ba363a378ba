"""A mixture of corpus sources by weight: parse ``name=weight,...``, schedule documents, log fractions.

Weights are relative token shares (``"code=3,prose=1"`` = 75 % / 25 % of the kept tokens).
:class:`MixtureScheduler` is deterministic deficit scheduling: the next document comes from the
active source whose kept tokens divided by its weight is smallest (ties: the order given), so
after every document each source's share is within one document of its target. When the
chosen source runs out, the mixture stops (the shares hold; the rest of the other sources is
not used) — the manifest records which source ran out and the observed fractions.
"""

from __future__ import annotations

from collections.abc import Mapping


def parse_mixture(spec: str | Mapping[str, float]) -> dict[str, float]:
    """``"a=0.7,b=0.3"`` (or a mapping) → ``{"a": 0.7, "b": 0.3}`` (weights as given).

    Raises ValueError for an empty spec, an item without ``=``, a repeated name, a weight that
    is not a number, or a weight <= 0 (the message names the item and the fix).
    """
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    else:
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError("mixture must look like 'name=weight,...', e.g. 'code=3,prose=1'")
        items = []
        for part in spec.split(","):
            name, eq, weight = part.partition("=")
            if not eq or not name.strip():
                raise ValueError(f"mixture item {part!r} must be name=weight, e.g. 'prose=1'")
            items.append((name.strip(), weight.strip()))
    weights: dict[str, float] = {}
    for name, weight in items:
        try:
            value = float(weight)
        except (TypeError, ValueError):
            raise ValueError(
                f"mixture weight of {name!r} must be a number, got {weight!r}"
            ) from None
        if not value > 0 or value == float("inf"):
            raise ValueError(f"mixture weight of {name!r} must be a positive number, got {weight}")
        if name in weights:
            raise ValueError(f"mixture names {name!r} twice; give each source once")
        weights[name] = value
    if not weights:
        raise ValueError("mixture must name at least one source")
    return weights


class MixtureScheduler:
    """Picks the source of the next document so kept tokens follow ``weights``.

    ``weights``: ``{source name: weight > 0}`` (see :func:`parse_mixture`). ``tokens`` holds
    the kept tokens per source so far (restorable: pass ``tokens=`` to resume).
    """

    def __init__(self, weights: Mapping[str, float], tokens: Mapping[str, int] | None = None):
        self.weights = parse_mixture(weights)
        self.tokens = {name: int((tokens or {}).get(name, 0)) for name in self.weights}

    def next_source(self) -> str:
        """The source with the smallest ``tokens / weight`` (first in order on ties)."""
        return min(self.weights, key=lambda name: self.tokens[name] / self.weights[name])

    def record(self, name: str, n_tokens: int) -> None:
        """Count ``n_tokens`` kept tokens for source ``name``."""
        self.tokens[name] += int(n_tokens)

    def target_fractions(self) -> dict[str, float]:
        """Weights normalised to sum to 1."""
        total = sum(self.weights.values())
        return {name: w / total for name, w in self.weights.items()}

    def observed_fractions(self) -> dict[str, float]:
        """Kept tokens per source / all kept tokens (zeros before any token)."""
        total = sum(self.tokens.values())
        return {name: (n / total if total else 0.0) for name, n in self.tokens.items()}
