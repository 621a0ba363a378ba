"""API.md as a checklist: public names, argument names/defaults and one-line behaviours.

One place that checks the course contract in /work/shared/design/API.md for the finished
modules (01 autodiff, 03 nn, 03B training, 04 tokenizer, 07–08 attention, 09 transformer,
09B/10 pretraining, 11 sampling). Deep parity tests against PyTorch / HF / tiktoken live in
tests/test_<module>.py; this file only pins names, signatures and the behaviours API.md states
in one line, so a rename or a changed default fails here first. Tiny models, < 20 s.
"""

from __future__ import annotations

import importlib
import inspect
import math
import random

import pytest
import torch

_EMPTY = inspect.Parameter.empty
_KW = inspect.Parameter.KEYWORD_ONLY
_VAR_POS = inspect.Parameter.VAR_POSITIONAL

# -- 1. every public name API.md lists is importable from its package ------------------------
API_NAMES = {
    "g2c.autodiff": [
        "Value",
        "numerical_grad",
        "zero_grad",
        "ScalarNeuron",
        "ScalarMLP",
        "single_neuron_forward",
        "xor_loss",
        "train_xor_step",
    ],
    "g2c.nn": [
        "Module",
        "Linear",
        "ReLU",
        "Tanh",
        "Sigmoid",
        "GELU",
        "Sequential",
        "Dropout",
        "MSELoss",
        "CrossEntropyLoss",
        "SGD",
        "resolve_device",
    ],
    "g2c.training": ["AdamW", "clip_grad_norm_", "cosine_with_warmup"],
    "g2c.tokenizer": [
        "COURSE_SPECIAL_TOKENS",
        "BPETokenizer",
        "CharTokenizer",
        "GPT2_SPLIT_PATTERN",
        "GPT4_SPLIT_PATTERN",
    ],
    "g2c.tokenizer.persistence": [
        "save_token_ids",
        "load_token_ids",
        "save_artifact",
        "load_artifact",
    ],
    "g2c.attention": ["SelfAttention", "MultiHeadAttention"],
    "g2c.transformer": [
        "LayerKVCache",
        "LayerNorm",
        "RMSNorm",
        "FeedForward",
        "SwiGLU",
        "Block",
        "TransformerLM",
    ],
    "g2c.pretraining": [
        "split_token_stream",
        "get_lm_batch",
        "lm_cross_entropy",
        "empty_training_history",
        "Trainer",
    ],
    "g2c.sampling": [
        "apply_temperature",
        "top_k_filter",
        "top_p_filter",
        "apply_repetition_penalty",
        "generate",
        "beam_search",
        "stream_generate",
        "JsonPrefixAutomaton",
        "allowed_token_mask",
        "generate_json",
        "generate_cached",
    ],
    "g2c.sft": [
        "ChatTemplate",
        "SFTExample",
        "render_with_mask",
        "pad_and_collate",
        "masked_cross_entropy",
        "SFTTrainer",
    ],
    "g2c.lora": [
        "LoRALinear",
        "inject_lora",
        "mark_only_lora_trainable",
        "count_parameters",
        "lora_state_dict",
        "load_lora_state_dict",
    ],
    "g2c.dpo": [
        "PreferenceExample",
        "pad_and_collate_pref",
        "sequence_logprob",
        "dpo_loss",
        "DPOTrainer",
    ],
    "g2c.eval": [
        "MultipleChoiceExample",
        "GenerationExample",
        "EvalResult",
        "EvalReport",
        "exact_match",
        "normalized_match",
        "contains_match",
        "numeric_match",
        "continuation_logprob",
        "score_multiple_choice",
        "run_multiple_choice_eval",
        "score_generation_example",
        "run_generation_eval",
        "expected_calibration_error",
        "reliability_curve",
    ],
    "g2c.inference": [
        "BackendInfo",
        "InferenceResult",
        "Backend",
        "LocalTransformerBackend",
        "OllamaBackend",
        "OllamaError",
        "DEFAULT_OLLAMA_URL",
        "benchmark",
        "BenchmarkResult",
        "ChatResult",
    ],
    "g2c.synth": [
        "validate_pair",
        "build_instruction_prompt",
        "build_response_prompt",
        "parse_numbered_list",
        "ngram_overlap",
        "dedupe_pairs",
        "synthesize_dataset",
    ],
    "g2c.rag": [
        "Chunk",
        "chunk_text",
        "Embedder",
        "HashEmbedder",
        "NumpyVectorStore",
        "DenseRetriever",
        "RetrievedChunk",
        "assemble_rag_prompt",
        "RAGPrompt",
        "RAGPipeline",
        "RAGAnswer",
    ],
    "g2c.tools": [
        "Tool",
        "ToolCall",
        "ToolResult",
        "ToolError",
        "ToolRegistry",
        "validate_arguments",
        "render_tools_for_prompt",
        "parse_tool_calls",
        "format_tool_results",
        "dispatch_tool_call",
        "run_with_tools",
        "calculator_evaluate",
        "make_calculator",
        "make_read_file",
        "make_web_search",
        "make_run_python",
    ],
    "g2c.agent": [
        "Action",
        "Observation",
        "Plan",
        "ParsedStep",
        "AgentStep",
        "AgentRunResult",
        "AgentError",
        "Scratchpad",
        "parse_react_step",
        "Agent",
        "NativeAgent",
    ],
}


