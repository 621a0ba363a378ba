"""Batches, perplexity, sampling and the training loop shared by every language model here.

The shared model interface: ``model.context_length`` (ctx) and ``model(x)`` with x (B, ctx) long
→ (B, V) logits (or log-probabilities) for the token that follows each window.

- ``get_batch``: B random windows of a 1-D id sequence and the token after each.
- ``perplexity``: exp of the mean negative log-likelihood (nats) over next-token predictions,
  batched and without gradients, through ``g2c.training``'s evaluation home
  (``mean_batch_loss``, ``perplexity_from_loss``); ``bits_per_token`` = log2(perplexity) (bits per character for a
  char model). Perplexity is the effective number of equally likely choices per token
  (Jelinek et al. 1977); a uniform model over V tokens scores exactly V.
- ``sample``: ancestral sampling, one token at a time, from softmax(logits / temperature).
- ``train_lm``: minibatch cross-entropy training with ``g2c.training.AdamW`` (or ``g2c.nn.SGD``),
  optional gradient clipping (``clip_grad_norm_``, Pascanu et al. 2013) and a cosine schedule.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import torch

from g2c.nn import SGD, Module, cross_entropy, log_softmax
from g2c.training import (
    AdamW,
    clip_grad_norm_,
    cosine_with_warmup,
    mean_batch_loss,
    perplexity_from_loss,
)


@dataclasses.dataclass
class LMTrainSettings:
    """The training budget and sizes shared by the module-06 jobs (one model, or the comparison).

    ``steps`` × ``batch_size`` training windows; AdamW at ``lr`` with a cosine decay to
    ``lr/10`` and ``grad_clip`` (None: off); sizes ``context_length`` / ``embedding_dim`` /
    ``hidden_dim`` (the bigrams use context 1); validation every ``eval_every`` steps on the
    first ``eval_tokens`` targets; ``sample_tokens`` characters sampled at ``temperature``;
    ``seed`` for initialisation, batches and sampling.
    """

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-2
    grad_clip: float | None = 1.0
    context_length: int = 16
    embedding_dim: int = 24
    hidden_dim: int = 128
    eval_every: int = 250
    eval_tokens: int | None = 10_000
    sample_tokens: int = 200
    temperature: float = 1.0
    seed: int = 1337


def _as_ids(ids: torch.Tensor | Sequence[int], name: str = "ids") -> torch.Tensor:
    """A 1-D long tensor from a tensor or a list of ints; floats → TypeError, other ranks → ValueError."""
    if not isinstance(ids, torch.Tensor):
        ids = torch.as_tensor(list(ids), dtype=torch.long)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dtype.is_complex:
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() != 1:
        raise ValueError(f"{name} must be 1-D (T,), got shape {tuple(ids.shape)}")
    return ids.long()


def _model_device(model) -> torch.device:
    """Device of the model's first tensor (CPU when it has none)."""
    if hasattr(model, "named_tensors"):
        for _, t in model.named_tensors():
            return t.device
    return torch.device("cpu")


def _context_length(model) -> int:
    ctx = getattr(model, "context_length", None)
    if not isinstance(ctx, int) or ctx <= 0:
        raise TypeError(
            "model must have a positive int attribute context_length and map (B, ctx) ids to "
            f"(B, V) logits; got {type(model).__name__} with context_length={ctx!r}"
        )
    return ctx


