"""The MNIST stage (modules 03/03B): a 784-128-10 MLP from ``g2c.nn`` trained with
``g2c.training.AdamW`` and a warmup + cosine schedule, saved as an artifact with a report.

``run(config, out)`` is what ``g2c mnist`` runs: validate (``MNISTConfig``), open the run
directory, train (``train_mnist``), save ``model.safetensors`` + ``manifest.json`` +
``history.json``, ``metrics.jsonl`` (one line per evaluation), ``curves.png`` and ``report.md``.

Data: MNIST (LeCun et al. 1998) or Fashion-MNIST (Xiao et al. 2017), 28×28 uint8 images,
loaded by :mod:`g2c.data`. The last ``val_size`` training images form the validation split
used for the curves; the test split is only used for the final accuracy.

Shapes: images (N, 28, 28) uint8 → float (N, 784) scaled to [0, 1] once, normalised per batch
with the training mean/std; logits (B, 10); targets (B,) int64.

What gets a small MLP to ≥ 98 % on MNIST in about a minute of CPU: the whole data set lives
in one float tensor (no per-sample Python), minibatches of 128, AdamW with lr 2e-3 decayed by
a cosine to ~0, and random translations of up to ``max_shift`` pixels (Simard et al. 2003:
shifted copies are the cheapest data augmentation for digits). Everything random (init,
shuffling, shifts, dropout) draws from one ``torch.Generator`` seeded by ``config.seed``.

Library code: returns values and reports progress through ``on_log``; never prints.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from g2c.artifacts import (
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
    load_safetensors,
    read_manifest,
    save_safetensors,
    write_manifest,
)
from g2c.data import load_fashion_mnist, load_mnist
from g2c.nn import GELU, CrossEntropyLoss, Dropout, Linear, ReLU, Sequential, resolve_device
from g2c.nn.module import Module
from g2c.nn.optim import SGD
from g2c.runs.stage import Stage, environment, stage_table
from g2c.training import AdamW, clip_grad_norm_, cosine_with_warmup

DATASETS = ("mnist", "fashion-mnist")
ARTIFACT_FORMAT = "g2c.mnist-mlp"
NUM_CLASSES = 10
IMAGE_PIXELS = 28 * 28


@dataclass
class MNISTConfig:
    """Configuration of one MNIST/Fashion-MNIST run; round-trips through JSON.

    Fields:
        dataset: ``"mnist"`` or ``"fashion-mnist"``.
        data_path: directory holding the four IDX ``.gz`` files (None: g2c.data resolution).
        hidden: hidden width of the 784-hidden-10 MLP (default 128).
        activation: ``"relu"`` or ``"gelu"``.
        dropout: dropout probability after the hidden layer (0 = none).
        epochs, batch_size: passes over the training split and minibatch size B.
        optimizer: ``"adamw"`` (g2c.training.AdamW) or ``"sgd"`` (g2c.nn.SGD).
        lr, min_lr, warmup_steps: peak, final learning rate and linear-warmup steps of the
            cosine schedule (``cosine_with_warmup``).
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        grad_clip: global-norm clipping threshold (None = no clipping).
        max_shift: random translation of each training image by up to this many pixels in
            x and y (0 = no augmentation).
        val_size: the last ``val_size`` training images form the validation split.
        train_limit, test_limit: use only the first N training / test images (None = all);
            for smoke runs and the overfitting demo.
        eval_every: evaluate on the validation split every this many steps (0 = once per
            epoch).
        seed: seeds the generator behind init, shuffling, shifts and dropout.
        device: ``"auto" | "cpu" | "cuda" | "mps"``.
        threads: torch CPU threads during the run (None = leave as is).
    """

    dataset: str = "mnist"
    data_path: str | None = None
    hidden: int = 128
    activation: str = "relu"
    dropout: float = 0.0
    epochs: int = 12
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float | None = None
    max_shift: int = 2
    val_size: int = 5000
    train_limit: int | None = None
    test_limit: int | None = None
    eval_every: int = 0
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        for name in ("hidden", "epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("warmup_steps", "max_shift", "val_size", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(
                f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        for name in ("train_limit", "test_limit", "threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return asdict(self)

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MNISTConfig:
        """Build from a dict; unknown keys → ValueError naming them (catches typos)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown MNISTConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> MNISTConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