@pytest.mark.parametrize("module, name", [(m, n) for m, names in API_NAMES.items() for n in names])
def test_public_name_is_importable_and_documented(module, name):
    mod = importlib.import_module(module)
    assert hasattr(mod, name), f"{module}.{name} is in API.md but not importable"
    all_ = getattr(mod, "__all__", None)
    if all_ is not None:
        assert name in all_, f"{module}.__all__ misses {name}"
    obj = getattr(mod, name)
    if callable(obj):
        assert inspect.getdoc(obj), f"{module}.{name} has no docstring"


# -- 2. argument names, order and defaults -------------------------------------------------
# (qualified name, [(param name, default or _EMPTY), ...]) — the leading parameters, in order,
# exactly as API.md writes them. "*" marks the start of keyword-only parameters. Extras after
# them must be keyword-only with a default (checked below).
SIGNATURES = [
    ("g2c.autodiff:Value", [("data", _EMPTY)]),
    ("g2c.autodiff:numerical_grad", [("f", _EMPTY), ("value", _EMPTY), ("h", 1e-5)]),
    ("g2c.autodiff:zero_grad", [("params", _EMPTY)]),
    ("g2c.autodiff:ScalarNeuron", [("n_inputs", _EMPTY), ("rng", None)]),
    ("g2c.autodiff:ScalarMLP", [("rng", None)]),
    (
        "g2c.autodiff:single_neuron_forward",
        [("x1", _EMPTY), ("x2", _EMPTY), ("w1", _EMPTY), ("w2", _EMPTY), ("b", _EMPTY)],
    ),
    ("g2c.autodiff:xor_loss", [("model", _EMPTY)]),
    ("g2c.autodiff:train_xor_step", [("model", _EMPTY), ("lr", 0.05)]),
    ("g2c.nn:Linear", [("in_features", _EMPTY), ("out_features", _EMPTY)]),
    ("g2c.nn:Dropout", [("p", 0.5)]),
    ("g2c.nn:SGD", [("params", _EMPTY), ("lr", _EMPTY), ("weight_decay", 0.0)]),
    ("g2c.nn:resolve_device", [("device", "auto")]),
    (
        "g2c.training:AdamW",
        [
            ("params", _EMPTY),
            ("lr", _EMPTY),
            ("betas", (0.9, 0.999)),
            ("eps", 1e-8),
            ("weight_decay", 0.01),
        ],
    ),
    ("g2c.training:clip_grad_norm_", [("params", _EMPTY), ("max_norm", _EMPTY)]),
    (
        "g2c.training:cosine_with_warmup",
        [
            ("step", _EMPTY),
            ("warmup_steps", _EMPTY),
            ("max_steps", _EMPTY),
            ("max_lr", _EMPTY),
            ("min_lr", 0.0),
        ],
    ),
    ("g2c.tokenizer:BPETokenizer", [("special_tokens", ()), "*", ("pattern", "GPT4")]),
    ("g2c.tokenizer:BPETokenizer._get_pair_counts", [("ids", _EMPTY)]),
    (
        "g2c.tokenizer:BPETokenizer._merge",
        [("ids", _EMPTY), ("pair", _EMPTY), ("new_id", _EMPTY)],
    ),
    (
        "g2c.tokenizer:BPETokenizer.train_step",
        [("self", _EMPTY), ("ids", _EMPTY), ("new_id", None)],
    ),
    (
        "g2c.tokenizer:BPETokenizer.train",
        [
            ("self", _EMPTY),
            ("text", _EMPTY),
            ("vocab_size", _EMPTY),
            ("progress_callback", None),
            ("progress_every", 100),
        ],
    ),
    (
        "g2c.tokenizer:BPETokenizer.train_fast",
        [
            ("self", _EMPTY),
            ("text", _EMPTY),
            ("vocab_size", _EMPTY),
            ("show_progress", False),
            ("chunk_chars", 1_000_000),
            ("progress_callback", None),
        ],
    ),
    ("g2c.tokenizer:BPETokenizer.encode", [("self", _EMPTY), ("text", _EMPTY)]),
    ("g2c.tokenizer:BPETokenizer.encode_fast", [("self", _EMPTY), ("text", _EMPTY)]),
    ("g2c.tokenizer:BPETokenizer.encode_base", [("self", _EMPTY), ("text", _EMPTY)]),
    (
        "g2c.tokenizer:BPETokenizer.encode_at_vocab",
        [("self", _EMPTY), ("text", _EMPTY), ("vocab_size", _EMPTY)],
    ),
    ("g2c.tokenizer:BPETokenizer.decode", [("self", _EMPTY), ("ids", _EMPTY)]),
    ("g2c.tokenizer:BPETokenizer.to_dict", [("self", _EMPTY)]),
    ("g2c.tokenizer:BPETokenizer.from_dict", [("d", _EMPTY)]),
    ("g2c.tokenizer:BPETokenizer.save", [("self", _EMPTY), ("path", _EMPTY)]),
    ("g2c.tokenizer:BPETokenizer.load", [("path", _EMPTY)]),
    (
        "g2c.tokenizer:BPETokenizer.from_gpt2_files",
        [("vocab_json_path", _EMPTY), ("merges_txt_path", _EMPTY)],
    ),
    ("g2c.tokenizer:BPETokenizer.to_hf_tokenizer", [("self", _EMPTY)]),
    (
        "g2c.tokenizer.persistence:save_artifact",
        [("tok", _EMPTY), ("ids", _EMPTY), ("manifest", _EMPTY), ("dir", _EMPTY)],
    ),
    ("g2c.tokenizer.persistence:load_artifact", [("cls", _EMPTY), ("dir", _EMPTY)]),
    ("g2c.attention:SelfAttention", [("embedding_dim", _EMPTY), ("causal", True)]),
    ("g2c.attention:SelfAttention.causal_mask", [("T", _EMPTY), ("device", None)]),
    ("g2c.attention:MultiHeadAttention.causal_mask", [("T", _EMPTY), ("device", None)]),
    (
        "g2c.attention:MultiHeadAttention",
        [
            ("embedding_dim", _EMPTY),
            ("num_heads", _EMPTY),
            ("causal", True),
            "*",
            ("num_kv_heads", None),
            ("rope", None),
            ("dropout", 0.0),
            ("bias", True),
            ("attention_impl", "explicit"),
        ],
    ),
    (
        "g2c.attention:MultiHeadAttention.forward_cached",
        [("self", _EMPTY), ("x_t", _EMPTY), ("cache", _EMPTY)],
    ),
    ("g2c.transformer:LayerNorm", [("embedding_dim", _EMPTY), ("eps", 1e-5)]),
    ("g2c.transformer:FeedForward", [("embedding_dim", _EMPTY), ("hidden_dim", None)]),
    (
        "g2c.transformer:Block",
        [("embedding_dim", _EMPTY), ("num_heads", _EMPTY), ("hidden_dim", None), ("causal", True)],
    ),
    (
        "g2c.transformer:TransformerLM",
        [
            ("vocab_size", _EMPTY),
            ("embedding_dim", _EMPTY),
            ("num_layers", _EMPTY),
            ("num_heads", _EMPTY),
            ("max_seq_len", _EMPTY),
            ("hidden_dim", None),
            "*",
            ("positional", "learned"),
            ("norm", "layernorm"),
            ("norm_position", "pre"),
            ("mlp", "gelu"),
            ("num_kv_heads", None),
            ("dropout", 0.0),
            ("bias", True),
            ("tie_embeddings", True),
            ("attention_impl", "explicit"),
            ("rope_base", 10000.0),
            ("norm_eps", 1e-5),
        ],
    ),
    ("g2c.pretraining:split_token_stream", [("ids", _EMPTY), ("train_fraction", 0.9)]),
    (
        "g2c.pretraining:get_lm_batch",
        [("ids", _EMPTY), ("batch_size", _EMPTY), ("context_length", _EMPTY), ("generator", None)],
    ),
    ("g2c.pretraining:lm_cross_entropy", [("logits", _EMPTY), ("targets", _EMPTY)]),
    ("g2c.pretraining:empty_training_history", []),
    (
        "g2c.pretraining:Trainer",
        [
            ("model", _EMPTY),
            "*",
            ("batch_size", _EMPTY),
            ("context_length", _EMPTY),
            ("max_steps", _EMPTY),
            ("max_lr", _EMPTY),
            ("min_lr", 0.0),
            ("warmup_steps", 0),
            ("weight_decay", 0.0),
            ("grad_clip", None),
            ("eval_every", 100),
            ("eval_iters", 20),
            ("log_every", 10),
            ("generator", None),
            ("device", "auto"),
            ("optimizer", "sgd"),
            ("betas", (0.9, 0.999)),
            ("grad_accum_steps", 1),
            ("autocast_dtype", None),
        ],
    ),
    ("g2c.pretraining:Trainer.lr", [("self", _EMPTY), ("step", None)]),
    ("g2c.pretraining:Trainer.train_step", [("self", _EMPTY), ("train_ids", _EMPTY)]),
    ("g2c.pretraining:Trainer.evaluate", [("self", _EMPTY), ("ids", _EMPTY)]),
    (
        "g2c.pretraining:Trainer.train",
        [
            ("self", _EMPTY),
            ("train_ids", _EMPTY),
            ("val_ids", None),
            ("on_log", None),
            ("history", None),
            ("checkpoint_path", None),
            ("checkpoint_every", "ANY"),
            ("checkpoint_extra", None),
        ],
    ),
    (
        "g2c.pretraining:Trainer.save_checkpoint",
        [("self", _EMPTY), ("path", _EMPTY), ("history", None), ("extra", None)],
    ),
    ("g2c.pretraining:Trainer.load_checkpoint", [("self", _EMPTY), ("path", _EMPTY)]),
    ("g2c.sampling:apply_temperature", [("logits", _EMPTY), ("temperature", _EMPTY)]),
    ("g2c.sampling:top_k_filter", [("logits", _EMPTY), ("k", _EMPTY)]),
    ("g2c.sampling:top_p_filter", [("logits", _EMPTY), ("p", _EMPTY)]),
    (
        "g2c.sampling:apply_repetition_penalty",
        [("logits", _EMPTY), ("prev_ids", _EMPTY), ("penalty", _EMPTY)],
    ),
    (
        "g2c.sampling:generate",
        [
            ("model", _EMPTY),
            ("prompt", _EMPTY),
            ("max_new_tokens", _EMPTY),
            ("temperature", 1.0),
            ("top_k", None),
            ("top_p", None),
            ("repetition_penalty", 1.0),
            ("eos_id", None),
            ("generator", None),
        ],
    ),
]


