"""The speedrun's post-training: SFT then DPO on the freshly pretrained model, evaluation of
every stage, chat transcripts, the report card, and a chat-ready run directory.

``g2c speedrun`` = the pretrain stage (:mod:`g2c.runs.pretrain`: tokenizer → pretraining →
evaluation → samples → report) into ``out``, then :func:`posttrain`:

1. the ``sft`` stage (preset ``sft-speedrun``, or ``sft-smoke``) into ``out/sft`` with ``out``
   as its base, and the ``dpo`` stage (``dpo-speedrun`` / ``dpo-smoke``) into ``out/dpo`` with
   ``out/sft`` as its base — each resumes on its own (run the speedrun again after an
   interruption);
2. the evaluation suite on the DPO model (:func:`evaluate`: :data:`EVAL_TASKS`,
   :data:`EVAL_LIMIT` examples each, into ``out/dpo/eval``, resumable like any ``g2c eval``);
3. the evaluation per stage (:func:`evaluate_stages`): base, SFT and DPO on the same data —
   val bits per byte on the pretraining validation tokens, held-out task accuracy per family,
   preference accuracy on DPO's held-out pairs;
4. chat transcripts (:func:`chat_transcripts`): the DPO model answers :data:`CHAT_PROMPTS`
   through its chat template, greedy;
5. the chat-ready root (:func:`make_chat_ready`): ``out/base`` (hard links to the pretrained
   model's files, its manifest renamed ``<name>-base``) and ``out/chat.json`` = ``{"chat_model": "dpo", "base_model": "base"}``,
   written atomically and last, so ``g2c.transformer.load_model(out)`` — and with it
   ``g2c chat out`` and ``g2c serve out`` — loads the DPO model, while ``out/base`` (and
   ``load_model(out, follow_chat=False)``) is the pretrained base;
6. the report card (:func:`write_report_card`): ``out/report.md`` regenerated from the
   artifacts with the post-training stage rows, the evaluation per stage, the transcripts, the
   suite, and at the end the two commands.

A rerun removes ``chat.json`` first (the SFT stage loads ``out`` as its base) and writes it
again when everything has finished; an interrupted post-training leaves the root loading the
base until the speedrun is run again.

Time budget (design choice, :func:`split_budget`): ``g2c speedrun --budget-minutes`` is the
whole run's budget, :data:`BUDGET_MINUTES` = 15 by default. The post-training has fixed step
counts, so it gets a fixed reserve, :data:`POSTTRAIN_MINUTES` = 1.5 min, and the pretrain
stage's ``run.budget_minutes`` (the planner's budget, which itself keeps 5 % for its own
evaluation, samples and report) gets the rest: 13.5 min. Measured on the 2-core CPU: SFT 18 s,
DPO 7 s, evaluation suite 2–3 s (10 s loaded), evaluation per stage ≈ 10 s (the SFT and DPO
models on 44,544 validation tokens, one thread; 30 s with the machine at load 8), transcripts
0.1 s — about 40 s, so the reserve holds with the machine twice as slow. The report card shows every stage's
time and the total against the budget. Library code: events go to ``on_event``; nothing is
printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import MANIFEST_NAME, atomic_write_json, read_json, read_manifest
from g2c.data import load_token_ids
from g2c.dpo import encode_preference_pairs, precompute_ref_logprobs
from g2c.runs import dpo, sft
from g2c.runs import eval as eval_stage
from g2c.runs.pretrain import EVAL_MAX_TOKENS
from g2c.runs.report import POSTTRAIN_FILE, write_report
from g2c.runs.rundir import RunDir
from g2c.runs.stage import EventFn
from g2c.sft.chat import ChatSession
from g2c.training import LoopControl, bits_per_byte, stream_loss
from g2c.transformer.loading import CHAT_POINTER_FILE, load_model

#: The whole speedrun's default time budget in minutes (pretraining + post-training).
BUDGET_MINUTES = 15.0
#: Minutes of the budget kept for the post-training (fixed step counts; ≈ 40 s measured).
POSTTRAIN_MINUTES = 1.5
#: The smoke run's post-training reserve (a few seconds).
POSTTRAIN_MINUTES_SMOKE = 0.05
#: The stage the chat-ready root points at, and the directory of the base's alias.
CHAT_STAGE = "dpo"
BASE_ALIAS = "base"
#: The files of the pretrained model that ``out/base`` links to (a ``save_pretrained`` dir).
BASE_FILES = ("model.safetensors", "config.json", "tokenizer.json")
#: What the final model is asked in the report card's transcripts (greedy, one turn each).
CHAT_PROMPTS = (
    "Who are you?",
    "What is 7 + 5?",
    "Say exactly this: green apple tree",
    "Count the letter 'a' in 'banana'.",
)
CHAT_MAX_TOKENS = 32
#: The speedrun's fixed evaluation suite (each task's first EVAL_LIMIT examples).
EVAL_TASKS = ("perplexity", "g2c_tasks", "openbookqa")
EVAL_LIMIT = 50
EVAL_LIMIT_SMOKE = 5
#: Report card headings.
STAGE_EVAL_SECTION = "## Evaluation per stage"
TRANSCRIPT_SECTION = "## Chat transcripts"
EVAL_SECTION = "## Evaluation suite"
STAGES = {"base": "", "sft": "sft", "dpo": "dpo"}  # stage → directory under the run


def split_budget(total_minutes: float | None, *, smoke: bool = False) -> dict[str, float] | None:
    """The speedrun's budget split: ``{"total_minutes", "pretrain_minutes",
    "posttrain_minutes"}`` — the post-training keeps :data:`POSTTRAIN_MINUTES`
    (:data:`POSTTRAIN_MINUTES_SMOKE` with ``smoke``), at most half the total (below twice the
    reserve the total cannot be kept: post-training has fixed step counts); the pretrain
    stage's planner gets the rest. None (no budget: fixed steps) → None. A total that is not
    a positive number → ValueError naming ``budget_minutes``."""
    if total_minutes is None:
        return None
    if isinstance(total_minutes, bool) or not isinstance(total_minutes, (int, float)):
        raise ValueError(f"budget_minutes must be a number of minutes, got {total_minutes!r}")
    if not total_minutes > 0:
        raise ValueError(f"budget_minutes must be positive, got {total_minutes}")
    reserve = min(POSTTRAIN_MINUTES_SMOKE if smoke else POSTTRAIN_MINUTES, total_minutes / 2)
    return {"total_minutes": float(total_minutes),
            "pretrain_minutes": round(float(total_minutes) - reserve, 6),
            "posttrain_minutes": round(reserve, 6)}  # fmt: skip


def reset_chat(out: str | Path) -> None:
    """Make ``out`` load as the pretrained run again: remove ``chat.json`` and the ``base``
    alias (a rerun's SFT stage loads ``out`` as its base; ``--fresh`` discards a stale
    pointer)."""
    out = Path(out)
    (out / CHAT_POINTER_FILE).unlink(missing_ok=True)
    shutil.rmtree(out / BASE_ALIAS, ignore_errors=True)


def posttrain(
    out: str | Path,
    *,
    smoke: bool = False,
    fresh: bool = False,
    budget: dict[str, float] | None = None,
    on_event: EventFn | None = None,
    control: LoopControl | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the post-training of the pretrained run in ``out`` (module docstring:
    SFT, DPO, suite, evaluation per stage, transcripts, chat-ready root, report card).

    ``fresh`` restarts the SFT, DPO and suite stages (``g2c speedrun --fresh``). ``budget``:
    :func:`split_budget`'s split, shown in the report card. Returns ``{"sft": StageResult,
    "dpo": StageResult | None, "eval": EvalRunResult | None, "chat": Path | None}`` — later
    entries are None when an earlier stage was interrupted; ``chat`` is ``chat.json`` once the
    root is chat-ready. A missing or unfinished pretrained run → FileNotFoundError."""
    out = Path(out)
    if not (out / "model.safetensors").is_file():
        raise FileNotFoundError(f"{out} holds no finished pretrained model (model.safetensors)")
    reset_chat(out)  # the SFT stage's base is the pretrained model in out itself
    kind = "smoke" if smoke else "speedrun"
    model_len = int(read_json(out / "config.json")["max_seq_len"])

    def fit(cfg: Any, base: Path) -> Any:  # the preset, on this base, within its context
        seq = min(cfg.data.max_seq_len, model_len)
        return cfg.override({"model": {"base": str(base)}, "data": {"max_seq_len": seq}})

    done: dict[str, Any] = {"sft": None, "dpo": None, "eval": None, "chat": None}
    sft_cfg = fit(sft.get_preset(f"sft-{kind}"), out)
    done["sft"] = sft.run(sft_cfg, out / "sft", fresh=fresh, on_event=on_event, control=control,
                          command=command)  # fmt: skip
    if done["sft"].status != "complete":
        return done
    dpo_cfg = fit(dpo.get_preset(f"dpo-{kind}"), out / "sft")
    done["dpo"] = dpo.run(dpo_cfg, out / "dpo", fresh=fresh, on_event=on_event, control=control,
                          command=command)  # fmt: skip
    if done["dpo"].status != "complete":
        return done
    done["eval"] = evaluate(out, smoke=smoke, fresh=fresh, on_event=on_event, control=control,
                            command=command)  # fmt: skip
    if done["eval"].status != "complete":
        return done
    parts: dict[str, float] = {}
    with one_thread():  # measured under load: 2 threads 72.5 s + 5.2 s, 1 thread 30 s + 0.1 s
        t0 = time.perf_counter()
        stages = evaluate_stages(out)
        parts["evaluation per stage"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        transcripts = chat_transcripts(out / CHAT_STAGE)
        parts["chat transcripts"] = time.perf_counter() - t0
    suite = RunDir(out / "dpo" / "eval").load_stages()
    parts["evaluation suite"] = sum(float(s.get("seconds", 0.0)) for s in suite.values())
    post = {"budget": budget, "parts": parts, "stages": stages, "transcripts": transcripts}
    atomic_write_json(out / POSTTRAIN_FILE, post)
    done["chat"] = make_chat_ready(out)
    write_report_card(out, done["eval"])
    if on_event is not None:
        on_event("stage", {"name": "speedrun", "status": "complete", "chat": str(done["chat"])})
    return done


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
    fresh: bool = False,
    on_event: EventFn | None = None,
    control: LoopControl | None = None,
    command: str | None = None,
) -> eval_stage.EvalRunResult:
    """Run (or resume; ``fresh`` restarts) the fixed evaluation suite (:data:`EVAL_TASKS`,
    first :data:`EVAL_LIMIT` examples each, :data:`EVAL_LIMIT_SMOKE` with ``smoke``) on the DPO
    model in ``out/dpo`` into ``out/dpo/eval``. Tasks whose data files are missing are left
    out (:func:`available_tasks`). The suite runs on one CPU thread (the thread count is
    restored afterwards): on the shared 2-core machine the 50-example suite took 3.2 s on one
    thread and 25–112 s on two, waiting on busy cores. No finished DPO model, or no data for
    any task → FileNotFoundError."""
    out = Path(out)
    if not (out / "dpo" / "model.safetensors").is_file():
        raise FileNotFoundError(f"{out / 'dpo'} holds no finished DPO model (model.safetensors)")
    limit = EVAL_LIMIT_SMOKE if smoke else EVAL_LIMIT
    tasks = available_tasks(EVAL_TASKS, limit)
    if not tasks:
        raise FileNotFoundError(f"none of the evaluation suite's data is here ({EVAL_TASKS}); "
                                "set G2C_DATA_DIR (see g2c data)")  # fmt: skip
    cfg = eval_stage.EvalConfig(model=str(out / "dpo"), tasks=tasks, limit=limit)
    with one_thread():
        return eval_stage.run(cfg, out / "dpo" / "eval", fresh=fresh, on_event=on_event,
                              control=control, command=command)  # fmt: skip


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one torch CPU thread, restoring the count afterwards: a 1M-parameter
    model's evaluation does not gain from a second thread on a busy 2-core machine, it waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _pad_id(tokenizer: Any) -> int:
    special = tokenizer.special_to_id
    return next((int(special[t]) for t in ("<|pad|>", "<|endoftext|>") if t in special), 0)