@dataclass
class MNISTResult:
    """What :func:`train_mnist` returns.

    Fields: ``model`` (the trained ``Sequential``, in eval mode), ``config``, ``history``
    (lists ``step, train_loss, lr`` per logged step and ``val_step, val_loss, val_accuracy``
    per evaluation, ``epoch_train_loss`` per epoch), ``test_loss``, ``test_accuracy``
    (fraction in [0, 1]), ``val_loss``, ``val_accuracy`` (final), ``train_seconds`` (wall
    time of the training loop, data loading excluded), ``num_parameters``, ``steps``,
    ``mean``/``std`` (the normalisation constants, needed for inference).
    """

    model: Module
    config: MNISTConfig
    history: dict[str, list[float]]
    test_loss: float
    test_accuracy: float
    val_loss: float
    val_accuracy: float
    train_seconds: float
    num_parameters: int
    steps: int
    mean: float
    std: float
    extra: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The scalar results as a JSON-ready dict."""
        return {
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
            "train_seconds": self.train_seconds,
            "num_parameters": self.num_parameters,
            "steps": self.steps,
        }


# -- model ---------------------------------------------------------------------------------
def build_mlp(config: MNISTConfig, generator: torch.Generator | None = None) -> Sequential:
    """784 → hidden → 10 MLP: Linear, ReLU (or GELU), [Dropout], Linear. Logits (B, 10)."""
    act = ReLU() if config.activation == "relu" else GELU()
    layers: list[Module] = [Linear(IMAGE_PIXELS, config.hidden, generator=generator), act]
    if config.dropout > 0:
        layers.append(Dropout(config.dropout, generator=generator))
    layers.append(Linear(config.hidden, NUM_CLASSES, generator=generator))
    return Sequential(*layers)


# -- data ------------------------------------------------------------------------------------
def load_split(
    dataset: str, split: str, path: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of ``dataset``'s ``split`` via g2c.data."""
    loader = load_mnist if dataset == "mnist" else load_fashion_mnist
    images, labels = loader(split=split, path=path)
    return torch.as_tensor(images, dtype=torch.uint8), torch.as_tensor(labels).long()


