"""Shared by `g2c train` and `g2c speedrun`: config flags, stop signals, progress, summary.

Every field of the run's config dataclasses (``DataConfig``, ``TransformerConfig`` minus
``vocab_size``, ``TrainConfig``, ``RunSettings``) gets a flag named after it
(``--embedding-dim``, ``--max-lr``, ``--sample-every``...); values are parsed by the field's
type. Precedence: preset < ``--config`` file < flags. ``--help`` shows each field's effective
default: the chosen preset's value (``--preset X --help``; ``--config FILE`` and flags given
before ``--help`` are applied too), not the dataclass default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from g2c.artifacts import g2c_home
from g2c.cli._common import console, err_console, is_interactive, make_progress, set_threads
from g2c.runs.config import SECTIONS, RunConfig, apply_overrides, load_config_file, section_fields
from g2c.runs.rundir import RunDir
from g2c.runs.sft import parse_mixture
from g2c.training import LoopControl

_RUNTIME = {"device": "train.device", "seed": "train.seed"}  # runtime flags that map into train
_ALIASES = {"steps": "train.max_steps", "lr": "train.max_lr", "data": "data.corpus"}


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _converter(hint: Any):
    """An argparse ``type=`` function for a dataclass field's type hint."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = _converter(next(a for a in args if a is not type(None)))

        def optional(text: str):
            return None if text.lower() in ("none", "null") else inner(text)

        return optional
    if hint is bool:
        return _parse_bool
    if origin is list:
        return lambda text: [t.strip() for t in text.split(",") if t.strip()]
    if origin is tuple:
        return lambda text: [float(t) for t in text.split(",")]
    return hint


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