@torch.no_grad()
def evaluate_stages(out: str | Path, *, reuse_base: bool = True) -> dict[str, dict[str, Any]]:
    """Base, SFT and DPO of the speedrun in ``out`` on the same data → ``{"base" | "sft" |
    "dpo": {...}}`` with

    - ``val_loss`` (nats/token), ``val_tokens``, ``val_bpb``: the pretrain stage's evaluation
      (``g2c.training.stream_loss`` over the first ``EVAL_MAX_TOKENS`` of ``out/val.bin`` in
      windows of the pretraining context, bits per byte over the whole split's bytes) run on
      each stage's model — the base's is the pretraining evaluation row's (read back from the
      manifest with ``reuse_base``, the default; scored again without);
    - ``task_accuracy`` and ``task_accuracy_per_family``: exact match, greedy, on the held-out
      generated tasks the stages scored (the SFT stage's baseline is the base's);
    - ``preference_accuracy``: the share of DPO's held-out pairs (``out/dpo/pairs.json``) whose
      chosen answer has the higher summed log-probability under the model (reference-free);
    - for DPO also ``reward_accuracy`` and ``reward_margin``: its held-out implicit-reward
      accuracy and margin against the SFT reference (the DPO stage's own metrics).

    Each model is read with ``load_model(..., follow_chat=False)`` (the root is the base even
    when chat-ready). Missing stage directories → FileNotFoundError."""
    out = Path(out)
    rd = RunDir(out)
    val_ids = load_token_ids(rd.val_ids)
    val_bytes = rd.load_stages().get("tokenizer", {}).get("val_bytes")
    train = read_json(rd.run_config)["train"]
    ctx, batch = int(train["context_length"]), int(train["batch_size"])
    template_choice = read_json(out / "sft" / "run_config.json")["model"]["template"]
    pair_len = int(read_json(out / "dpo" / "run_config.json")["data"]["max_seq_len"])
    pairs = read_json(out / "dpo" / "pairs.json")["heldout"]
    m_sft = read_manifest(out / "sft").get("metrics", {})
    m_dpo = read_manifest(out / "dpo").get("metrics", {})
    tasks = {
        "base": (m_sft.get("baseline_task_accuracy"), m_sft.get("baseline_task_accuracy_per_family")),
        "sft": (m_sft.get("task_accuracy"), m_sft.get("task_accuracy_per_family")),
        "dpo": (m_dpo.get("task_accuracy"), m_dpo.get("task_accuracy_per_family")),
    }  # fmt: skip
    scored = read_manifest(out).get("metrics", {})  # the pretraining evaluation of the base
    result: dict[str, dict[str, Any]] = {}
    for name, sub in STAGES.items():
        loaded = load_model(out / sub if sub else out, follow_chat=False)
        model, tok = loaded.model.eval(), loaded.tokenizer
        if name == "base" and reuse_base and scored.get("val_tokens_evaluated"):
            ev = {"loss": scored["val_loss"], "tokens": scored["val_tokens_evaluated"]}
        else:
            ev = stream_loss(model, val_ids, ctx, batch_size=batch, max_tokens=EVAL_MAX_TOKENS)
        bpb = bits_per_byte(ev["loss"], val_ids.numel(), val_bytes) if val_bytes else None
        entry: dict[str, Any] = {"val_loss": ev["loss"], "val_tokens": ev["tokens"],
                                 "val_bpb": bpb, "task_accuracy": tasks[name][0],
                                 "task_accuracy_per_family": tasks[name][1] or {}}  # fmt: skip
        if pairs:
            template = sft.choose_template(template_choice, sft.model_chat_template(loaded), tok)
            examples = encode_preference_pairs(pairs, tok, template=template)
            lp = precompute_ref_logprobs(model, examples, pair_len, _pad_id(tok), batch_size=16)
            entry["preference_accuracy"] = float((lp[:, 0] > lp[:, 1]).float().mean())
            entry["preference_pairs"] = len(examples)
        if name == "dpo":
            entry["reward_accuracy"] = m_dpo.get("heldout_preference_accuracy")
            entry["reward_margin"] = m_dpo.get("heldout_reward_margin")
        result[name] = entry
    return result