def random_shift(
    x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Translate each image of ``x`` (B, 28, 28) by its own random (dy, dx) ∈ [−s, s]², zero fill.

    One gather on a zero-padded batch (B, 28+2s, 28+2s): image b starts at flat offset
    b·(28+2s)² + oy·(28+2s) + ox of the padded buffer, and its 28×28 pixels follow a fixed
    pattern of flat offsets, so the whole batch is a single indexed read.
    """
    if max_shift == 0:
        return x
    B, H, W = x.shape
    s = max_shift
    Hp, Wp = H + 2 * s, W + 2 * s
    padded = x.new_zeros(B, Hp, Wp)  # (B, H+2s, W+2s)
    padded[:, s : s + H, s : s + W] = x
    oy, ox = torch.randint(0, 2 * s + 1, (2, B), generator=generator).to(x.device)
    start = torch.arange(B, device=x.device) * (Hp * Wp) + oy * Wp + ox  # (B,)
    pattern = torch.arange(H, device=x.device)[:, None] * Wp + torch.arange(W, device=x.device)
    flat = start[:, None] + pattern.reshape(-1)  # (B, H*W)
    return padded.reshape(-1)[flat].reshape(B, H, W)


@torch.no_grad()
def evaluate(
    model: Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: float,
    std: float,
    batch_size: int = 10_000,
) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy of ``model`` on images (N, 28, 28) float [0, 1].

    The model is put in eval mode and restored to its previous mode afterwards.
    """
    was_training = model.training
    model.eval()
    loss_fn = CrossEntropyLoss()
    total_loss, correct = 0.0, 0
    for i in range(0, len(images), batch_size):
        x = (images[i : i + batch_size].reshape(-1, IMAGE_PIXELS) - mean) / std  # (b, 784)
        y = labels[i : i + batch_size]
        logits = model(x)  # (b, 10)
        total_loss += float(loss_fn(logits, y)) * len(y)
        correct += int((logits.argmax(-1) == y).sum())
    model.train(was_training)
    n = max(len(images), 1)
    return total_loss / n, correct / n


def predict(model: Module, images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Class ids (N,) int64 for uint8 or [0, 1] float images (N, 28, 28)."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model((images.reshape(-1, IMAGE_PIXELS) - mean) / std)  # (N, 10)
    model.train(was_training)
    return logits.argmax(-1)


# -- training ---------------------------------------------------------------------------------
def train_mnist(
    config: MNISTConfig, on_log: Callable[[dict[str, Any]], None] | None = None
) -> MNISTResult:
    """Train the MLP of ``config`` and evaluate it on the test split.

    ``on_log`` receives dicts: ``{"event": "start", "total_steps", "num_train", ...}`` once,
    ``{"event": "step", "step", "epoch", "loss", "lr", "elapsed_s"}`` every step,
    ``{"event": "eval", "step", "epoch", "val_loss", "val_accuracy", "elapsed_s"}`` after each
    evaluation and ``{"event": "end", **metrics}`` at the end.
    Raises ValueError when the data set is smaller than ``val_size`` + 1.
    """
    config.validate()
    device = resolve_device(config.device)
    old_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, device, on_log or (lambda event: None))
    finally:
        torch.set_num_threads(old_threads)


def _train(config: MNISTConfig, device: torch.device, log: Callable) -> MNISTResult:
    gen = torch.Generator().manual_seed(config.seed)
    train_u8, train_y = load_split(config.dataset, "train", config.data_path)
    test_u8, test_y = load_split(config.dataset, "test", config.data_path)
    if config.test_limit is not None:
        test_u8, test_y = test_u8[: config.test_limit], test_y[: config.test_limit]
    n_total = len(train_u8)
    if n_total <= config.val_size:
        raise ValueError(
            f"val_size={config.val_size} leaves no training images out of {n_total}; lower val_size"
        )
    # validation = the last val_size images; training = the first train_limit before them
    n_train = min(config.train_limit or n_total, n_total - config.val_size)
    images = train_u8.to(device).float().div_(255.0)  # (N, 28, 28) in [0, 1], converted once
    x_train, y_train = images[:n_train], train_y[:n_train].to(device)
    x_val, y_val = images[n_total - config.val_size :], train_y[n_total - config.val_size :]
    y_val = y_val.to(device)
    x_test, y_test = test_u8.to(device).float().div_(255.0), test_y.to(device)
    mean, std = float(x_train.mean()), float(x_train.std())

    model = build_mlp(config, generator=gen).to(device)
    params = model.parameters()
    if config.optimizer == "adamw":
        opt = AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = CrossEntropyLoss()
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = min(config.warmup_steps, total_steps)
    history: dict[str, list[float]] = {
        k: []
        for k in ("step", "train_loss", "lr", "val_step", "val_loss", "val_accuracy")
        + ("epoch_train_loss",)
    }
    log(
        {
            "event": "start",
            "total_steps": total_steps,
            "steps_per_epoch": steps_per_epoch,
            "num_train": n_train,
            "num_val": config.val_size,
            "num_test": len(x_test),
            "num_parameters": model.num_parameters(),
            "device": str(device),
            "threads": torch.get_num_threads(),
        }
    )

    def run_eval(step: int, epoch: int) -> None:
        if config.val_size == 0:
            return
        vl, va = evaluate(model, x_val, y_val, mean, std)
        history["val_step"].append(step)
        history["val_loss"].append(vl)
        history["val_accuracy"].append(va)
        elapsed = time.perf_counter() - t0
        log({"event": "eval", "step": step, "epoch": epoch, "val_loss": vl, "val_accuracy": va,
             "elapsed_s": elapsed})  # fmt: skip

    t0 = time.perf_counter()
    step = 0
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(n_train, generator=gen).to(device)
        epoch_loss = torch.zeros((), device=device)
        for i in range(0, n_train, config.batch_size):
            idx = order[i : i + config.batch_size]
            x = random_shift(x_train[idx], config.max_shift, gen)  # (B, 28, 28)
            x = (x.reshape(-1, IMAGE_PIXELS) - mean) / std  # (B, 784)
            lr = cosine_with_warmup(step, warmup, total_steps, config.lr, config.min_lr)
            opt.lr = lr
            opt.zero_grad()
            loss = loss_fn(model(x), y_train[idx])
            loss.backward()
            if config.grad_clip is not None:
                clip_grad_norm_(params, config.grad_clip)
            opt.step()
            step += 1
            loss_value = float(loss.detach())
            epoch_loss += loss.detach() * len(idx)
            history["step"].append(step)
            history["train_loss"].append(loss_value)
            history["lr"].append(lr)
            log({"event": "step", "step": step, "epoch": epoch, "loss": loss_value, "lr": lr,
                 "elapsed_s": time.perf_counter() - t0})  # fmt: skip
            if config.eval_every and step % config.eval_every == 0:
                run_eval(step, epoch)
        history["epoch_train_loss"].append(float(epoch_loss) / n_train)
        if not config.eval_every:
            run_eval(step, epoch)
    train_seconds = time.perf_counter() - t0

    model.eval()
    test_loss, test_acc = evaluate(model, x_test, y_test, mean, std)
    val_loss = history["val_loss"][-1] if history["val_loss"] else float("nan")
    val_acc = history["val_accuracy"][-1] if history["val_accuracy"] else float("nan")
    result = MNISTResult(
        model=model,
        config=config,
        history=history,
        test_loss=test_loss,
        test_accuracy=test_acc,
        val_loss=val_loss,
        val_accuracy=val_acc,
        train_seconds=train_seconds,
        num_parameters=model.num_parameters(),
        steps=step,
        mean=mean,
        std=std,
    )
    log({"event": "end", **result.metrics()})
    return result


# -- artifacts ---------------------------------------------------------------------------------
def save_mnist_model(result: MNISTResult, out_dir: str | Path, **fields: Any) -> Path:
    """Write ``model.safetensors``, ``manifest.json`` (config, metrics, normalisation, and
    ``fields``) and ``history.json`` into ``out_dir`` atomically; returns ``out_dir`` as a Path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors(out / "model.safetensors", result.model.state_dict())
    atomic_write_json(out / "history.json", result.history, indent=None)
    write_manifest(
        out,
        ARTIFACT_FORMAT,
        config=result.config.to_dict(),
        data={"dataset": result.config.dataset},
        normalization={"mean": result.mean, "std": result.std},
        metrics=result.metrics(),
        files={"weights": "model.safetensors", "history": "history.json"},
        **fields,
    )
    return out


def load_mnist_model(out_dir: str | Path, device: str = "cpu") -> tuple[Module, dict[str, Any]]:
    """Rebuild the MLP saved by :func:`save_mnist_model`; returns (model in eval mode,
    manifest). A manifest of another format/version → ValueError; missing files →
    FileNotFoundError."""
    manifest = read_manifest(out_dir, format=ARTIFACT_FORMAT)
    config = MNISTConfig.from_dict(manifest["config"])
    model = build_mlp(config)
    model.load_state_dict(load_safetensors(Path(out_dir) / manifest["files"]["weights"]))
    return model.to(device).eval(), manifest


def plot_curves(history: dict, path: str | Path, title: str) -> Path:
    """Train loss per step and validation loss/accuracy per evaluation → PNG (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(history["step"], history["train_loss"], lw=0.5, alpha=0.6, label="train (batch)")
    ax1.plot(history["val_step"], history["val_loss"], "o-", label="val")
    ax1.set(xlabel="step", ylabel="cross-entropy", yscale="log", title=title)
    ax1.legend()
    ax2.plot(history["val_step"], [100 * a for a in history["val_accuracy"]], "o-")
    ax2.set(xlabel="step", ylabel="val accuracy (%)")
    fig.tight_layout()
    out = atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=80))
    plt.close(fig)
    return out