def _resolve(qualname: str):
    module, _, attr = qualname.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("qualname, expected", SIGNATURES, ids=[q for q, _ in SIGNATURES])
def test_signature_matches_api(qualname, expected):
    from g2c.tokenizer import GPT4_SPLIT_PATTERN

    params = list(inspect.signature(_resolve(qualname)).parameters.values())
    keyword_only = False
    i = 0
    for item in expected:
        if item == "*":
            keyword_only = True
            continue
        name, default = item
        assert i < len(params), f"{qualname}: missing parameter {name!r}"
        p = params[i]
        assert p.name == name, f"{qualname}: parameter {i} is {p.name!r}, API.md says {name!r}"
        if default == "GPT4":
            default = GPT4_SPLIT_PATTERN
        if default != "ANY":
            assert p.default == default, (
                f"{qualname}({name}=...) default {p.default!r} != {default!r}"
            )
        if keyword_only:
            assert p.kind == _KW, f"{qualname}: {name} should be keyword-only"
        else:
            assert p.kind != _KW, f"{qualname}: {name} should be positional-or-keyword"
        i += 1
    # extras beyond API.md: keyword-only (or **kwargs) with a default, so API.md calls behave
    for p in params[i:]:
        if p.kind in (inspect.Parameter.VAR_KEYWORD, _VAR_POS):
            continue
        assert p.default is not _EMPTY, f"{qualname}: extra {p.name!r} needs a default"