def chat_transcripts(
    model_dir: str | Path,
    prompts: Sequence[str] = CHAT_PROMPTS,
    *,
    max_new_tokens: int = CHAT_MAX_TOKENS,
) -> list[dict[str, Any]]:
    """The model in ``model_dir`` answers each of ``prompts`` (a fresh one-turn conversation
    each) through its chat template (``g2c.sft.chat.template_for``: g2c's ``ChatTemplate`` for
    a g2c run), greedy, at most ``max_new_tokens`` tokens → ``[{"prompt", "reply", "tokens",
    "finish_reason"}]`` (a prompt longer than the model's context is answered by a note saying
    so, finish reason "context"). An empty ``prompts`` or a prompt that is not a non-empty
    string → ValueError."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    if not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"prompts must be non-empty strings, got {list(prompts)!r}")
    loaded = load_model(model_dir, follow_chat=False)
    session = ChatSession(loaded.model, loaded.tokenizer, _template_for(loaded), temperature=0.0,
                          top_p=None, max_new_tokens=max_new_tokens, seed=0)  # fmt: skip
    out = []
    for prompt in prompts:
        session.clear()
        try:
            reply, info = session.reply(prompt).strip(), session.last_turn
        except ValueError:  # the prompt does not fit the model's context (the smoke model)
            reply, info = "(prompt longer than the model's context)", None
        out.append({"prompt": prompt, "reply": reply,
                    "tokens": getattr(info, "reply_tokens", None),
                    "finish_reason": getattr(info, "finish_reason", "context")})  # fmt: skip
    return out


def _template_for(loaded: Any) -> Any:
    from_stage = sft.model_chat_template(loaded)
    return sft.choose_template("auto", from_stage, loaded.tokenizer)


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)  # no second copy of the weights where the filesystem allows it
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def make_chat_ready(out: str | Path, stage: str = CHAT_STAGE) -> Path:
    """Make the run directory ``out`` load as its ``stage`` model: ``out/base`` gets the
    pretrained model's :data:`BASE_FILES` (hard links, copies where links fail) and its
    manifest (named ``<name>-base``; every g2c command reads ``out/base`` as the base), then
    ``out/chat.json`` = ``{"chat_model": stage, "base_model": "base"}`` is written atomically.
    Returns the pointer's path. ``stage`` without a finished model → FileNotFoundError."""
    out = Path(out)
    if not (out / stage / "model.safetensors").is_file():
        raise FileNotFoundError(f"{out / stage} holds no finished model (model.safetensors)")
    base = out / BASE_ALIAS
    base.mkdir(exist_ok=True)
    for name in BASE_FILES:
        _link_or_copy(out / name, base / name)
    manifest = read_manifest(out)  # the base's own, renamed: `g2c models list` tells them apart
    name = f"{manifest.get('name') or out.name}-base"
    atomic_write_json(
        base / MANIFEST_NAME, {**manifest, "name": name, "alias_of": str(out.resolve())}
    )
    pointer = {"format": "g2c.chat", "chat_model": stage, "base_model": BASE_ALIAS,
               "stages": [s or "." for s in STAGES.values()]}  # fmt: skip
    return atomic_write_json(out / CHAT_POINTER_FILE, pointer)