# -- the stage ------------------------------------------------------------------------------------
SMOKE = dict(epochs=2, train_limit=1000, test_limit=500, val_size=200, warmup_steps=5)
"""``MNISTConfig`` overrides of ``g2c mnist --smoke``: a tiny subset, 2 epochs, seconds."""


def run(
    config: MNISTConfig,
    out: str | Path,
    *,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    on_event: Callable[[str, dict], None] | None = None,
    command: str | None = None,
) -> MNISTResult:
    """The ``g2c mnist`` stage: train ``config`` and write the artifact and report into ``out``.

    The config is validated before anything is written (ValueError naming the field); the run
    directory is then started afresh (an MNIST run takes a minute: it is not resumed).
    ``on_log`` receives :func:`train_mnist`'s events; evaluations also go to ``metrics.jsonl``.
    Writes ``model.safetensors``, ``manifest.json``, ``history.json``, ``metrics.jsonl``,
    ``stages.json``, ``curves.png`` and ``report.md``. Returns the :class:`MNISTResult`.
    """
    config.validate()
    stage = Stage(out, "mnist", on_event)
    stage.open(config.to_dict(), fresh=True)
    rd = stage.rd
    forward = on_log or (lambda event: None)

    def log(event: dict[str, Any]) -> None:
        if event["event"] == "eval":
            append_jsonl(rd.metrics, event)
        forward(event)

    with stage.part("training") as info:
        result = train_mnist(config, on_log=log)
        info.update(steps=result.steps, val_accuracy=result.val_accuracy)
    with stage.part("evaluation") as info:
        info.update(test_loss=result.test_loss, test_accuracy=result.test_accuracy)
    with stage.part("report"):
        plot_curves(result.history, rd.root / "curves.png", config.dataset)
        save_mnist_model(result, rd.root, stage="mnist", parent=None, total_seconds=stage.seconds(),
                         environment=environment(config.device, config.threads, command))  # fmt: skip
    m = result.metrics()
    table = stage_table(rd.load_stages(), [("steps", "steps", "d"),
                                           ("val accuracy", "val_accuracy", ".4f"),
                                           ("test accuracy", "test_accuracy", ".4f")])  # fmt: skip
    report = [
        f"# g2c mnist — {config.dataset}", "",
        "| metric | value |", "|---|---|",
        f"| test accuracy | {m['test_accuracy']:.4f} |", f"| test loss | {m['test_loss']:.4f} |",
        f"| val accuracy | {m['val_accuracy']:.4f} |",
        f"| train seconds | {m['train_seconds']:.1f} ({config.threads or torch.get_num_threads()} threads) |",
        f"| steps | {m['steps']} |", f"| parameters | {m['num_parameters']} |", "",
        "## Stages", "", *table, "",
        "![curves](curves.png)", "", "Config:", "", "```json", config.to_json(), "```", "",
    ]  # fmt: skip
    atomic_write_text(rd.report, "\n".join(report))
    return result
