"""The synthetic-data loop: a teacher proposes tasks, answers them, and a funnel keeps the good.

:func:`synthesize_dataset` runs rounds until ``target`` pairs are accepted or ``max_rounds``
rounds have run. One round:

1. pick a few seed tasks (and, once there are some, accepted synthetic ones — self-instruct
   mixes 6 human and 2 machine tasks) and ask the teacher for ``batch_count`` new tasks
   (:func:`~g2c.synth.build_instruction_prompt`, sampled at ``temperature``);
2. parse the reply (:func:`~g2c.synth.parse_numbered_list`): every item is *proposed*;
3. for each proposed instruction in order: a near-duplicate of a seed or an accepted
   instruction (:func:`~g2c.synth.ngram_overlap` ≥ ``threshold``) is a *duplicate*; an
   instruction failing :func:`~g2c.synth.validate_pair`'s instruction checks is a *bad_pair*
   without asking for an answer; otherwise the teacher answers it (greedy by default) and
   the whole pair is validated: *accepted* or *bad_pair*;
4. once ``target`` is reached the rest of that round's proposals are *surplus*.

So ``proposed == accepted + duplicate + bad_pair + surplus`` always (tested). The teacher is
any :class:`g2c.inference.Backend` (g2c's own engine, an OpenAI- or Ollama-compatible server);
:func:`load_teacher` builds one from a MODEL string, and :func:`write_pairs_jsonl` /
:func:`read_pairs_jsonl` store the result as chat JSONL (``{"messages": [...]}`` per line).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from g2c.artifacts import atomic_write_text
from g2c.inference import BACKEND_APIS as APIS
from g2c.inference import Backend, backend_from_spec, served_model
from g2c.synth.data import (
    MAX_CHARS,
    NgramIndex,
    _instruction_of,
    _user_problems,
    build_instruction_prompt,
    build_response_prompt,
    parse_numbered_list,
    validate_pair,
)

FUNNEL_KEYS = ("proposed", "accepted", "duplicate", "bad_pair", "surplus", "rounds")
#: Seed tasks shown per instruction prompt, and how many of them may be synthetic ones.
SEEDS_PER_PROMPT = 6
SYNTHETIC_PER_PROMPT = 2


def _positive_int(value: Any, name: str, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def synthesize_dataset(
    teacher: Backend,
    seeds: Sequence[Any],
    target: int,
    batch_count: int,
    threshold: float,
    max_rounds: int = 20,
    seed: int = 0,
    *,
    max_chars: int = MAX_CHARS,
    temperature: float = 0.7,
    response_temperature: float = 0.0,
    max_new_tokens: int = 256,
    on_event: Callable[[str, dict], None] | None = None,
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Synthesise up to ``target`` instruction pairs with ``teacher``; see the module docstring.

    Args:
        teacher: any :class:`g2c.inference.Backend` (its ``chat`` is used for both steps).
        seeds: example tasks (instruction strings, ``{"user", "assistant"}`` dicts or
            conversations), shown to the teacher and de-duplicated against.
        target: pairs wanted (≥ 1).
        batch_count: tasks asked for per round (≥ 1).
        threshold: n-gram overlap (word 3-gram Jaccard) at or above which an instruction is a
            duplicate, in (0, 1].
        max_rounds: instruction prompts at most (≥ 1); fewer pairs come back when they run out.
        seed: picks the seed tasks shown each round and seeds the teacher's sampling.
        max_chars: longest text on either side of a pair (:func:`validate_pair`).
        temperature: sampling temperature of the instruction prompts (diversity); the
            answers use ``response_temperature`` (0 = greedy).
        max_new_tokens: token budget of each teacher call.
        on_event: called with ("round", {round, proposed}) and ("pair", {status,
            instruction, problems, pair (the accepted pair or None), funnel (the counts so
            far)}) as the loop goes (progress bars, logs, keeping partial work).

    Returns:
        ``(pairs, funnel)``: ``pairs`` a list of ``{"user", "assistant"}`` dicts (accepted,
        in order), ``funnel`` ``{"proposed", "accepted", "duplicate", "bad_pair", "surplus",
        "rounds", "teacher_calls"}`` with proposed = accepted + duplicate + bad_pair + surplus.

    Raises:
        TypeError: ``teacher`` is not a Backend, or a seed of another type.
        ValueError: a count or threshold out of range, empty ``seeds`` — before any call.
    """
    if not isinstance(teacher, Backend):
        raise TypeError(f"teacher must be a g2c.inference.Backend, got {type(teacher).__name__}")
    if isinstance(seeds, (str, dict)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError("seeds must be a non-empty list of example tasks")
    seed_texts = [_instruction_of(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
    _positive_int(target, "target")
    _positive_int(batch_count, "batch_count")
    _positive_int(max_rounds, "max_rounds")
    _positive_int(seed, "seed", 0)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not (0 < threshold <= 1)
    ):
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    validate_pair({"user": "check the limit", "assistant": "ok"}, max_chars)  # checks max_chars
    emit = on_event or (lambda kind, info: None)
    rng = random.Random(seed)
    index = NgramIndex()
    for text in seed_texts:
        index.add(text)
    funnel = dict.fromkeys(FUNNEL_KEYS, 0) | {"teacher_calls": 0}
    pairs: list[dict[str, str]] = []
    sampling = {"max_new_tokens": max_new_tokens}

    def ask(prompt: str, temp: float, call_seed: int) -> str:
        funnel["teacher_calls"] += 1
        messages = [{"role": "user", "content": prompt}]
        return teacher.chat(messages, temperature=temp, seed=call_seed, **sampling).completion

    while len(pairs) < target and funnel["rounds"] < max_rounds:
        r = funnel["rounds"]
        funnel["rounds"] += 1
        n_syn = min(SYNTHETIC_PER_PROMPT, len(pairs))
        shown = rng.sample(seed_texts, min(SEEDS_PER_PROMPT - n_syn, len(seed_texts)))
        shown += [p["user"] for p in rng.sample(pairs, n_syn)]
        reply = ask(build_instruction_prompt(shown, count=batch_count), temperature, seed + r)
        proposals = parse_numbered_list(reply)
        funnel["proposed"] += len(proposals)
        emit("round", {"round": r + 1, "proposed": len(proposals)})
        for k, instruction in enumerate(proposals):
            if len(pairs) >= target:
                funnel["surplus"] += len(proposals) - k
                break
            problems: list[str] = []
            pair = None
            if index.max_overlap(instruction) >= threshold:
                status = "duplicate"
            elif problems := _user_problems(instruction, max_chars):
                status = "bad_pair"
            else:
                answer = ask(build_response_prompt(instruction), response_temperature, seed + r)
                pair = {"user": instruction, "assistant": answer.strip()}
                problems = validate_pair(pair, max_chars)
                status = "bad_pair" if problems else "accepted"
                if not problems:
                    pairs.append(pair)
                    index.add(instruction)
            funnel[status] += 1
            emit(
                "pair",
                {
                    "status": status,
                    "instruction": instruction,
                    "problems": problems,
                    "funnel": dict(funnel),
                    "pair": pair if status == "accepted" else None,
                },
            )
    return pairs, funnel


# -- the teacher --------------------------------------------------------------------------------
def load_teacher(
    spec: str,
    *,
    api: str | None = None,
    model_id: str | None = None,
    api_key: str | None = None,
    device: str = "cpu",
) -> Backend:
    """A :class:`~g2c.inference.Backend` for MODEL ``spec``: smollm2, a run directory or an
    http(s):// URL (OpenAI-compatible by default, Ollama on port 11434 or with ``api``), through
    :func:`g2c.inference.backend_from_spec` — the one place a ``--model`` string is resolved.
    Its errors: unknown ``api``, Ollama without ``model_id`` → ValueError; nothing at ``spec``
    → FileNotFoundError; an unreadable model list → OpenAIError."""
    return backend_from_spec(spec, api=api, model_id=model_id, api_key=api_key, device=device)


def pair_record(pair: dict[str, str], **extra: Any) -> dict[str, Any]:
    """One JSONL line: ``{"messages": [user, assistant turns], **extra}``."""
    return {
        "messages": [
            {"role": "user", "content": pair["user"]},
            {"role": "assistant", "content": pair["assistant"]},
        ],
        **extra,
    }


def write_pairs_jsonl(
    path: str | os.PathLike, pairs: Sequence[dict[str, str]], **extra: Any
) -> Path:
    """Write ``pairs`` to ``path`` as chat JSONL (:func:`pair_record` per line; ``extra``
    fields on every line, e.g. the teacher's name), atomically. Returns the path."""
    lines = [json.dumps(pair_record(p, **extra), ensure_ascii=False) for p in pairs]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_pairs_jsonl(path: str | os.PathLike) -> list[list[dict[str, str]]]:
    """Conversations from a chat JSONL file: each line ``{"messages": [{"role", "content"},
    ...]}`` (or ``{"user", "assistant"}``) → a list of turns, ready for
    ``g2c.sft.render_with_mask``. A missing file → FileNotFoundError; a bad line →
    ValueError naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    out = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{no}: not JSON ({exc.msg})") from None
        if isinstance(row, dict) and isinstance(row.get("user"), str):
            row = pair_record({"user": row["user"], "assistant": str(row.get("assistant", ""))})
        turns = row.get("messages") if isinstance(row, dict) else None
        ok = (
            isinstance(turns, list)
            and turns
            and all(
                isinstance(t, dict)
                and isinstance(t.get("role"), str)
                and isinstance(t.get("content"), str)
                for t in turns
            )
        )
        if not ok:
            raise ValueError(
                f'{path}:{no}: expected {{"messages": [{{"role", "content"}}, '
                '...]}} or {"user", "assistant"}'
            )
        out.append([{"role": t["role"], "content": t["content"]} for t in turns])
    return out


__all__ = [
    "APIS",
    "FUNNEL_KEYS",
    "load_teacher",
    "pair_record",
    "read_pairs_jsonl",
    "served_model",
    "synthesize_dataset",
    "write_pairs_jsonl",
]