def test_bpe_classmethods_are_classmethods():
    from g2c.tokenizer import BPETokenizer

    for name in ("from_dict", "load", "from_gpt2_files", "with_course_special_tokens"):
        assert isinstance(inspect.getattr_static(BPETokenizer, name), classmethod), name


def test_sequential_takes_layers_as_varargs():
    from g2c.nn import Sequential

    (p,) = inspect.signature(Sequential).parameters.values()
    assert p.kind == _VAR_POS


# -- 3. one-line behaviours ------------------------------------------------------------------
# 01 autodiff
def test_autodiff_value_contract():
    from g2c.autodiff import Value, numerical_grad, zero_grad

    v = Value(2.0)
    assert isinstance(v.data, float) and v.grad == 0.0
    exprs = [v + 1, 1 + v, v - 1, 1 - v, v * 3, 2 * v, v / 4, 1 / v, v**2, v**-1, -v]
    expected = [3.0, 3.0, 1.0, -1.0, 6.0, 4.0, 0.5, 0.5, 4.0, 0.5, -2.0]
    assert [e.data for e in exprs] == pytest.approx(expected)
    assert [f(Value(0.0)).data for f in (Value.exp, Value.tanh, Value.relu)] == [1.0, 0.0, 0.0]
    assert Value(math.e).log().data == pytest.approx(1.0)
    r = Value(0.0)
    r.relu().backward()
    assert r.grad == 0.0  # relu'(0) = 0

    a = Value(3.0)
    f = a * a + a
    f.backward()
    assert a.grad == pytest.approx(2 * 3.0 + 1)  # shared sub-expressions accumulate
    zero_grad([a])
    assert a.grad == 0.0
    g = numerical_grad(lambda x: x * x + x, Value(3.0))
    assert isinstance(g, float) and g == pytest.approx(7.0, rel=1e-6)
    assert numerical_grad(lambda x: x.exp(), Value(0.0), h=1e-4) == pytest.approx(1.0, rel=1e-6)


def test_autodiff_deep_chain_backward_is_iterative():
    from g2c.autodiff import Value

    x = Value(1.0)
    y = x
    for _ in range(100_000):
        y = y + 0.0
    y.backward()
    assert x.grad == 1.0


def test_autodiff_neurons_and_xor():
    from g2c.autodiff import (
        ScalarMLP,
        ScalarNeuron,
        Value,
        single_neuron_forward,
        train_xor_step,
        xor_loss,
    )

    n = ScalarNeuron(3, rng=random.Random(0))
    assert len(n.w) == 3 and isinstance(n.b, Value) and len(n.parameters()) == 4
    x = [0.5, -1.0, 2.0]
    out = n(x)
    pre = sum(wi.data * xi for wi, xi in zip(n.w, x)) + n.b.data
    assert isinstance(out, Value) and out.data == pytest.approx(math.tanh(pre))
    with pytest.raises(ValueError):
        ScalarNeuron(0)
    with pytest.raises(ValueError):
        n([1.0, 2.0])

    assert single_neuron_forward(1.0, 2.0, 0.5, -0.25, 0.1).data == pytest.approx(math.tanh(0.1))
    mlp = ScalarMLP(rng=random.Random(0))
    assert len(mlp.parameters()) == 9 and isinstance(mlp((0.0, 1.0)), Value)
    losses = [xor_loss(mlp).data]
    for _ in range(30):
        train_xor_step(mlp, lr=0.5)
    losses.append(xor_loss(mlp).data)
    assert losses[0] >= 0 and losses[1] < losses[0]