def _pct(x: Any) -> str:
    return f"{100 * x:.0f} %" if isinstance(x, (int, float)) else "–"


def _num(x: Any, spec: str = ".3f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else "–"


def stage_eval_section(stages: dict[str, dict[str, Any]]) -> list[str]:
    """The report card's evaluation per stage (:func:`evaluate_stages`' result) as Markdown."""
    names = [n for n in STAGES if n in stages]
    head = " | ".join({"base": "base", "sft": "SFT", "dpo": "DPO"}[n] for n in names)

    def row(label: str, key: str, fmt: Any) -> str:
        return f"| {label} | " + " | ".join(fmt(stages[n].get(key)) for n in names) + " |"

    first = stages[names[0]]
    lines = [
        STAGE_EVAL_SECTION,
        "",
        "The same data for every stage's model ([sft/report.md](sft/report.md), "
        "[dpo/report.md](dpo/report.md)):",
        "",
        f"| metric | {head} |",
        "|---|" + "---:|" * len(names),
        row(f"val bits per byte (pretraining validation, {first.get('val_tokens', 0):,} tokens)",
            "val_bpb", _num),
        row("val loss (nats/token)", "val_loss", _num),
        row("held-out task accuracy (exact match, greedy)", "task_accuracy", _pct),
    ]  # fmt: skip
    families = list(dict.fromkeys(f for n in names for f in stages[n]["task_accuracy_per_family"]))
    for fam in families:
        vals = " | ".join(_pct(stages[n]["task_accuracy_per_family"].get(fam)) for n in names)
        lines.append(f"| · {fam} | {vals} |")
    if "preference_accuracy" in first:
        lines.append(row(f"preference accuracy (log p(chosen) > log p(rejected), "
                         f"{first.get('preference_pairs')} held-out DPO pairs)",
                         "preference_accuracy", _pct))  # fmt: skip
    lines += [
        row("DPO reward accuracy (implicit reward vs the SFT reference)", "reward_accuracy",
            _pct),
        row("DPO reward margin (held out)", "reward_margin", lambda x: _num(x, ".2f")),
        "",
    ]  # fmt: skip
    return lines


def transcript_section(transcripts: list[dict[str, Any]]) -> list[str]:
    """The report card's chat transcripts as Markdown (one fenced block)."""
    lines = [TRANSCRIPT_SECTION, "",
             f"The final ({CHAT_STAGE.upper()}) model through its chat template, greedy, at most "
             f"{CHAT_MAX_TOKENS} tokens, one fresh conversation per prompt:", "", "```text"]  # fmt: skip
    for t in transcripts:
        reply = t["reply"].replace("```", "` ` `")
        lines += [f"you> {t['prompt']}", f"assistant> {reply}", ""]
    if lines[-1] == "":
        lines.pop()
    return [*lines, "```", ""]


def eval_suite_section(out: Path, result: eval_stage.EvalRunResult) -> list[str]:
    """The report card's evaluation suite section: the suite's metrics table for the DPO model
    (:func:`g2c.runs.eval.metrics_table`), its plots, a link to the eval stage's report."""
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
    lines += [f"![{p}]({rel}/{p})" for p in (r.get("plot") for r in result.results.values()) if p]
    lines += ["", f"Rerun or extend it: `g2c eval {out / 'dpo'} --tasks {','.join(EVAL_TASKS)} "
              f"--limit {n}`.", ""]  # fmt: skip
    return lines


def write_report_card(out: str | Path, suite: eval_stage.EvalRunResult | None = None) -> Path:
    """Regenerate ``out/report.md`` (:func:`g2c.runs.report.write_report`) with the
    post-training: the stage rows, the evaluation per stage and the chat transcripts from
    ``out/posttrain.json``, the evaluation ``suite`` when given, and — the root being
    chat-ready — the two commands at the end."""
    out = Path(out)
    post = read_json(out / POSTTRAIN_FILE) if (out / POSTTRAIN_FILE).is_file() else {}
    evaluation = [stage_eval_section(post["stages"])] if post.get("stages") else []
    sections = [transcript_section(post["transcripts"])] if post.get("transcripts") else []
    if suite is not None:
        sections.append(eval_suite_section(out, suite))
    return write_report(out, evaluation=evaluation, sections=sections)