class _PresetHelp(argparse.Action):
    """``-h/--help`` that first fills each config flag's help with the effective default: the
    preset chosen so far (``base(namespace)``) with ``--config`` and earlier flags applied."""

    def __init__(self, option_strings, dest, base: Callable[[argparse.Namespace], Any], **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show this help (with the chosen preset's values) and exit", **kw)  # fmt: skip
        self.base = base

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        label = "preset"
        try:
            base = self.base(namespace)
            label = f"preset {base[0]}"
            cfg = resolve_config(namespace, base[1]).to_dict()
        except (ValueError, FileNotFoundError, TypeError):
            cfg = None
        for action in parser._actions:
            field = getattr(action, "config_field", None)
            if field is None:
                continue
            section, name = field
            if cfg is not None:
                value = cfg[section].get(name, section_fields(section)[name][1])
                action.help = f"{section}.{name} (default: {_shown(value)}, from {label})"
        parser.print_help()
        parser.exit()


def add_config_flags(
    p: argparse.ArgumentParser, base: Callable[[argparse.Namespace], tuple[str, RunConfig]]
) -> None:
    """Add a flag for every config field, ``--config FILE``, ``--show-config`` and a ``--help``
    that shows the defaults of the preset ``base(namespace) -> (name, RunConfig)`` picks
    (the parser must be created with ``add_help=False``)."""
    p.add_argument("-h", "--help", action=_PresetHelp, base=base)
    p.add_argument(
        "--config", default=None, help="TOML or JSON file with [data] [model] [train] [run]"
    )
    for section in SECTIONS:
        group = p.add_argument_group(f"{section} settings (override the preset and --config)")
        for name, (hint, _) in section_fields(section).items():
            if name in _RUNTIME and section == "train":
                continue
            action = group.add_argument(
                f"--{name.replace('_', '-')}", dest=f"{section}.{name}", type=_converter(hint),
                default=argparse.SUPPRESS, metavar=_metavar(hint),
                help=f"{section}.{name} (default: from the preset; --show-config shows it)",
            )  # fmt: skip
            action.config_field = (section, name)
    for alias, target in _ALIASES.items():
        section, name = target.split(".")
        hint = section_fields(section)[name][0]
        p.add_argument(f"--{alias}", dest=target, type=_converter(hint), default=argparse.SUPPRESS,
                       metavar=_metavar(hint), help=f"alias of --{name.replace('_', '-')}")  # fmt: skip
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")


def _metavar(hint: Any) -> str:
    name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    return name.upper().replace(" ", "")


def resolve_config(args: argparse.Namespace, base):
    """The RunConfig: ``base`` (a preset) < ``--config`` file < flags < runtime flags."""
    cfg = base
    if getattr(args, "config", None):
        cfg = apply_overrides(cfg, load_config_file(args.config))
    overrides: dict[str, dict] = {}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            overrides.setdefault(section, {})[name] = value
    train = overrides.setdefault("train", {})
    device, seed = getattr(args, "device", None), getattr(args, "seed", None)
    if device and device != "auto" and "device" not in train:
        train["device"] = device  # --device auto keeps the preset's / config file's choice
    if seed is not None and "seed" not in train and (cfg.train.seed is None or seed != 1337):
        train["seed"] = seed  # the default --seed does not override a config file's seed
    return apply_overrides(cfg, overrides) if overrides else cfg


@contextlib.contextmanager
def stop_on_signals():
    """Yield a ``should_stop(step) -> bool``: True after Ctrl-C (SIGINT) or SIGTERM.

    The first signal asks the run to checkpoint and stop after the current step; a second
    Ctrl-C raises KeyboardInterrupt at once. Handlers are restored on exit.
    """
    state = {"stop": False}

    def handler(signum, frame):
        if state["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        state["stop"] = True
        err_console.print(
            "\n[yellow]stopping after this step: writing a checkpoint (Ctrl-C again to abort)"
        )

    installed = {}
    with contextlib.suppress(ValueError):  # not the main thread: no handlers
        for sig in (signal.SIGINT, signal.SIGTERM):
            installed[sig] = signal.signal(sig, handler)
    try:
        yield lambda step: state["stop"]
    finally:
        for sig, old in installed.items():
            signal.signal(sig, old)


class ProgressReporter:
    """``on_event`` for ``runs.pretrain.run``: a progress bar (loss, tokens/s, ETA) — live on a
    terminal, periodic plain lines when piped — plus short lines for parts, plans, resumes and
    samples (on stderr at a terminal, on stdout with the progress lines otherwise)."""

    def __init__(self, show_samples: bool = True, train_part: str = "pretraining") -> None:
        self.train_part = train_part  # the part whose loop the bar follows
        self.progress = make_progress()
        self.out = err_console if is_interactive() else console
        self.task = None
        self.show_samples = show_samples
        self.last_val = None

    def __call__(self, kind: str, info: dict) -> None:
        if kind == "train":
            self.progress.start()
            self.task = self.progress.add_task(
                self.train_part, total=info["max_steps"], completed=info["step"], info=""
            )
            trainable = info.get("trainable")
            extra = (f" ({trainable:,} trainable)" if trainable is not None
                     and trainable != info["params"] else "")  # fmt: skip
            self.out.print(f"[bold]{self.train_part}[/] {info['params']:,} parameters{extra}, "
                           f"{info['max_steps']:,} steps")  # fmt: skip
        elif kind == "stage" and info["status"] == "done" and info["name"] == self.train_part:
            self._stop()
        elif kind == "stage" and info["status"] == "done" and info["name"] != "overhead":
            extra = ""
            if info["name"] == "tokenizer":
                extra = (" (reused from the run directory)" if info.get("reused") else
                         f": vocabulary {info.get('vocab_size')}, {info.get('train_tokens', 0):,} "
                         f"train / {info.get('val_tokens', 0):,} val tokens")  # fmt: skip
            elif info["name"] == "evaluation" and info.get("val_loss") is not None:
                bpb = info.get("val_bpb")
                extra = f": val loss {info['val_loss']:.3f}" + (
                    f", {bpb:.3f} bits/byte" if bpb else ""
                )
                if info.get("pref_accuracy") is not None:
                    extra += f", held-out preference accuracy {info['pref_accuracy']:.2f}"
                if info.get("accuracy") is not None:
                    extra += f", task accuracy {info['accuracy']:.2f}"
            elif info["name"] == "baseline" and info.get("accuracy") is not None:
                extra = f": task accuracy before training {info['accuracy']:.2f}"
            elif info["name"] == "data" and info.get("train_examples") is not None:
                extra = f": {info['train_examples']:,} conversations"
            elif info["name"] == "data" and info.get("train_pairs") is not None:
                extra = (
                    f": {info['train_pairs']:,} train / {info['heldout_pairs']:,} held-out pairs"
                )
            self.out.print(f"[green]✓[/] {info['name']}{extra}")
        elif kind == "plan":
            self.out.print(
                f"budget {info['budget_s'] / 60:.1f} min: measured {info['step_s'] * 1000:.0f} ms/step "
                f"→ {info['max_steps']:,} steps fit in the {info['seconds_left']:.0f} s left"
            )  # fmt: skip
        elif kind == "replan" and self.task is not None:
            self.progress.update(self.task, total=info["max_steps"])
        elif kind == "resume":
            self.out.print(f"[cyan]resuming from the checkpoint at step {info['step']:,} "
                           f"of {info['max_steps']:,}")  # fmt: skip
        elif kind == "log" and self.task is not None:
            if info.get("val_loss") is not None:
                self.last_val = info["val_loss"]
            val = f" val {self.last_val:.3f}" if self.last_val is not None else ""
            self.progress.update(
                self.task, completed=info["step"], total=info["max_steps"],
                info=f"loss {info['train_loss']:.3f}{val}  {info['tokens_per_s']:,.0f} tok/s",
            )  # fmt: skip
        elif kind == "sample" and self.show_samples and info["tag"] == "during":
            text = info["text"].strip().replace("\n", " ⏎ ")[:160]
            self.progress.console.print(f"[dim]step {info['step']}:[/] {text}")
        elif kind == "sample" and self.show_samples and "prompt" in info:
            mark = "✓" if info.get("correct") else "✗"
            self.out.print(f"{mark} {info['prompt']!r} → {info['answer']!r}", markup=False,
                           highlight=False)  # fmt: skip
        elif kind == "checkpoint":
            self._stop()
            self.out.print(f"checkpoint written at step {info['step']:,}: {info['path']}")

    def _stop(self) -> None:
        if self.task is not None:
            self.progress.stop()
            self.task = None


def print_summary(result, run_dir) -> None:
    """Stage table, final metrics and final samples of a finished run."""
    rd = RunDir(run_dir)
    stages = rd.load_stages()
    table = Table(title=f"run {rd.root}")
    for col in ("stage", "time (s)", "tokens", "tokens/s", "MFU", "val loss", "bits/byte"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, s in stages.items():
        tokens = s.get("tokens") or s.get("train_tokens")
        table.add_row(
            name, f"{s.get('seconds', 0):.1f}", f"{tokens:,}" if tokens else "",
            f"{s['tokens_per_s']:,.0f}" if s.get("tokens_per_s") else "",
            f"{100 * s['mfu']:.2f}%" if s.get("mfu") else "",
            f"{s['val_loss']:.3f}" if s.get("val_loss") is not None else "",
            f"{s['val_bpb']:.3f}" if s.get("val_bpb") is not None else "",
        )  # fmt: skip
    console.print(table)
    for s in [r for r in rd.read_jsonl(rd.samples) if r.get("tag") == "final"][:1]:
        console.print("[bold]sample:[/]")
        console.print(s["text"], markup=False, highlight=False)
    console.print(f"report: {rd.report}")


def command_line() -> str:
    """The command as typed (for the report)."""
    return "g2c " + " ".join(shlex.quote(a) for a in sys.argv[1:])


# -- the post-training stages (`g2c sft`, `g2c dpo`): the same machinery for any StageConfig --
class _StageHelp(argparse.Action):
    """``-h/--help`` showing each config flag's effective default (preset + --config + earlier
    flags), as :class:`_PresetHelp` does for ``g2c train``."""

    def __init__(self, option_strings, dest, presets=None, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show this help (with the chosen preset's values) and exit", **kw)  # fmt: skip
        self.presets = presets

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        name = getattr(namespace, "preset", None) or next(iter(self.presets))
        try:
            cfg = resolve_stage_config(namespace, self.presets[name]).to_dict()
        except (ValueError, FileNotFoundError, TypeError, KeyError):
            cfg = None
        for action in parser._actions:
            field = getattr(action, "config_field", None)
            if field is not None and cfg is not None:
                section, key = field
                action.help = f"{section}.{key} (default: {_shown(cfg[section][key])}, " \
                              f"from preset {name})"  # fmt: skip
        parser.print_help()
        parser.exit()


def _stage_converter(hint: Any):
    if typing.get_origin(hint) is dict:
        return parse_mixture
    return _converter(hint)


def add_stage_flags(p: argparse.ArgumentParser, config_cls: Any, presets: dict) -> None:
    """A flag for every field of ``config_cls`` (a ``g2c.runs.sft.StageConfig``: ``--max-lr``,
    ``--beta``, ``--mixture tasks=600,gsm8k=50`` ...), ``--config FILE``, ``--show-config`` and a
    preset-aware ``--help`` (the parser must be created with ``add_help=False``)."""
    p.add_argument("-h", "--help", action=_StageHelp, presets=presets)
    sections = "] [".join(config_cls.SECTIONS)
    p.add_argument("--config", default=None, help=f"TOML or JSON file with [{sections}]")
    for section, fields in config_cls.fields().items():
        group = p.add_argument_group(f"{section} settings (override the preset and --config)")
        for name, (hint, _) in fields.items():
            action = group.add_argument(
                f"--{name.replace('_', '-')}", dest=f"{section}.{name}",
                type=_stage_converter(hint), default=argparse.SUPPRESS, metavar=_metavar(hint),
                help=f"{section}.{name} (default: from the preset; --show-config shows it)",
            )  # fmt: skip
            action.config_field = (section, name)
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")


def resolve_stage_config(args: argparse.Namespace, base: Any) -> Any:
    """``base`` (a preset) < ``--config`` file < flags, validated."""
    cfg = base
    if getattr(args, "config", None):
        cfg = cfg.override(load_config_file(args.config))
    overrides: dict[str, dict] = {}
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            overrides.setdefault(section, {})[name] = value
    return cfg.override(overrides) if overrides else cfg


class StopControl(LoopControl):
    """A ``LoopControl`` that stops on ``stopped(step)`` (a signal flag) or at ``limit``."""

    def __init__(self, stopped: Callable[[int], bool], limit: int | None = None) -> None:
        self.stopped, self.limit = stopped, limit

    def should_stop(self, step: int) -> bool:
        """True after a stop signal, or once ``step`` reaches ``limit``."""
        return bool(self.stopped(step)) or (self.limit is not None and step >= self.limit)


def register_stage(sub: argparse._SubParsersAction, name: str, module: Any, *, summary: str,
                   description: str) -> None:  # fmt: skip
    """Register ``g2c <name>`` for the stage ``module`` (``PRESETS``, its config class,
    ``run``): ``--preset``, ``--config``, a flag per field, ``--out``, ``--resume`` /
    ``--fresh``, ``--threads``, ``--show-config``, ``--debug``."""
    presets = module.PRESETS
    first = next(iter(presets))
    p = sub.add_parser(name, add_help=False, description=description,
                       help=f"{summary} (presets: {', '.join(presets)})")  # fmt: skip
    p.add_argument("--preset", default=first, choices=tuple(presets),
                   help=f"named configuration (default: {first})")  # fmt: skip
    p.add_argument("--out", default=None, help="run directory (default: $G2C_HOME/<preset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")  # fmt: skip
    p.add_argument("--fresh", action="store_true", help="delete the run in --out and start over")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: min(2, cores))")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)
    add_stage_flags(p, type(presets[first]), presets)
    p.set_defaults(func=lambda args: run_stage_command(args, module, name))


def run_directory(args: argparse.Namespace) -> Path:
    """``--out`` (default ``$G2C_HOME/<preset>``), checked against ``--resume`` / ``--fresh``:
    an existing run needs one of them; ``--resume`` needs a run to resume."""
    out = Path(args.out) if args.out else g2c_home() / args.preset
    exists = RunDir(out).exists()
    if exists and not (args.resume or args.fresh):
        raise ValueError(
            f"{out} already holds a run; pass --resume to continue it, --fresh to start over, "
            "or --out to use another directory"
        )
    if args.resume and not exists:
        raise FileNotFoundError(f"--resume: no run to resume in {out} (no run_config.json)")
    return out


def run_stage_command(args: argparse.Namespace, module: Any, name: str) -> int:
    """Resolve the config, run (or resume) the stage with signals and progress, print a
    summary; exit code 130 when stopped (run it again with --resume to continue)."""
    cfg = resolve_stage_config(args, module.get_preset(args.preset))
    if args.show_config:
        console.print_json(json.dumps(cfg.to_dict()))
        return 0
    out = run_directory(args)
    rd = RunDir(out)
    set_threads(args.threads)
    with stop_on_signals() as stopped:
        result = module.run(
            cfg, out, fresh=args.fresh, on_event=ProgressReporter(train_part="training"),
            control=StopControl(stopped, args.stop_after_steps), command=command_line(),
        )  # fmt: skip
    if result.status == "interrupted":
        console.print(f"stopped at step {result.step:,} of {result.max_steps:,}; run `g2c {name} "
                      f"... --resume` with the same settings to continue from "
                      f"{out / 'checkpoint.pt'}")  # fmt: skip
        return 130
    stages = rd.load_stages()
    table = Table(title=f"{name} run {rd.root}")
    for col in ("part", "time (s)", "result"):
        table.add_column(col, justify="left" if col != "time (s)" else "right")
    for part, s in stages.items():
        shown = {k: v for k, v in s.items() if k in ("train_examples", "train_pairs", "step",
                 "val_loss", "accuracy", "pref_accuracy", "format")}  # fmt: skip
        text = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in shown.items())  # fmt: skip
        table.add_row(part, f"{s.get('seconds', 0):.1f}", text)
    console.print(table)
    console.print(f"report: {rd.report}")
    return 0