# 03 nn
def test_nn_module_linear_and_containers():
    from g2c.nn import GELU, Dropout, Linear, Module, ReLU, Sequential, Sigmoid, Tanh

    assert Module().parameters() == []
    lin = Linear(4, 3)
    assert lin.W.shape == (4, 3) and lin.b.shape == (3,)
    assert lin.W.requires_grad and lin.b.requires_grad and torch.equal(lin.b, torch.zeros(3))
    x = torch.randn(5, 4)
    torch.testing.assert_close(lin(x), x @ lin.W + lin.b)
    big = Linear(400, 50, generator=torch.Generator().manual_seed(0))
    assert big.W.std().item() < 1.5 / math.sqrt(400)  # init scaled by 1/√in
    for act in (ReLU(), Tanh(), Sigmoid(), GELU()):
        assert act.parameters() == []
    seq = Sequential(Linear(4, 8), ReLU(), Dropout(0.5), Linear(8, 2))
    assert len(seq.parameters()) == 4 and seq(x).shape == (5, 2)
    seq.eval()
    assert seq(x).shape == (5, 2) and torch.equal(seq(x), seq(x))  # dropout off in eval
    assert seq.train() is seq


def test_nn_losses_sgd_and_device():
    from g2c.nn import SGD, CrossEntropyLoss, Linear, MSELoss, resolve_device

    C = 7
    loss = CrossEntropyLoss()(torch.zeros(4, C), torch.tensor([0, 1, 2, 6]))
    assert loss.item() == pytest.approx(math.log(C), abs=1e-6)
    assert torch.isfinite(CrossEntropyLoss()(torch.tensor([[1e4, -1e4]]), torch.tensor([1])))
    assert MSELoss()(torch.ones(3), torch.zeros(3)).item() == pytest.approx(1.0)

    lin = Linear(2, 1)
    frozen = torch.ones(2, requires_grad=True)  # no grad → skipped
    opt = SGD([lin.W, lin.b, frozen], lr=0.1, weight_decay=0.5)
    lin(torch.ones(1, 2)).sum().backward()
    W0 = lin.W.detach().clone()
    opt.step()
    torch.testing.assert_close(lin.W.detach(), W0 - 0.1 * (torch.ones(2, 1) + 0.5 * W0))
    assert lin.W.grad_fn is None and torch.equal(frozen.detach(), torch.ones(2))
    opt.zero_grad()
    assert lin.W.grad is None or not lin.W.grad.any()
    with pytest.raises(ValueError, match="x must"):  # bad input names the argument
        lin(torch.ones(2, 3))
    assert resolve_device("cpu") == torch.device("cpu")
    assert isinstance(resolve_device("auto"), torch.device)


# 03B training
def test_training_adamw_attributes_and_decoupled_decay():
    from g2c.training import AdamW

    p = torch.ones(3, requires_grad=True)
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    for name in ("params", "lr", "beta1", "beta2", "eps", "weight_decay", "step_count", "m", "v"):
        assert hasattr(opt, name), f"AdamW.{name} missing"
    assert (opt.beta1, opt.beta2, opt.eps) == (0.9, 0.999, 1e-8)
    p.grad = torch.zeros(3)
    opt.step()  # zero gradient: only the decoupled decay p ← p·(1 − lr·wd) acts
    torch.testing.assert_close(p.detach(), torch.full((3,), 1 - 0.1 * 0.5))
    assert opt.step_count == 1
    state = opt.state_dict()
    opt2 = AdamW([torch.ones(3, requires_grad=True)], lr=0.1, weight_decay=0.5)
    opt2.load_state_dict(state)
    assert opt2.step_count == 1


def test_training_clip_grad_norm_and_cosine_schedule():
    from g2c.training import clip_grad_norm_, cosine_with_warmup

    a, b, c = (torch.zeros(2, requires_grad=True) for _ in range(3))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])  # c.grad None
    assert clip_grad_norm_([a, b, c], max_norm=1.0) == pytest.approx(5.0)  # before clipping
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.0]), atol=1e-5, rtol=0)
    assert clip_grad_norm_([], 1.0) == 0.0

    W, M, hi, lo = 4, 20, 1.0, 0.1
    for s in range(W):
        assert cosine_with_warmup(s, W, M, hi, lo) == pytest.approx(hi * (s + 1) / W)
    assert cosine_with_warmup(W, W, M, hi, lo) == pytest.approx(hi)
    mid = W + (M - W) // 2
    assert cosine_with_warmup(mid, W, M, hi, lo) == pytest.approx((hi + lo) / 2)
    assert cosine_with_warmup(M, W, M, hi, lo) == pytest.approx(lo)
    assert cosine_with_warmup(M + 5, W, M, hi, lo) == pytest.approx(lo)
    assert cosine_with_warmup(0, 0, M, hi) == pytest.approx(hi)  # warmup_steps = 0 allowed


