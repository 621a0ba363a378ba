"""The speedrun's post-training: SFT then DPO on the freshly pretrained model, and the report card.

``g2c speedrun`` = the pretrain stage (:mod:`g2c.runs.pretrain`: tokenizer → pretraining →
evaluation → samples → report) into ``out``, then :func:`posttrain`: the ``sft`` stage
(preset ``sft-speedrun``, or ``sft-smoke``) into ``out/sft`` with ``out`` as its base, and the
``dpo`` stage (``dpo-speedrun`` / ``dpo-smoke``) into ``out/dpo`` with ``out/sft`` as its base.
Each stage resumes on its own (run the speedrun again after an interruption). Finally
:func:`write_chat_section` appends the base / SFT / DPO task accuracy per family and the three
models' answers to the same held-out prompts to ``out/report.md``.

Time budget (design choice): the pretrain stage's ``run.budget_minutes`` is 13.5 in the
``speedrun`` preset; the SFT and DPO stages have fixed step counts that take about a minute
together on the 2-core CPU (measured: SFT 300 steps 17 s + its evaluation; DPO 150 steps
8 s + on-policy pair generation 5 s), so the whole run stays within 15 minutes. The report
shows every stage's time. Library code: events go to ``on_event``; nothing is printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from g2c.artifacts import atomic_write_text, read_json, read_manifest
from g2c.runs import dpo, sft
from g2c.runs.stage import EventFn
from g2c.training import LoopControl

CHAT_SECTION = "## The speedrun learns to chat"


def posttrain(
    out: str | Path,
    *,
    smoke: bool = False,
    on_event: EventFn | None = None,
    control: LoopControl | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) SFT into ``out/sft`` and DPO into ``out/dpo`` on the pretrained run in
    ``out``. Returns ``{"sft": StageResult, "dpo": StageResult | None}`` (DPO is skipped when
    SFT was interrupted). A missing or unfinished pretrained run → FileNotFoundError."""
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
        return {"sft": result_sft, "dpo": None}
    dpo_cfg = fit(dpo.get_preset(f"dpo-{kind}"), out / "sft")
    result_dpo = dpo.run(dpo_cfg, out / "dpo", on_event=on_event, control=control,
                         command=command)  # fmt: skip
    if result_dpo.status == "complete":
        write_chat_section(out)
    return {"sft": result_sft, "dpo": result_dpo}


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
    report = out / "report.md"
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    if CHAT_SECTION in text:
        text = text[: text.index(CHAT_SECTION)]
    return atomic_write_text(report, text.rstrip("\n") + "\n\n" + "\n".join(lines))
