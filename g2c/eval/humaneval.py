"""HumanEval: write a Python function from its signature and docstring; run the unit tests.

Chen et al. 2021, "Evaluating Large Language Models Trained on Code" (the Codex paper): 164
problems, each a ``prompt`` (imports, signature, docstring), an ``entry_point``, a ``test``
defining ``check(candidate)`` and a ``canonical_solution``. A completion passes when
``prompt + completion + test + check(entry_point)`` exits cleanly in the sandbox
(:func:`g2c.eval.sandbox.run_in_sandbox`: time and memory limits, a temporary directory, no
network where the OS allows).

pass@k, the probability that at least one of k samples passes, is estimated from n ≥ k samples
of which c pass with the unbiased estimator (the paper's eq. 1):

    pass@k = 1 − C(n − c, k) / C(n, k) = 1 − Π_{i = n−c+1}^{n} (1 − k / i)

computed as the product on the right (no huge binomials). Greedy decoding gives one sample per
problem: pass@1 = the fraction of problems solved.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections.abc import Sequence
from typing import Any

from g2c.data import dataset_file
from g2c.eval.core import EvalResult, GenerationExample
from g2c.eval.generation import GenerationTask, check_limit, cut_at_stop
from g2c.eval.sandbox import SandboxResult, run_in_sandbox

#: The Codex paper's stop sequences: a continued function body ends where a new top-level block
#: starts (applied when scoring, to a completion that does not define the function itself).
STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
#: Stops while generating: only those that end a completion in either style (a body continued
#: by a base model, a whole definition written by a chat model, which may start with imports).
GENERATION_STOP = ("\nif __name__", "\nprint(", "\nassert ")
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed (Chen et al. 2021, eq. 1):
    1 − C(n−c, k)/C(n, k), evaluated as 1 − Π_{i=n−c+1}^{n} (1 − k/i); 1.0 when n − c < k.

    Raises ValueError unless 0 ≤ c ≤ n and 1 ≤ k ≤ n (integers)."""
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {v!r}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}] (need at least k samples), got {k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(samples: Sequence[tuple[int, int]], k: int) -> float:
    """Mean of :func:`pass_at_k` over problems given as ``(n, c)`` pairs."""
    if not samples:
        raise ValueError("samples must hold at least one (n, c) pair")
    return math.fsum(pass_at_k(n, c, k) for n, c in samples) / len(samples)


def load_humaneval(path: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """The HumanEval problems (dicts with ``task_id``, ``prompt``, ``canonical_solution``,
    ``test``, ``entry_point``) from ``path`` (a ``.jsonl`` or ``.jsonl.gz`` file) or the
    registered ``humaneval`` dataset. An empty or malformed file → ValueError naming the file
    and line."""
    file = path if path is not None else dataset_file("humaneval", "HumanEval.jsonl.gz")
    opener = gzip.open if str(file).endswith(".gz") else open
    problems = []
    with opener(file, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{file}:{lineno}: not JSON ({exc.msg})") from None
            missing = [k for k in FIELDS if not isinstance(row.get(k), str)]
            if missing:
                raise ValueError(f"{file}:{lineno}: missing fields {missing}")
            problems.append({k: row[k] for k in FIELDS})
    if not problems:
        raise ValueError(f"{file}: no problems (empty file)")
    return problems


_CODE_BLOCK = re.compile(r"```(?:python|py|Python)?\s*\n(.*?)(?:```|$)", re.DOTALL)


def extract_code(problem: dict[str, str], completion: str) -> str:
    """The code to run for ``completion`` (the code of its first fenced block when it has
    one): code that defines the entry point itself (a chat model's whole function, imports
    included) follows the prompt's stub, closed with ``pass``; otherwise it is a continued
    function body (a base model's), cut at the first Codex :data:`STOP` and appended to the
    prompt."""
    m = _CODE_BLOCK.search(completion)
    code = m.group(1) if m else completion
    if re.search(rf"^def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.MULTILINE):
        return problem["prompt"] + "    pass\n\n" + code
    return problem["prompt"] + cut_at_stop(code, STOP)[0]


def program(problem: dict[str, str], completion: str) -> str:
    """The full test program: prompt + completion, the tests, ``check(entry_point)``."""
    return (extract_code(problem, completion) + "\n\n" + problem["test"] + "\n\n"
            + f"check({problem['entry_point']})\n")  # fmt: skip


def check_completion(
    problem: dict[str, str], completion: str, *, timeout_s: float = 10.0, memory_mb: int = 512
) -> SandboxResult:
    """Run ``completion``'s test program in the sandbox; ``result.ok`` = passed."""
    return run_in_sandbox(program(problem, completion), timeout_s=timeout_s, memory_mb=memory_mb,
                          max_output_bytes=4096)  # fmt: skip


class HumanEvalTask(GenerationTask):
    """HumanEval pass@1 with greedy completions run in the sandbox."""

    name = "humaneval"
    max_new_tokens = 384
    stop = GENERATION_STOP
    metric_names = ("pass@1",)

    def __init__(
        self, path: str | os.PathLike | None = None, timeout_s: float = 10.0, memory_mb: int = 512
    ) -> None:
        self.path, self.timeout_s, self.memory_mb = path, timeout_s, memory_mb

    def prompt_format(self, shots: int = 0) -> dict[str, Any]:
        """The problem's prompt, continued; stop sequences; sandboxed tests."""
        return {"doc_to_text": "{prompt}", "stop": list(self.stop), "body_stop": list(STOP),
                "scoring": "prompt + completion + test + check(entry_point) exits 0 in the "
                           f"sandbox ({self.timeout_s:g} s, {self.memory_mb} MiB)",
                "metric": "pass@1 (greedy)"}  # fmt: skip

    def examples(
        self, limit: int | None = None, seed: int = 0, shots: int = 0
    ) -> list[GenerationExample]:
        """Problems in file order (the first ``limit``)."""
        check_limit(limit)
        problems = load_humaneval(self.path)
        return [GenerationExample(p["prompt"], (p["canonical_solution"],),
                                  {"id": p["task_id"], "problem": p})
                for p in (problems[:limit] if limit else problems)]  # fmt: skip

    def score(self, example: GenerationExample, text: str) -> EvalResult:
        """Run the tests; correct = they pass. Records the return code, timeout and the end
        of stderr."""
        r = check_completion(example.metadata["problem"], text, timeout_s=self.timeout_s,
                             memory_mb=self.memory_mb)  # fmt: skip
        meta = {"returncode": r.returncode, "timed_out": r.timed_out,
                "stderr_tail": r.stderr[-300:]}  # fmt: skip
        return EvalResult(r.ok, text, None, meta)

    def metrics(self, results: Sequence[EvalResult]) -> dict[str, float]:
        """``pass@1`` (one greedy sample per problem), ``hit_max_tokens``."""
        out = super().metrics(results)
        out["pass@1"] = out.pop("acc")
        return out


__all__ = [
    "HumanEvalTask",
    "check_completion",
    "extract_code",
    "load_humaneval",
    "mean_pass_at_k",
    "pass_at_k",
    "program",
]