# 04 tokenizer
def test_tokenizer_layout_specials_and_training():
    from g2c.tokenizer import COURSE_SPECIAL_TOKENS, BPETokenizer

    assert isinstance(COURSE_SPECIAL_TOKENS, tuple) and COURSE_SPECIAL_TOKENS[0] == "<|endoftext|>"
    assert {"<|user|>", "<|assistant|>", "<|end|>"} <= set(COURSE_SPECIAL_TOKENS)
    tok = BPETokenizer.with_course_special_tokens()
    assert tok.special_to_id["<|endoftext|>"] == 256
    assert tok.base_vocab_size == 256 + len(COURSE_SPECIAL_TOKENS)
    assert all(tok.vocab[i] == bytes([i]) for i in range(256))
    assert tok.id_to_special[256] == "<|endoftext|>" and 256 in tok.special_token_ids
    assert tuple(tok.special_tokens) == COURSE_SPECIAL_TOKENS
    with pytest.raises(ValueError):
        BPETokenizer(special_tokens=("<|a|>", "<|a|>"))

    assert tok._get_pair_counts([1, 2, 1, 2, 3]) == {(1, 2): 2, (2, 1): 1, (2, 3): 1}
    assert tok._merge([1, 1, 1, 2], (1, 1), 300) == [300, 1, 2]  # left-to-right, no overlap
    text = "low lower lowest <|endoftext|> newer newest " * 4
    ids = tok.train(text, tok.base_vocab_size + 10)
    fast = BPETokenizer.with_course_special_tokens()
    fast_ids = fast.train_fast(text, fast.base_vocab_size + 10)
    assert list(tok.merges) == list(fast.merges) and list(ids) == list(fast_ids)
    assert tok.special_to_id["<|endoftext|>"] in ids  # specials atomic in training input
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer().train("abc", 10)

    s = "newest lowest ünïcödé 🙂 <|endoftext|>"
    assert tok.decode(tok.encode(s)) == s and tok.encode_fast(s) == tok.encode(s)
    end = tok.special_to_id["<|end|>"]
    assert tok.encode_base("é<|end|>") == [*"é".encode(), end]  # bytes + atomic specials
    assert tok.encode_at_vocab(s, tok.base_vocab_size) == tok.encode_base(s, allowed_special=())
    assert len(tok.encode(s)) <= len(tok.encode_at_vocab(s, tok.base_vocab_size + 3))


def test_tokenizer_persistence_and_char(tmp_path):
    from g2c.tokenizer import BPETokenizer, CharTokenizer
    from g2c.tokenizer.persistence import (
        load_artifact,
        load_token_ids,
        save_artifact,
        save_token_ids,
    )

    tok = BPETokenizer.with_course_special_tokens()
    ids = tok.train("aaab aaab abab " * 3, tok.base_vocab_size + 3)
    d = tok.to_dict()
    assert (d["format"], d["version"]) == ("g2c.bpe", 2)
    assert list(d["special_tokens"]) == list(tok.special_tokens)
    assert [list(m) for m in d["merges"]] == [[a, b, i] for (a, b), i in tok.merges.items()]
    with pytest.raises(ValueError, match="g2c.bpe"):
        BPETokenizer.from_dict({**d, "format": "other"})
    tok.save(tmp_path / "tok.json")
    assert BPETokenizer.load(tmp_path / "tok.json").merges == tok.merges
    save_artifact(tok, ids, {"name": "t"}, tmp_path / "art")
    tok2, ids2, manifest = load_artifact(BPETokenizer, tmp_path / "art")
    assert tok2.merges == tok.merges and list(ids2) == list(ids) and isinstance(manifest, dict)

    tt, hf = tok.to_tiktoken(), tok.to_hf_tokenizer()  # interop: identical ids
    text = "aab abab<|endoftext|>b"
    assert tt.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert hf.encode(text).ids == tok.encode(text, allowed_special="all")
    step = BPETokenizer().train_step([1, 2, 1, 2, 3])
    assert step is not None and step[1:] == ((1, 2), 2) and list(step[0]) == [256, 256, 3]
    assert BPETokenizer().train_step([5]) is None

    for ids_in, nbytes in (([0, 5, 65535], 2), ([0, 70_000], 4)):  # uint16 / uint32 binary
        path = save_token_ids(tmp_path / f"ids{nbytes}.bin", ids_in)
        assert load_token_ids(path).tolist() == ids_in
        assert path.stat().st_size == nbytes * len(ids_in)

    ct = CharTokenizer("hello")
    assert ct.decode(ct.encode("hello")) == "hello"


# 07–08 attention
def test_self_attention_contract():
    from g2c.attention import SelfAttention
    from g2c.nn import Linear

    D, T = 8, 5
    att = SelfAttention(D)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert isinstance(getattr(att, name), Linear)
    m = att.causal_mask(T)
    assert m.dtype == torch.bool and torch.equal(m, torch.ones(T, T, dtype=torch.bool).triu(1))
    x = torch.randn(2, T, D)
    assert att(x).shape == (2, T, D)
    w = att.attention_weights(x)
    assert w.shape == (2, T, T)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, T))
    assert not w[m.expand(2, T, T)].any()
    q, k = att.q_proj(x), att.k_proj(x)
    ref = torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(D)).masked_fill(m, -math.inf), -1)
    torch.testing.assert_close(w, ref)  # scaled by 1/√D


def test_multi_head_attention_contract():
    from g2c.attention import MultiHeadAttention
    from g2c.transformer import LayerKVCache

    D, T = 12, 4
    for H in (1, 2, 3, 6):
        assert len(MultiHeadAttention(D, H).parameters()) == 8
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(D, 5)
    mha = MultiHeadAttention(D, 3)
    x = torch.randn(2, T, D)
    assert mha(x).shape == (2, T, D) and mha.attention_weights(x).shape == (2, 3, T, T)
    sdpa = MultiHeadAttention(D, 3, attention_impl="sdpa")
    sdpa.load_state_dict(mha.state_dict())
    torch.testing.assert_close(sdpa(x), mha(x), atol=1e-5, rtol=0)

    cache = LayerKVCache()
    outs = []
    for t in range(T):
        out, cache = mha.forward_cached(x[:, t : t + 1], cache)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), mha(x), atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        mha.forward_cached(x[:, :2], LayerKVCache())
    with pytest.raises(ValueError):
        MultiHeadAttention(D, 3, causal=False).forward_cached(x[:, :1], LayerKVCache())