def get_batch(
    ids: torch.Tensor | Sequence[int],
    context_length: int,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``batch_size`` random windows of ``ids`` and the token that follows each.

    Args:
        ids: 1-D token ids (T,) (tensor or list of ints).
        context_length: window length ctx (> 0); batch_size: B (> 0).
        generator: optional CPU ``torch.Generator`` choosing the window starts.
        device: where to put the batch (default: the device of ``ids``).

    Returns:
        x (B, ctx) long with x[b] = ids[s_b : s_b + ctx], and y (B,) long with y[b] = ids[s_b + ctx],
        for starts s_b uniform in [0, T − ctx).

    Raises ValueError when T ≤ context_length ("too short") or a size is not positive.
    """
    ids = _as_ids(ids)
    if context_length <= 0 or batch_size <= 0:
        raise ValueError(
            f"context_length and batch_size must be positive, got {context_length}, {batch_size}"
        )
    if ids.numel() <= context_length:
        raise ValueError(
            f"ids is too short: {ids.numel()} tokens, need more than context_length="
            f"{context_length} to form one (window, next token) pair"
        )
    starts = torch.randint(0, ids.numel() - context_length, (batch_size,), generator=generator)
    starts = starts.to(ids.device)
    offsets = torch.arange(context_length, device=ids.device)
    x = ids[starts[:, None] + offsets]  # (B,) -> (B, ctx)
    y = ids[starts + context_length]  # (B,)
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


@torch.no_grad()
def perplexity(
    model,
    ids: torch.Tensor | Sequence[int],
    *,
    batch_size: int = 1024,
    first_target: int | None = None,
    max_targets: int | None = None,
) -> float:
    """exp(mean NLL) of every next-token prediction the model can make on ``ids``.

    Targets are ``ids[p]`` for p = first_target … T−1, each predicted from the window
    ``ids[p − ctx : p]`` (ctx = ``model.context_length``). ``first_target`` defaults to ctx (every
    position with a full window); pass the largest context length of several models to score them
    on the same targets. ``max_targets`` keeps only the first that many targets (quick estimates
    during training). Runs in eval mode without gradients, ``batch_size`` windows at a time, via
    :func:`g2c.training.mean_batch_loss`; restores the model's training flag.

    Returns a float ≥ 1 (nats-based perplexity; log2 of it is bits per token).
    Raises ValueError when first_target < ctx, when there is no target, or on bad sizes.
    """
    ctx = _context_length(model)
    ids = _as_ids(ids).to(_model_device(model))
    first = ctx if first_target is None else first_target
    if first < ctx:
        raise ValueError(
            f"first_target={first} is smaller than the model's context_length={ctx}: the first "
            "targets would have no full window; use first_target >= context_length"
        )
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = ids.numel() - first
    if max_targets is not None:
        if max_targets <= 0:
            raise ValueError(f"max_targets must be positive or None, got {max_targets}")
        n = min(n, max_targets)
    if n <= 0:
        raise ValueError(
            f"ids has {ids.numel()} tokens: no target after first_target={first}; pass a longer sequence"
        )
    windows = ids.unfold(0, ctx, 1)[first - ctx : first - ctx + n]  # (n, ctx), window p-ctx..p-1
    targets = ids[first : first + n]  # (n,)
    batches = [
        (windows[i : i + batch_size], targets[i : i + batch_size]) for i in range(0, n, batch_size)
    ]
    # mean over batches of each batch's *summed* NLL, times batches / targets = mean NLL per
    # target, whatever the size of the last batch
    mean_sum = mean_batch_loss(model, batches, _summed_nll)
    return perplexity_from_loss(mean_sum * len(batches) / n)


def _summed_nll(model: Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Sum over a batch of −log p(target | window): windows (b, ctx), targets (b,) → scalar."""
    windows, targets = batch
    logp = log_softmax(model(windows).float(), dim=-1)  # (b, ctx) -> (b, V)
    return -logp.gather(1, targets[:, None]).sum()


def bits_per_token(ppl: float) -> float:
    """log2(perplexity): bits per token (bits per character for a character model)."""
    if ppl <= 0:
        raise ValueError(f"perplexity must be positive, got {ppl}")
    return math.log2(ppl)


@torch.no_grad()
def sample(
    model,
    prompt: torch.Tensor | Sequence[int],
    num_tokens: int,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    pad_id: int | None = None,
) -> torch.Tensor:
    """Generate ``num_tokens`` tokens after ``prompt``, one at a time.

    Each step feeds the last ``model.context_length`` tokens (left-padded with ``pad_id``,
    default ``prompt[0]``, while the sequence is shorter) and draws the next token from
    softmax(logits / temperature) with ``generator`` (a CPU generator); temperature 0 = argmax.
    Runs in eval mode (restored afterwards), without gradients.

    Returns a 1-D long CPU tensor (len(prompt) + num_tokens,): the prompt, then the new tokens.
    Raises ValueError for an empty prompt, num_tokens < 0 or temperature < 0.
    """
    ctx = _context_length(model)
    ids = _as_ids(prompt, "prompt").cpu()
    if ids.numel() == 0:
        raise ValueError("prompt must hold at least one token id")
    if num_tokens < 0:
        raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    pad = int(ids[0]) if pad_id is None else int(pad_id)
    device = _model_device(model)
    out = ids.tolist()
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        for _ in range(num_tokens):
            window = ([pad] * ctx + out)[-ctx:]
            x = torch.tensor([window], dtype=torch.long, device=device)  # (1, ctx)
            logits = model(x)[0].float().cpu()  # (1, ctx) -> (V,)
            if temperature == 0:
                nxt = int(logits.argmax())
            else:
                probs = torch.softmax(logits / temperature, dim=-1)  # (V,)
                nxt = int(torch.multinomial(probs, 1, generator=generator))
            out.append(nxt)
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    return torch.tensor(out, dtype=torch.long)


def train_lm(
    model: Module,
    ids: torch.Tensor | Sequence[int],
    val_ids: torch.Tensor | Sequence[int] | None = None,
    num_steps: int = 1000,
    batch_size: int = 32,
    lr: float = 1e-3,
    log_every: int = 100,
    *,
    optimizer: str = "adamw",
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    schedule: str = "constant",
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    generator: torch.Generator | None = None,
    eval_tokens: int | None = None,
    eval_first_target: int | None = None,
    on_log: Callable[[dict], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train ``model`` on random windows of ``ids`` with the cross-entropy of the next token.

    Args:
        model: a ``g2c.nn.Module`` with the LM interface and trainable parameters.
        ids / val_ids: 1-D training / validation token ids.
        num_steps: optimizer steps (≥ 0); batch_size: windows per step; lr: peak learning rate.
        log_every: every this many steps (and at the last step) ``val_ids`` is scored with
            :func:`perplexity` and ``on_log`` is called. With ``val_ids`` the untrained model is
            also scored (step 0).
        optimizer: ``"adamw"`` (``g2c.training.AdamW``) or ``"sgd"`` (``g2c.nn.SGD``).
        weight_decay: passed to the optimizer. grad_clip: max global grad norm, or None.
        schedule: ``"constant"`` or ``"cosine"`` (``cosine_with_warmup`` from lr to ``min_lr``
            with ``warmup_steps``).
        generator: CPU generator for the batches. eval_tokens: score at most this many
            validation targets per evaluation (None = all). eval_first_target: see
            :func:`perplexity` (same targets for models with different contexts).
        on_log: called with ``{"step", "train_loss" (mean since the last log), "val_ppl" (or
            None), "lr", "grad_norm"}``. on_step: called with (step, loss) after every step.

    Returns:
        dict with ``train_losses`` (list[float], one per step, nats), ``val_perplexities``
        (list[float]) at ``val_steps`` (list[int]), ``grad_norms`` (pre-clip, per step),
        ``seconds``, ``num_params``, ``tokens_seen`` (= num_steps · batch_size targets).

    Raises ValueError for bad sizes, an unknown optimizer/schedule, or a model without
    trainable parameters (a ``CountsBigramLM`` is trained with ``fit``).
    """
    ctx = _context_length(model)
    params = model.parameters()
    if not params:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameters; count-based models are "
            "trained with model.fit(ids)"
        )
    if num_steps < 0 or batch_size <= 0 or log_every <= 0 or lr <= 0:
        raise ValueError(
            "need num_steps >= 0, batch_size > 0, log_every > 0, lr > 0; got "
            f"num_steps={num_steps}, batch_size={batch_size}, log_every={log_every}, lr={lr}"
        )
    if grad_clip is not None and grad_clip <= 0:
        raise ValueError(f"grad_clip must be positive or None, got {grad_clip}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    if optimizer == "adamw":
        opt = AdamW(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = SGD(params, lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    device = _model_device(model)
    ids = _as_ids(ids).to(device)
    if val_ids is not None:
        val_ids = _as_ids(val_ids, "val_ids").to(device)

    def evaluate() -> float | None:
        if val_ids is None:
            return None
        return perplexity(model, val_ids, first_target=eval_first_target, max_targets=eval_tokens)

    history: dict = {"train_losses": [], "val_perplexities": [], "val_steps": [], "grad_norms": []}
    if val_ids is not None:
        history["val_perplexities"].append(evaluate())
        history["val_steps"].append(0)
    start = time.perf_counter()
    model.train()
    for step in range(num_steps):
        if schedule == "cosine":
            opt.lr = cosine_with_warmup(step, warmup_steps, num_steps, lr, min_lr)
        x, y = get_batch(ids, ctx, batch_size, generator=generator)
        loss = cross_entropy(model(x), y)  # (B, ctx) -> (B, V) -> scalar
        opt.zero_grad()
        loss.backward()
        norm = clip_grad_norm_(params, grad_clip if grad_clip is not None else math.inf)
        opt.step()
        history["train_losses"].append(loss.item())
        history["grad_norms"].append(norm)
        if on_step is not None:
            on_step(step + 1, history["train_losses"][-1])
        if (step + 1) % log_every == 0 or step + 1 == num_steps:
            val = evaluate()
            if val is not None:
                history["val_perplexities"].append(val)
                history["val_steps"].append(step + 1)
            if on_log is not None:
                recent = history["train_losses"][-log_every:]
                on_log(
                    {
                        "step": step + 1,
                        "train_loss": sum(recent) / len(recent),
                        "val_ppl": val,
                        "lr": opt.lr,
                        "grad_norm": norm,
                    }
                )
    history["seconds"] = time.perf_counter() - start
    history["num_params"] = sum(p.numel() for p in params)
    history["tokens_seen"] = num_steps * batch_size
    return history
