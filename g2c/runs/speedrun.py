"""The speedrun's post-training: SFT then DPO on the freshly pretrained model, and the report card.

``g2c speedrun`` = the pretrain stage (:mod:`g2c.runs.pretrain`: tokenizer → pretraining →
evaluation → samples → report) into ``out``, then :func:`posttrain`: the ``sft`` stage
(preset ``sft-speedrun``, or ``sft-smoke``) into ``out/sft`` with ``out`` as its base, and the
``dpo`` stage (``dpo-speedrun`` / ``dpo-smoke``) into ``out/dpo`` with ``out/sft`` as its base.
Each stage resumes on its own (run the speedrun again after an interruption). Then
:func:`write_chat_section` appends the base / SFT / DPO task accuracy per family and the three
models' answers to the same held-out prompts to ``out/report.md``, and :func:`evaluate` runs
the eval stage (:mod:`g2c.runs.eval`) on the final (DPO) model with a small fixed suite,
:data:`EVAL_TASKS` — bits per byte on the held-out text, the generated task family, and
OpenBookQA by log-likelihood (accuracy and calibration) — :data:`EVAL_LIMIT` examples each
(5 in the smoke run), into ``out/dpo/eval`` (resumable like any ``g2c eval``), and
:func:`write_eval_section` appends its table to the report card.

Time budget (design choice): the pretrain stage's ``run.budget_minutes`` is 13.5 in the
``speedrun`` preset; the SFT and DPO stages have fixed step counts that take about a minute
together on the 2-core CPU (measured: SFT 300 steps 17 s + its evaluation; DPO 150 steps
8 s + on-policy pair generation 5 s), and the evaluation suite a few seconds on one thread
(measured on the finished speedrun model, 50 examples each: 3.2 s — perplexity 1.9 s, task
family 0.6 s, OpenBookQA 0.6 s; 10.5 s with the machine loaded by other jobs), so the whole
run stays within 15 minutes. The report shows every
stage's time. Library code: events go to ``on_event``; nothing is printed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import atomic_write_text, read_json, read_manifest
from g2c.runs import dpo, sft
from g2c.runs import eval as eval_stage
from g2c.runs.stage import EventFn
from g2c.training import LoopControl

CHAT_SECTION = "## The speedrun learns to chat"
EVAL_SECTION = "## Evaluation suite"
#: The speedrun's fixed evaluation suite (each task's first EVAL_LIMIT examples).
EVAL_TASKS = ("perplexity", "g2c_tasks", "openbookqa")
EVAL_LIMIT = 50
EVAL_LIMIT_SMOKE = 5


def posttrain(
    out: str | Path,
    *,
    smoke: bool = False,
    on_event: EventFn | None = None,
    control: LoopControl | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) SFT into ``out/sft`` and DPO into ``out/dpo`` on the pretrained run in
    ``out``, then the evaluation suite (:func:`evaluate`). Returns ``{"sft": StageResult,
    "dpo": StageResult | None, "eval": EvalRunResult | None}`` (DPO is skipped when SFT was
    interrupted, the suite when DPO was). A missing or unfinished pretrained run →
    FileNotFoundError."""
    out = Path(out)
    if not (out / "model.safetensors").is_file():
        raise FileNotFoundError(f"{out} holds no finished pretrained model (model.safetensors)")
    kind = "smoke" if smoke else "speedrun"
    model_len = int(read_json(out / "config.json")["max_seq_len"])

    def fit(cfg: Any, base: Path) -> Any:  # the preset, on this base, within its context
        seq = min(cfg.data.max_seq_len, model_len)
        return cfg.override({"model": {"base": str(base)}, "data": {"max_seq_len": seq}})

    sft_cfg = fit(sft.get_preset(f"sft-{kind}"), out)
    result_sft = sft.run(sft_cfg, out / "sft", on_event=on_event, control=control,
                         command=command)  # fmt: skip
    if result_sft.status != "complete":
        return {"sft": result_sft, "dpo": None, "eval": None}
    dpo_cfg = fit(dpo.get_preset(f"dpo-{kind}"), out / "sft")
    result_dpo = dpo.run(dpo_cfg, out / "dpo", on_event=on_event, control=control,
                         command=command)  # fmt: skip
    if result_dpo.status != "complete":
        return {"sft": result_sft, "dpo": result_dpo, "eval": None}
    write_chat_section(out)
    result_eval = evaluate(out, smoke=smoke, on_event=on_event, control=control,
                           command=command)  # fmt: skip
    return {"sft": result_sft, "dpo": result_dpo, "eval": result_eval}


def available_tasks(names: Sequence[str], limit: int) -> list[str]:
    """The tasks of ``names`` whose data can be read here (a speedrun on a stand-in text, with
    no benchmark files around, still finishes: the missing ones are left out)."""
    probe = eval_stage.EvalConfig(model="probe", tasks=list(names), limit=limit)
    found = []
    for name in names:
        try:
            eval_stage.prepare_task(name, probe)
        except FileNotFoundError:
            continue
        found.append(name)
    return found