# 09 transformer
def test_transformer_layers_contract():
    from g2c.nn import GELU, Linear
    from g2c.transformer import Block, FeedForward, LayerNorm

    ln = LayerNorm(6)
    assert torch.equal(ln.gamma, torch.ones(6)) and torch.equal(ln.beta, torch.zeros(6))
    y = ln(torch.full((2, 6), 3.0))
    assert torch.isfinite(y).all() and torch.equal(y, torch.zeros(2, 6))  # constant row
    x = torch.randn(3, 6)
    ref = (x - x.mean(-1, keepdim=True)) / torch.sqrt(
        x.var(-1, unbiased=False, keepdim=True) + 1e-5
    )
    torch.testing.assert_close(ln(x), ref)  # biased variance

    ffn = FeedForward(6)
    assert isinstance(ffn.fc1, Linear) and isinstance(ffn.fc2, Linear)
    assert ffn.fc1.W.shape == (6, 24) and ffn.fc2.W.shape == (24, 6)  # hidden_dim = 4·D
    torch.testing.assert_close(ffn(x), ffn.fc2(GELU()(ffn.fc1(x))))

    blk = Block(6, 2)
    for name in ("ln1", "attn", "ln2", "ffn"):
        assert hasattr(blk, name), f"Block.{name} missing"
    xb = torch.randn(2, 3, 6)
    a = xb + blk.attn(blk.ln1(xb))
    torch.testing.assert_close(blk(xb), a + blk.ffn(blk.ln2(a)))  # pre-norm residuals


def test_transformer_lm_contract():
    from g2c.embeddings import LearnedPositionalEmbedding
    from g2c.transformer import TransformerLM

    V, T = 11, 6
    model = TransformerLM(V, 8, 2, 2, T, generator=torch.Generator().manual_seed(0))
    for name in ("token_embed", "pos_embed", "blocks", "ln_final", "head_bias", "max_seq_len"):
        assert hasattr(model, name), f"TransformerLM.{name} missing"
    assert isinstance(model.pos_embed, LearnedPositionalEmbedding) and len(model.blocks) == 2
    assert model.max_seq_len == T and model.head_bias.requires_grad
    idx = torch.randint(0, V, (2, T))
    logits = model(idx)
    assert logits.shape == (2, T, V)
    with torch.no_grad():  # the head is the tied token_embed.weight (+ head_bias)
        model.head_bias.fill_(0.5)
        model.token_embed.weight.mul_(2.0)
    x = model.token_embed.weight[idx] + model.pos_embed(seq_len=T)
    for block in model.blocks:
        x = block(x)
    expected = model.ln_final(x) @ model.token_embed.weight.T + model.head_bias
    torch.testing.assert_close(model(idx), expected)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, T + 1, dtype=torch.long))
    assert isinstance(model.num_parameters(), int)
    assert isinstance(model.estimate_flops_per_token(), int)
    cfg = type(model.config).from_json(model.config.to_json())
    assert cfg == model.config


