"""The evaluation stage behind ``g2c eval``: one model, several tasks, one results directory.

``run(config, out)`` follows the stage skeleton (:mod:`g2c.runs.stage`):

1. **validate** before any write: the config (:class:`EvalConfig`: task names against the
   registry — unknown names are listed with the known ones —, limit, shots, budgets), the gate
   file when given (:func:`g2c.eval.gate.load_gate`: syntax, tasks in ``tasks``), then the model
   (:func:`load_evaluated`: a run directory, a run name, a LoRA run, ``"smollm2"``; it must
   come with a tokenizer) and the output directory (never the model's own directory).
2. **open** the output directory: same settings → resume; other settings → ValueError (pass
   ``fresh``). The task list may grow between sessions: the finished tasks are kept.
3. **parts**: ``load`` (the model), then one part per task. Every scored example is appended
   to ``records.jsonl`` at once (task, index, prompt, prediction, correct, confidence, the
   scorer's details), so an interrupted run (Ctrl-C, a kill, ``control.should_stop``) loses
   nothing: the next session reads the records back and scores only the rest. After each
   task ``results.json`` is rewritten (atomic) with every finished task's metrics, prompt
   format and records, and a reliability diagram ``reliability_<task>.png`` is drawn for a
   multiple-choice task.
4. **manifest** (format ``g2c.eval``, ``parent`` = the model), 5. **report** ``report.md``
   (a metrics table per task, the stage table, the gate verdict).

Multiple-choice tasks come from :mod:`g2c.eval.tasks` (log-likelihood scoring,
:func:`g2c.eval.scoring.run_multiple_choice_eval`); generation tasks (``gsm8k``,
``g2c_tasks``, ``ifeval``, ``humaneval``, ``refusal``, ``alpaca_eval``) are answered greedily
through :func:`g2c.eval.generation.model_generator` with the model's chat template when it has
one (its own Jinja template — SmolLM2 —, or g2c's for a g2c SFT/DPO run), else as plain text;
``alpaca_eval`` is judged by the model itself or by ``judge`` (:mod:`g2c.eval.judge`).
``perplexity`` scores held-out text with the model's likelihood
(:mod:`g2c.eval.perplexity`; lower-is-better metrics, gated with ``metric = {max = X}``).
Library code: events go to ``on_event``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import append_jsonl, atomic_write_json, atomic_write_text, g2c_home
from g2c.eval import tasks as mc_tasks
from g2c.eval.core import EvalResult, MultipleChoiceExample
from g2c.eval.gate import GateFailure, check_gate, load_gate
from g2c.eval.generation import GenerationTask, GSM8KTask, SFTTasksTask, model_generator
from g2c.eval.humaneval import HumanEvalTask
from g2c.eval.ifeval import IFEvalTask
from g2c.eval.judge import AlpacaEvalTask
from g2c.eval.perplexity import PerplexityTask
from g2c.eval.plots import reliability_diagram
from g2c.eval.safety import RefusalTask
from g2c.eval.scoring import run_multiple_choice_eval
from g2c.runs.sft import BASE_NAMES, choose_template, load_any, model_chat_template
from g2c.runs.stage import EventFn, Stage, check, environment, stage_table
from g2c.sft import ChatTemplate
from g2c.training import LoopControl

EVAL_FORMAT = "g2c.eval"
DEVICES = ("cpu", "cuda", "mps")
RECORDS = "records.jsonl"
RESULTS = "results.json"
#: Generation tasks by name (multiple-choice ones come from g2c.eval.tasks).
GENERATION_TASKS: dict[str, type[GenerationTask]] = {
    "gsm8k": GSM8KTask, "g2c_tasks": SFTTasksTask, "ifeval": IFEvalTask,
    "humaneval": HumanEvalTask, "refusal": RefusalTask, "alpaca_eval": AlpacaEvalTask,
}  # fmt: skip
#: Tasks scored by the model's own likelihood of a text (no generation, no choices).
MODEL_TASKS: dict[str, type[PerplexityTask]] = {"perplexity": PerplexityTask}
#: The multiple-choice metrics a gate may set a minimum for (``mc2`` only for TruthfulQA-MC2);
#: ``ece``, ``mean_confidence`` (and a generation task's ``hit_max_tokens``) are reported but
#: not gated: a minimum makes no sense for them.
MC_METRICS = ("acc", "acc_norm", "acc_bytes", "mc2", "accuracy")


# -- the task registry --------------------------------------------------------------------------
def known_tasks() -> list[str]:
    """The task names ``g2c eval --tasks`` accepts, for listings: multiple choice (MMLU's
    subjects summarised as ``mmlu_<subject>``), then generation, then perplexity."""
    return [*mc_tasks.task_names(), *GENERATION_TASKS, *MODEL_TASKS]


def is_task(name: str) -> bool:
    """True when ``name`` is a registered task (an MMLU subject included)."""
    return name in GENERATION_TASKS or name in MODEL_TASKS or name in mc_tasks.TASKS


def get_task(name: str) -> Any:
    """The task object for ``name`` (a multiple-choice task or a :class:`GenerationTask`)."""
    if name in GENERATION_TASKS:
        return GENERATION_TASKS[name]()
    if name in MODEL_TASKS:
        return MODEL_TASKS[name]()
    if name in mc_tasks.TASKS:
        return mc_tasks.get_task(name)
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(known_tasks())}")


def task_metric_names(name: str) -> tuple[str, ...]:
    """The metrics of task ``name`` a gate may set a bound for (see
    :func:`task_lower_is_better` for those that take ``{max = X}``)."""
    if name in GENERATION_TASKS:
        return GENERATION_TASKS[name]().metric_names
    if name in MODEL_TASKS:
        return MODEL_TASKS[name].metric_names
    return MC_METRICS


def task_lower_is_better(name: str) -> tuple[str, ...]:
    """The metrics of task ``name`` where lower is better (bits per byte, perplexity,
    over-refusal ...): a gate gives them a maximum, ``metric = {max = X}``."""
    task = GENERATION_TASKS.get(name) or MODEL_TASKS.get(name)
    return tuple(getattr(task, "lower_is_better", ())) if task is not None else ()


def _is_mc(task: Any) -> bool:
    return not isinstance(task, (GenerationTask, PerplexityTask))


def _kind(task: Any) -> str:
    return "multiple_choice" if _is_mc(task) else task.kind


# -- the configuration --------------------------------------------------------------------------
@dataclasses.dataclass
class EvalConfig:
    """What ``g2c eval`` evaluates. Validated on construction (ValueError naming the field):

    - ``model``: a run directory, a run name under ``$G2C_HOME``, or ``"smollm2"``.
    - ``tasks``: task names (see :func:`known_tasks`), at least one, no repeats.
    - ``limit``: the first N examples of each task (None = all).
    - ``shots``: in-context examples for tasks that take them (multiple choice, GSM8K).
    - ``seed``: picks the shots (and the generated tasks' items).
    - ``max_new_tokens``: generation budget for every generation task (None = each task's).
    - ``batched``: multiple-choice fast path (shared context once, choices as one batch).
    - ``device``: where the model runs.
    - ``judge``: the model that judges ``alpaca_eval`` (a MODEL spec as ``model``; None =
      the evaluated model judges itself). Only with ``alpaca_eval`` in ``tasks``.
    """

    model: str
    tasks: list[str]
    limit: int | None = None
    shots: int = 0
    seed: int = 1234
    max_new_tokens: int | None = None
    batched: bool = True
    device: str = "cpu"
    judge: str | None = None

    def __post_init__(self) -> None:
        check(isinstance(self.model, str) and bool(self.model.strip()), "model",
              "give a run directory, a run name or 'smollm2'")  # fmt: skip
        if isinstance(self.tasks, str):
            self.tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        self.tasks = list(self.tasks)
        check(
            bool(self.tasks), "tasks", f"name at least one task; known: {', '.join(known_tasks())}"
        )
        unknown = [t for t in self.tasks if not isinstance(t, str) or not is_task(t)]
        check(not unknown, "tasks",
              f"unknown task {unknown[0] if unknown else ''!r}; known tasks: "
              f"{', '.join(known_tasks())}")  # fmt: skip
        check(len(set(self.tasks)) == len(self.tasks), "tasks", f"repeated names in {self.tasks}")
        bounds = {"limit": 1, "shots": 0, "max_new_tokens": 1, "seed": 0}
        for name, low in bounds.items():
            v = getattr(self, name)
            if v is None and name in ("limit", "max_new_tokens"):
                continue
            check(isinstance(v, int) and not isinstance(v, bool) and v >= low, name,
                  f"must be an integer >= {low}, got {v!r}")  # fmt: skip
        check(isinstance(self.device, str) and self.device.split(":")[0] in DEVICES, "device",
              f"must be one of {list(DEVICES)} (cuda:N for one GPU), got {self.device!r}")  # fmt: skip
        if self.device.startswith("cuda"):
            check(torch.cuda.is_available(), "device", "CUDA is not available on this machine")
        if self.device == "mps":
            check(torch.backends.mps.is_available(), "device", "MPS is not available here")
        if self.judge is not None:
            check(isinstance(self.judge, str) and bool(self.judge.strip()), "judge",
                  "give a run directory, a run name or 'smollm2'")  # fmt: skip
            check("alpaca_eval" in self.tasks, "judge",
                  "a judge is only used by the alpaca_eval task; add it to tasks")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the fields."""
        return dataclasses.asdict(self)


def _comparable(d: dict) -> dict:
    """What must match to resume: everything but the task list and the device (and an unset
    judge, so results written before the field existed resume)."""
    return {k: v for k, v in d.items()
            if k not in ("tasks", "device") and not (k == "judge" and v is None)}  # fmt: skip


# -- the model ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Evaluated:
    """A loaded model to evaluate: ``model`` (eval mode), ``tokenizer``, ``template`` (the chat
    template generation uses, or None: plain text), ``parent`` (path or name), ``name``."""

    model: Any
    tokenizer: Any
    template: Any
    parent: str
    name: str


def load_evaluated(spec: str, *, device: str = "cpu") -> Evaluated:
    """Load ``spec`` (a run directory, run name, LoRA run or ``"smollm2"``) with its tokenizer
    and chat template. Nothing there → FileNotFoundError naming MODEL; no tokenizer →
    ValueError."""
    try:
        path, loaded, _ = load_any(spec, device=device)
    except FileNotFoundError as exc:
        msg = str(exc).replace("model.base: ", "")
        raise FileNotFoundError(f"MODEL: {msg}") from None
    tok = loaded.tokenizer
    if tok is None or not callable(getattr(tok, "encode", None)):
        raise ValueError(f"MODEL: {spec} comes without a tokenizer; evaluation needs one to "
                         "encode prompts (a g2c run with tokenizer.json, or smollm2)")  # fmt: skip
    own = model_chat_template(loaded)
    manifest = loaded.manifest or {}
    template = None
    if own is not None:
        template = choose_template("model", own, tok)
    elif manifest.get("template") == "ChatTemplate" and isinstance(
        getattr(tok, "special_to_id", None), dict
    ):
        template = ChatTemplate()
        template.check_tokenizer(tok, template.required_tokens)
    parent = str(path.resolve()) if path.exists() else spec
    name = str(manifest.get("name") or (path.stem if path.exists() else spec))
    return Evaluated(loaded.model.eval(), tok, template, parent, name)


def default_out(spec: str) -> Path:
    """``<run directory>/eval`` for a run directory, else ``$G2C_HOME/eval/<name>``."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return p / "eval"
    return g2c_home() / "eval" / (spec.lower() if spec.lower() in BASE_NAMES else spec)


def _check_out(out: Path, ev: Evaluated) -> None:
    """The output directory must not be (or hold) a model: clearing it would delete one."""
    same = Path(ev.parent).exists() and out.resolve() == Path(ev.parent).resolve()
    check(not same and not (out / "model.safetensors").exists(), "out",
          f"{out} holds a model; evaluation results go to a directory of their own "
          "(default: <run>/eval)")  # fmt: skip


# -- records ------------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=lambda o: repr(o)))


def _record(task: str, index: int, example: Any, result: EvalResult) -> dict[str, Any]:
    """One line of ``records.jsonl``."""
    meta = {k: v for k, v in result.metadata.items()}
    rec = {"task": task, "index": index, "id": example.metadata.get("id"),
           "prompt": example.prompt, "prediction": result.prediction,
           "correct": bool(result.correct), "confidence": result.confidence}  # fmt: skip
    if isinstance(example, MultipleChoiceExample) and isinstance(result.prediction, int):
        rec["prediction_text"] = example.choices[result.prediction]
        rec["answer_idx"] = example.answer_idx
    rec["metadata"] = _jsonable(meta)
    return rec


def read_records(path: Path, task: str, n: int) -> dict[int, EvalResult]:
    """Finished examples of ``task`` (index < ``n``) from ``records.jsonl`` → index →
    :class:`EvalResult` (a torn last line from a hard kill is skipped)."""
    done: dict[int, EvalResult] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("task") == task and isinstance(r.get("index"), int) and r["index"] < n:
            done[r["index"]] = EvalResult(bool(r["correct"]), r["prediction"], r["confidence"],
                                          r.get("metadata") or {})  # fmt: skip
    return done


class _Stopped(Exception):
    """Raised inside a task's loop when ``control.should_stop`` says so."""


# -- one task -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Prepared:
    """A task ready to run: ``name``, ``task`` object, its ``examples``, ``prompt_format``."""

    name: str
    task: Any
    examples: list
    prompt_format: dict[str, Any]


def prepare_task(name: str, cfg: EvalConfig) -> Prepared:
    """Build task ``name``'s examples and prompt format for ``cfg`` (reads its data files:
    a missing or malformed file, too many shots → errors here, before any write)."""
    task = get_task(name)
    if _is_mc(task):
        examples = task.examples(cfg.limit, cfg.seed, shots=cfg.shots)
        fmt = task.describe(shots=cfg.shots, seed=cfg.seed, limit=cfg.limit)
    else:
        shots = cfg.shots if task.takes_shots else 0
        examples = task.examples(cfg.limit, cfg.seed, shots)
        fmt = task.prompt_format(shots)
    check(bool(examples), "tasks", f"task {name} has no examples")
    return Prepared(name, task, examples, fmt)


def evaluate_task(
    prep: Prepared,
    ev: Evaluated,
    cfg: EvalConfig,
    records: Path,
    *,
    emit: EventFn,
    control: LoopControl | None = None,
    counter: list[int] | None = None,
) -> dict[str, Any]:
    """Evaluate one prepared task, appending each new example to ``records`` and resuming
    from it → ``{"kind", "metrics", "prompt_format", "n", "records"}``.
    ``control.should_stop(k)`` (k = examples scored this session) → the task stops (finished
    examples are kept)."""
    counter = counter if counter is not None else [0]
    name, task, examples, fmt = prep.name, prep.task, prep.examples, prep.prompt_format
    done = read_records(records, name, len(examples))
    emit("task", {"name": name, "total": len(examples), "done": len(done),
                  "kind": _kind(task)})  # fmt: skip

    def on_result(i: int, result: EvalResult) -> None:
        append_jsonl(records, _record(name, i, examples[i], result))
        counter[0] += 1
        if control is not None and control.should_stop(counter[0]):
            raise _Stopped

    def progress(k: int, total: int) -> None:
        emit("example", {"task": name, "done": k, "total": total})

    if _is_mc(task):
        report = run_multiple_choice_eval(
            ev.model, ev.tokenizer, examples, task_name=name, batched=cfg.batched,
            metadata={"prompt_format": fmt}, completed=done, on_result=on_result,
            progress=progress,
        )  # fmt: skip
        results, metrics = report.results, dict(report.metrics)
    elif isinstance(task, PerplexityTask):
        results = []
        for i, ex in enumerate(examples):
            r = done.get(i)
            if r is None:
                r = task.evaluate_model(ev.model, ev.tokenizer, ex)
                on_result(i, r)
            results.append(r)
            progress(i + 1, len(examples))
        metrics = task.metrics(results)
    else:
        generate = model_generator(ev.model, ev.tokenizer, ev.template)
        results = []
        for i, ex in enumerate(examples):
            r = done.get(i)
            if r is None:
                r = task.evaluate(generate, ex, cfg.max_new_tokens)
                on_result(i, r)
            results.append(r)
            progress(i + 1, len(examples))
        metrics = task.metrics(results)
    rows = []
    for i, (ex, r) in enumerate(zip(examples, results)):
        row = _record(name, i, ex, r)
        del row["task"], row["metadata"]
        rows.append(row)
    return {"kind": _kind(task), "metrics": metrics, "prompt_format": _jsonable(fmt),
            "n": len(examples), "records": _jsonable(rows)}  # fmt: skip


# -- the whole stage ----------------------------------------------------------------------------
@dataclasses.dataclass
class EvalRunResult:
    """What :func:`run` returns: ``status`` ("complete" | "interrupted"), ``out``,
    ``results`` (task → its entry in ``results.json``), ``gate_failures`` (None without a
    gate; [] = passed)."""

    status: str
    out: Path
    results: dict[str, dict]
    gate_failures: list[GateFailure] | None = None

    def metrics(self) -> dict[str, dict[str, float]]:
        """Task → metric → value."""
        return {t: r["metrics"] for t, r in self.results.items()}


def validate(
    config: EvalConfig, out: str | Path | None, gate: str | Path | None
) -> tuple[EvalConfig, Evaluated, Path, list[Prepared]]:
    """Re-validate the config, read the gate file, build every task's examples, load the
    model, choose and check ``out``. Nothing is written; bad input → ValueError /
    FileNotFoundError naming it."""
    if not isinstance(config, EvalConfig):
        raise TypeError(f"config must be an EvalConfig, got {type(config).__name__}")
    cfg = EvalConfig(**config.to_dict())
    if gate is not None:
        load_gate(gate, {t: task_metric_names(t) for t in cfg.tasks},
                  lower_is_better=_lower(cfg.tasks))  # fmt: skip
    prepared = [prepare_task(name, cfg) for name in cfg.tasks]
    ev = load_evaluated(cfg.model, device=cfg.device)
    if cfg.judge is not None:
        judge = load_evaluated(cfg.judge, device=cfg.device)
        for prep in prepared:
            if isinstance(prep.task, AlpacaEvalTask):
                prep.task.judge = model_generator(judge.model, judge.tokenizer, judge.template)
                prep.task.judge_name = judge.parent
                prep.prompt_format["judge"] = judge.parent
    out_dir = Path(out) if out is not None else default_out(cfg.model)
    _check_out(out_dir, ev)
    return cfg, ev, out_dir, prepared


def run(
    config: EvalConfig,
    out: str | Path | None = None,
    *,
    gate: str | Path | None = None,
    fresh: bool = False,
    on_event: EventFn | None = None,
    control: LoopControl | None = None,
    command: str | None = None,
) -> EvalRunResult:
    """Evaluate ``config.model`` on ``config.tasks`` into ``out`` (default :func:`default_out`);
    see the module docstring. ``gate``: a TOML file of minimums, checked at the end
    (:func:`g2c.eval.gate.check_gate`; the verdict goes to results.json and report.md).

    Events: "stage" (parts), "task" (``name``, ``total``, ``done`` already finished, ``kind``)
    and "example" (``task``, ``done``, ``total``). ``control.should_stop(k)`` is consulted
    after each newly scored example → status "interrupted"; running again resumes.
    """
    cfg, ev, out_dir, prepared = validate(config, out, gate)
    stage = Stage(out_dir, "eval", on_event)
    rd = stage.rd
    prior = stage.open(cfg.to_dict(), fresh=fresh, comparable=_comparable)
    if prior is None:
        for f in (RECORDS, RESULTS, *(p.name for p in out_dir.glob("reliability_*.png"))):
            (out_dir / f).unlink(missing_ok=True)
    stage.save_config({**cfg.to_dict(), "tasks": list(dict.fromkeys(
        [*(prior or {}).get("tasks", []), *cfg.tasks]))})  # fmt: skip
    records = out_dir / RECORDS
    stored = rd.read_json(out_dir / RESULTS) or {}
    results: dict[str, dict] = {t: r for t, r in stored.get("tasks", {}).items() if t in cfg.tasks}
    counter = [0]
    try:
        for prep in prepared:
            name = prep.name
            try:
                with stage.part(name) as info:
                    entry = evaluate_task(prep, ev, cfg, records, emit=stage.emit,
                                          control=control, counter=counter)  # fmt: skip
                    scored = [r for r in entry["records"] if r["confidence"] is not None]
                    if entry["kind"] == "multiple_choice" and scored:  # skipped: no confidence
                        confs = [r["confidence"] for r in scored]
                        oks = [r["correct"] for r in scored]
                        reliability_diagram(confs, oks, out_dir / f"reliability_{name}.png",
                                            title=name)  # fmt: skip
                        entry["plot"] = f"reliability_{name}.png"
                    m = entry["metrics"]
                    info.update(n=entry["n"], acc=m.get("acc", m.get("pass@1")))
            except _Stopped:
                write_results(out_dir, cfg, ev, results, None, gate)
                return EvalRunResult("interrupted", out_dir, results)
            results[name] = entry
            write_results(out_dir, cfg, ev, results, None, gate)
        failures = None
        if gate:
            failures = check_gate(EvalRunResult("", out_dir, results).metrics(), gate,
                                  lower_is_better=_lower(cfg.tasks))  # fmt: skip
        stage.end_session()
        write_results(out_dir, cfg, ev, results, failures, gate)
        stage.write_manifest(
            EVAL_FORMAT, parent=ev.parent, name=f"{ev.name}-eval", status="complete",
            tasks=cfg.tasks, metrics={t: r["metrics"] for t, r in results.items()},
            run_config=cfg.to_dict(), chat_template=_template_name(ev),
            environment=environment(cfg.device, None, command),
        )  # fmt: skip
        write_report(out_dir, stage, cfg, ev, results, failures, gate)
        return EvalRunResult("complete", out_dir, results, failures)
    finally:
        stage.end_session()


def _lower(tasks: Sequence[str]) -> dict[str, tuple[str, ...]]:
    return {t: task_lower_is_better(t) for t in tasks}


def write_results(out: Path, cfg: EvalConfig, ev: Evaluated, results: Mapping[str, dict],
                  failures: list[GateFailure] | None, gate: str | Path | None) -> Path:  # fmt: skip
    """``results.json`` (atomic): model, config, every finished task, the gate verdict."""
    doc: dict[str, Any] = {"model": ev.parent, "name": ev.name, "config": cfg.to_dict(),
                           "chat_template": _template_name(ev),
                           "records_file": RECORDS, "tasks": dict(results),
                           "written_unix": time.time()}  # fmt: skip
    if gate is not None and failures is not None:
        doc["gate"] = {"file": str(gate), "passed": not failures,
                       "failures": [dataclasses.asdict(f) for f in failures]}  # fmt: skip
    return atomic_write_json(out / RESULTS, doc)


def _template_name(ev: Evaluated) -> str | None:
    return type(ev.template).__name__ if ev.template is not None else None


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def metrics_table(results: Mapping[str, dict]) -> list[str]:
    """Markdown table: one row per task (n, acc / pass@1, acc_norm, ECE, other metrics)."""
    lines = [
        "| task | kind | n | acc | acc_norm | ECE | other |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for t, r in results.items():
        m = r["metrics"]
        acc = m.get("acc", m.get("pass@1"))
        shown = ("acc", "pass@1", "acc_norm", "ece", "accuracy")
        other = ", ".join(f"{k} {_fmt(v)}" for k, v in m.items() if k not in shown)
        lines.append(f"| {t} | {r['kind']} | {r['n']} | {_fmt(acc)} | {_fmt(m.get('acc_norm'))} "
                     f"| {_fmt(m.get('ece'))} | {other} |")  # fmt: skip
    return lines


def write_report(out: Path, stage: Stage, cfg: EvalConfig, ev: Evaluated,
                 results: Mapping[str, dict], failures: list[GateFailure] | None,
                 gate: str | Path | None) -> Path:  # fmt: skip
    """``report.md``: what was evaluated, the metrics table, the gate, plots, stage times."""
    tmpl = type(ev.template).__name__ if ev.template is not None else "none (plain text)"
    lines = [f"# Evaluation of {ev.name}", "",
             f"Model: `{ev.parent}` · chat template: {tmpl} · shots: {cfg.shots} · limit: "
             f"{cfg.limit or 'all'} · seed: {cfg.seed}", "", "## Results", "",
             *metrics_table(results), ""]  # fmt: skip
    if gate is not None and failures is not None:
        lines += ["## Gate", "", f"`{gate}`: " + ("passed" if not failures else
                  "FAILED — " + "; ".join(str(f) for f in failures)), ""]  # fmt: skip
    plots = [r["plot"] for r in results.values() if r.get("plot")]
    if plots:
        lines += ["## Calibration", "", *(f"![{p}]({p})" for p in plots), ""]
    lines += ["## Stages", "", *stage_table(stage.rd.load_stages(), [("n", "n", ""),
              ("acc", "acc", ".3f")], ("load",)), ""]  # fmt: skip
    return atomic_write_text(out / "report.md", "\n".join(lines))


def parse_tasks(text: str | Sequence[str]) -> list[str]:
    """``"openbookqa,gsm8k"`` → ``["openbookqa", "gsm8k"]``."""
    if isinstance(text, str):
        return [t.strip() for t in text.split(",") if t.strip()]
    return list(text)


__all__ = [
    "EVAL_FORMAT",
    "GENERATION_TASKS",
    "MODEL_TASKS",
    "EvalConfig",
    "EvalRunResult",
    "Evaluated",
    "Prepared",
    "default_out",
    "evaluate_task",
    "get_task",
    "is_task",
    "known_tasks",
    "load_evaluated",
    "metrics_table",
    "parse_tasks",
    "prepare_task",
    "read_records",
    "run",
    "task_lower_is_better",
    "task_metric_names",
    "validate",
    "write_report",
    "write_results",
]