def evaluate(
    out: str | Path,
    *,
    smoke: bool = False,
    on_event: EventFn | None = None,
    control: LoopControl | None = None,
    command: str | None = None,
) -> eval_stage.EvalRunResult:
    """Run (or resume) the fixed evaluation suite (:data:`EVAL_TASKS`, first
    :data:`EVAL_LIMIT` examples each, :data:`EVAL_LIMIT_SMOKE` with ``smoke``) on the DPO model
    in ``out/dpo`` into ``out/dpo/eval``, and append its table to ``out/report.md`` when it
    finishes (:func:`write_eval_section`). Tasks whose data files are missing are left out
    (:func:`available_tasks`). The suite runs on one CPU thread (the thread count is restored
    afterwards): on the shared 2-core machine the 50-example suite took 3.2 s on one thread
    and 25–112 s on two, waiting on busy cores. No finished DPO model, or no data for any
    task → FileNotFoundError."""
    out = Path(out)
    if not (out / "dpo" / "model.safetensors").is_file():
        raise FileNotFoundError(f"{out / 'dpo'} holds no finished DPO model (model.safetensors)")
    limit = EVAL_LIMIT_SMOKE if smoke else EVAL_LIMIT
    tasks = available_tasks(EVAL_TASKS, limit)
    if not tasks:
        raise FileNotFoundError(f"none of the evaluation suite's data is here ({EVAL_TASKS}); "
                                "set G2C_DATA_DIR (see g2c data)")  # fmt: skip
    cfg = eval_stage.EvalConfig(model=str(out / "dpo"), tasks=tasks, limit=limit)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 1M-parameter model: one thread, no waiting on a busy core
    try:
        result = eval_stage.run(cfg, out / "dpo" / "eval", on_event=on_event, control=control,
                                command=command)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    if result.status == "complete":
        write_eval_section(out, result)
    return result


def _pct(x: Any) -> str:
    return f"{100 * x:.0f} %" if isinstance(x, (int, float)) else ""


def write_chat_section(out: str | Path) -> Path:
    """Append (or replace) the report card's chat section in ``out/report.md``: stage times,
    task accuracy per family for base / SFT / DPO, held-out preference accuracy, and links to
    the two stages' own reports."""
    out = Path(out)
    m_sft = read_manifest(out / "sft")
    m_dpo = read_manifest(out / "dpo")
    s, d = m_sft.get("metrics", {}), m_dpo.get("metrics", {})
    base_f = s.get("baseline_task_accuracy_per_family") or {}
    sft_f = s.get("task_accuracy_per_family") or {}
    dpo_f = d.get("task_accuracy_per_family") or {}
    lines = [
        CHAT_SECTION,
        "",
        f"SFT ({s.get('steps')} steps, {m_sft.get('total_seconds', 0):.0f} s) then DPO "
        f"({d.get('steps')} steps on on-policy pairs, β = {d.get('beta')}, "
        f"{m_dpo.get('total_seconds', 0):.0f} s). Held-out problems, greedy decoding, exact "
        "match ([sft/report.md](sft/report.md), [dpo/report.md](dpo/report.md)):",
        "",
        "| family | base | SFT | DPO |",
        "|---|---:|---:|---:|",
    ]
    for fam in sft_f:
        lines.append(f"| {fam} | {_pct(base_f.get(fam))} | {_pct(sft_f.get(fam))} | "
                     f"{_pct(dpo_f.get(fam))} |")  # fmt: skip
    lines.append(f"| all | {_pct(s.get('baseline_task_accuracy'))} | "
                 f"{_pct(s.get('task_accuracy'))} | {_pct(d.get('task_accuracy'))} |")  # fmt: skip
    lines += [
        "",
        f"Held-out assistant-token loss after SFT: {s.get('heldout_loss', float('nan')):.3f}; "
        f"DPO held-out preference accuracy {d.get('heldout_preference_accuracy', 0):.2f}, "
        f"reward margin {d.get('heldout_reward_margin', 0):.2f}.",
        "",
        f"Talk to it: `g2c chat {out / 'dpo'}` (or `{out / 'sft'}`).",
        "",
    ]
    return _replace_section(out / "report.md", CHAT_SECTION, lines)


def _replace_section(report: Path, heading: str, lines: list[str]) -> Path:
    """Write ``lines`` (starting with ``heading``) into ``report`` in place of the section
    under that heading (up to the next "## " heading), or at the end when there is none."""
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    tail = ""
    if heading in text:
        head, rest = text[: text.index(heading)], text[text.index(heading) + len(heading) :]
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        text = head
    body = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    if tail:
        body = body.rstrip("\n") + "\n\n" + tail
    return atomic_write_text(report, body)


def write_eval_section(out: str | Path, result: eval_stage.EvalRunResult) -> Path:
    """Append (or replace) the report card's evaluation section in ``out/report.md``: the
    suite's metrics table for the DPO model (:func:`g2c.runs.eval.metrics_table`), the
    OpenBookQA reliability diagram, and a link to the eval stage's own report."""
    out = Path(out)
    rel = result.out.relative_to(out) if result.out.is_relative_to(out) else result.out
    n = max((r["n"] for r in result.results.values()), default=0)
    lines = [
        EVAL_SECTION,
        "",
        f"The final (DPO) model on the fixed suite, first {n} examples per task: bits per "
        "byte on the held-out text (lower is better), the generated task family (exact match, "
        "greedy) and OpenBookQA zero-shot by log-likelihood (chance 0.25; ECE = expected "
        f"calibration error) — [{rel}/report.md]({rel}/report.md):",
        "",
        *eval_stage.metrics_table(result.results),
        "",
    ]
    plots = [r["plot"] for r in result.results.values() if r.get("plot")]
    lines += [f"![{p}]({rel}/{p})" for p in plots]
    lines += ["", f"Rerun or extend it: `g2c eval {out / 'dpo'} --tasks {','.join(EVAL_TASKS)} "
              f"--limit {n}`.", ""]  # fmt: skip
    return _replace_section(out / "report.md", EVAL_SECTION, lines)