# 09B/10 pretraining
def test_pretraining_data_and_loss():
    from g2c.pretraining import get_lm_batch, lm_cross_entropy, split_token_stream

    with pytest.raises(ValueError, match="1-D"):
        split_token_stream(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        split_token_stream(torch.arange(3), 0.1)
    for frac in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            split_token_stream(torch.arange(10), frac)
    g = torch.Generator().manual_seed(1)
    x, y = get_lm_batch(torch.arange(50), 3, 5, generator=g)
    assert x.shape == y.shape == (3, 5) and torch.equal(y, x + 1)
    x2, _ = get_lm_batch(torch.arange(50), 3, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, x2)
    with pytest.raises(ValueError):
        get_lm_batch(torch.arange(4), 2, 5)
    loss = lm_cross_entropy(torch.zeros(2, 3, 13), torch.zeros(2, 3, dtype=torch.long))
    assert loss.dim() == 0 and loss.item() == pytest.approx(math.log(13), abs=1e-6)


def _tiny_trainer(**kw):
    from g2c.pretraining import Trainer
    from g2c.transformer import TransformerLM

    model = TransformerLM(13, 8, 1, 2, 8, generator=torch.Generator().manual_seed(0))
    args = dict(batch_size=2, context_length=8, max_steps=6, max_lr=1e-2, device="cpu")
    args.update(kw)
    return Trainer(model, **args)


def test_trainer_contract(tmp_path):
    from g2c.nn import SGD
    from g2c.pretraining import empty_training_history
    from g2c.training import AdamW, cosine_with_warmup

    keys = ["step", "train_loss", "lr", "grad_norm", "val_step", "val_loss"]
    hist = empty_training_history()
    assert set(hist) == set(keys) and all(v == [] for v in hist.values())
    with pytest.raises(ValueError, match="optimizer"):
        _tiny_trainer(optimizer="bogus")
    assert isinstance(_tiny_trainer().optimizer, SGD)
    tr = _tiny_trainer(optimizer="adamw", warmup_steps=2, min_lr=1e-3, generator=None)
    assert isinstance(tr.optimizer, AdamW) and tr.optimizer_name == "adamw"
    assert tr.device == torch.device("cpu") and tr.step == 0
    for name in ("batch_size", "context_length", "max_steps", "max_lr", "min_lr", "warmup_steps"):
        assert hasattr(tr, name)
    assert tr.lr() == cosine_with_warmup(0, 2, 6, 1e-2, 1e-3)
    assert tr.lr(4) == cosine_with_warmup(4, 2, 6, 1e-2, 1e-3)

    ids = torch.randint(0, 13, (200,), generator=torch.Generator().manual_seed(0))
    out = tr.train_step(ids)
    assert list(out) == ["loss", "lr", "grad_norm"] and tr.step == 1
    assert out["grad_norm"] == 0.0  # no clipping configured
    assert out["lr"] == cosine_with_warmup(0, 2, 6, 1e-2, 1e-3) == tr.optimizer.lr

    tr.model.train()
    grads = [None if p.grad is None else p.grad.clone() for p in tr.model.parameters()]
    val = tr.evaluate(ids)
    assert isinstance(val, float) and tr.model.training
    for p, g in zip(tr.model.parameters(), grads):  # evaluate leaves no grads behind
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)

    events = []
    hist = tr.train(ids, val_ids=ids, on_log=events.append)
    assert set(keys) <= set(hist) and hist["step"] and tr.step == 6
    logged = ("step", "train_loss", "val_loss", "lr", "grad_norm", "elapsed_s", "steps_per_s")
    for key in (*logged, "tokens_per_s", "mfu"):
        assert key in events[-1], f"on_log event misses {key}"
    n_steps = len(hist["step"])
    tr.max_steps = 7
    assert tr.train(ids, history=hist) is hist and len(hist["step"]) == n_steps + 1  # appends

    path = tr.save_checkpoint(tmp_path / "ck.pt", history=hist, extra={"note": "x"})
    state = torch.load(path, weights_only=True)
    assert {"trainer", "history", "extra", "model", "optimizer"} <= set(state)
    assert state["trainer"]["step"] == tr.step == 7 and state["extra"] == {"note": "x"}
    tr2 = _tiny_trainer(optimizer="adamw", warmup_steps=2, min_lr=1e-3)
    loaded = tr2.load_checkpoint(path)
    assert tr2.step == 7 and loaded["history"] == hist and loaded["extra"] == {"note": "x"}
    assert tr2.optimizer.step_count == tr.optimizer.step_count
    for a, b in zip(tr2.optimizer.m, tr.optimizer.m):
        torch.testing.assert_close(a, b)


# 11 sampling
def test_sampling_filters_contract():
    from g2c.sampling import apply_repetition_penalty, apply_temperature, top_k_filter, top_p_filter

    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    torch.testing.assert_close(apply_temperature(logits, 2.0), logits / 2)
    for t in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            apply_temperature(logits, t)
    k2 = top_k_filter(logits, 2)
    assert torch.equal(torch.isinf(k2), torch.tensor([[False, False, True, True]]))
    assert torch.equal(top_k_filter(logits, 10), logits)
    with pytest.raises(ValueError, match="k must"):
        top_k_filter(logits, 0)
    peaked = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    kept = top_p_filter(peaked, 1e-6)
    assert kept[0, 0] == 10.0 and torch.isinf(kept[0, 1:]).all()  # argmax always survives
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    for p in (0.0, 1.5):
        with pytest.raises(ValueError, match="p must"):
            top_p_filter(logits, p)

    two = torch.tensor([[2.0, -2.0, 1.0], [4.0, -4.0, 1.0]])
    pen = apply_repetition_penalty(two, torch.tensor([0, 1]), 2.0)  # 1-D prev broadcasts
    torch.testing.assert_close(pen, torch.tensor([[1.0, -4.0, 1.0], [2.0, -8.0, 1.0]]))
    with pytest.raises(ValueError, match="penalty"):
        apply_repetition_penalty(two, torch.tensor([0]), 0.0)


def test_generate_contract():
    from g2c.sampling import generate
    from g2c.transformer import TransformerLM

    V = 11
    model = TransformerLM(V, 8, 1, 2, 6, generator=torch.Generator().manual_seed(0))
    prompt = torch.tensor([1, 2, 3])
    out = generate(model, prompt, 8, temperature=0.0)
    assert out.dim() == 1 and out.dtype == torch.long and len(out) == 3 + 8
    assert torch.equal(out[:3], prompt)  # prompt + new tokens; context cropped past 6
    no_cache = generate(model, prompt, 8, temperature=0.0, use_cache=False)
    assert torch.equal(out, no_cache)
    eos = int(out[3])
    assert generate(model, prompt, 8, temperature=0.0, eos_id=eos).tolist() == [1, 2, 3, eos]
    g1, g2 = (torch.Generator().manual_seed(5) for _ in range(2))
    assert torch.equal(
        generate(model, prompt, 5, generator=g1), generate(model, prompt, 5, generator=g2)
    )
    with pytest.raises(ValueError, match="temperature"):
        generate(model, prompt, 3, temperature=-1.0)
    with pytest.raises(ValueError, match="prompt"):
        generate(model, torch.tensor([], dtype=torch.long), 3)
