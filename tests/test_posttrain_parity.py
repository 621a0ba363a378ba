"""The same losses as TRL: g2c's SFT loss and DPO loss on one fixed batch equal TRL's
``SFTTrainer.compute_loss`` / ``DPOTrainer`` loss within 1e-4, and a LoRA-adapted g2c model
equals a peft-adapted transformers model holding the same adapters within 1e-6 (float64).

A tiny random transformers ``LlamaForCausalLM`` is the shared model: g2c reads its weights with
``load_hf_llama`` (the SmolLM2 loader's mapping), so both sides hold the same numbers. The
batches are pre-tokenized (prompt / assistant masks from g2c's conventions), fed to TRL's own
collators and loss entry points (``compute_loss`` and ``DPOTrainer._compute_loss`` — the
function its training step calls). Skips with a reason when trl / peft are not installed
(optional extra ``posttrain``).
"""

from __future__ import annotations

import copy
import os
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
transformers = pytest.importorskip("transformers")
trl = pytest.importorskip(
    "trl", reason="trl not installed (optional extra: pip install g2c[posttrain])"
)
datasets = pytest.importorskip("datasets", reason="datasets not installed (comes with trl)")

from g2c.dpo import DPOTrainer, PreferenceExample, dpo_loss, pad_and_collate_pref, pair_logprobs  # noqa: E402
from g2c.sft import SFTExample, masked_cross_entropy, pad_and_collate, sft_loss  # noqa: E402
from g2c.transformer.gguf_loader import load_hf_llama  # noqa: E402

VOCAB = 64
PAD = 0


def _tiny_llama(seed: int = 0, dtype: torch.dtype = torch.float32):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        attn_implementation="eager", pad_token_id=PAD,
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # norm gains away from 1 and larger weights: logits far from uniform
        for name, p in hf.named_parameters():
            p.add_(0.2 * torch.randn_like(p)) if "norm" in name else p.mul_(3.0)
    return hf.to(dtype).eval()


def _tokenizer():
    """A word-level transformers tokenizer over ids 0..VOCAB-1 (TRL wants a processing class;
    the batches here are pre-tokenized, so it only supplies the pad token)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    vocab = {f"t{i}": i for i in range(VOCAB)}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="t1")),
        pad_token="t0", eos_token="t2", unk_token="t1",
    )  # fmt: skip
    return tok


def _sft_examples() -> list[SFTExample]:
    g = torch.Generator().manual_seed(1)
    out = []
    for n, start in ((20, 6), (13, 4), (17, 9)):  # ragged lengths: padding is exercised
        ids = torch.randint(3, VOCAB, (n,), generator=g).tolist()
        mask = [0] * start + [1] * (n - start)
        mask[start + 3] = 0  # a masked hole inside the assistant span (a second user turn)
        out.append(SFTExample(ids, mask))
    return out


def _pref_examples() -> list[PreferenceExample]:
    g = torch.Generator().manual_seed(2)

    def ids(n: int) -> list[int]:
        return torch.randint(3, VOCAB, (n,), generator=g).tolist()

    return [
        PreferenceExample(ids(p), ids(c), ids(r)) for p, c, r in ((7, 5, 9), (4, 8, 3), (10, 6, 6))
    ]


def _args(cls, tmp_path, **extra):
    return cls(
        output_dir=str(tmp_path), per_device_train_batch_size=3, max_steps=1, report_to=[],
        use_cpu=True, bf16=False, save_strategy="no", logging_strategy="no", disable_tqdm=True, **extra,
    )  # fmt: skip


def test_sft_loss_equals_trl_sft_trainer_loss(tmp_path):
    hf = _tiny_llama()
    model = load_hf_llama(hf)
    examples = _sft_examples()
    rows = [{"input_ids": list(ex.ids), "assistant_masks": list(ex.mask)} for ex in examples]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.SFTTrainer(
            model=hf, args=_args(trl.SFTConfig, tmp_path, max_length=None),
            train_dataset=datasets.Dataset.from_list(rows), processing_class=_tokenizer(),
        )  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(examples))])
    theirs = trainer.compute_loss(hf, batch)  # assistant-only loss (labels −100 elsewhere)
    theirs.backward()

    x, y, mask = pad_and_collate(examples, 32, PAD, pad_to_longest=True)
    model.train()
    ours, n = sft_loss(model, x, y, mask)  # the loss SFTTrainer trains with
    assert int(n) == int((batch["labels"][:, 1:] != -100).sum())
    assert abs(float(ours.detach()) - float(theirs.detach())) < 1e-4, (ours, theirs)
    with torch.no_grad():  # the full-logits formula agrees as well
        assert abs(float(masked_cross_entropy(model(x), y, mask)) - float(theirs)) < 1e-4
    ours.backward()  # and the gradient reaching the (tied) embedding
    g_ours = model.token_embed.weight.grad
    g_theirs = hf.model.embed_tokens.weight.grad
    torch.testing.assert_close(g_ours, g_theirs, atol=1e-4, rtol=1e-3)


class _PretokenizedDPOTrainer(trl.DPOTrainer):
    """TRL's DPOTrainer fed (prompt_ids, chosen_ids, rejected_ids) directly (its own
    preparation would tokenize text)."""

    def _prepare_dataset(self, dataset, *args, **kwargs):
        return dataset


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_dpo_loss_equals_trl_dpo_trainer_loss(tmp_path, loss_type):
    hf = _tiny_llama(seed=0)
    hf_ref = _tiny_llama(seed=1)  # a reference that differs: the loss is not just log 2
    examples = _pref_examples()
    rows = [
        {"prompt_ids": list(p), "chosen_ids": list(c), "rejected_ids": list(r)}
        for p, c, r in examples
    ]
    beta = 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = _PretokenizedDPOTrainer(
            model=hf, ref_model=hf_ref, processing_class=_tokenizer(),
            args=_args(trl.DPOConfig, tmp_path, beta=beta, loss_type=[loss_type], max_length=None),
            train_dataset=datasets.Dataset.from_list(rows),
        )  # fmt: skip
    batch = trainer.data_collator(rows)
    theirs = trainer._compute_loss(hf, batch, return_outputs=False)

    model, ref = load_hf_llama(hf), load_hf_llama(hf_ref)
    ours_trainer = DPOTrainer(
        model, ref_model=ref, examples=examples, max_seq_len=32, pad_id=PAD, beta=beta,
        batch_size=3, max_steps=1, max_lr=0.0, loss_type=loss_type,
    )  # fmt: skip
    g2c_batch = ours_trainer.collate(examples, torch.arange(len(examples)))
    ours, metrics = ours_trainer.loss_fn(model, g2c_batch)  # the loss DPOTrainer trains with
    assert abs(float(ours) - float(theirs)) < 1e-4, (loss_type, float(ours), float(theirs))
    if loss_type == "ipo":  # g2c's IPO rewards use per-token averages; TRL logs summed ones
        return
    logs = trainer._metrics["train" if hf.training else "eval"]
    assert abs(float(metrics["reward_margin"]) - logs["rewards/margins"][-1]) < 1e-4
    assert float(metrics["accuracy"]) == pytest.approx(logs["rewards/accuracies"][-1])


def test_dpo_loss_from_g2c_pieces_equals_trl_on_padded_max_length(tmp_path):
    """The public pieces (pad_and_collate_pref to max_seq_len, pair_logprobs, dpo_loss) give
    TRL's loss too: padding to max_seq_len changes nothing."""
    hf, hf_ref = _tiny_llama(seed=3), _tiny_llama(seed=4)
    examples = _pref_examples()
    rows = [
        {"prompt_ids": list(p), "chosen_ids": list(c), "rejected_ids": list(r)}
        for p, c, r in examples
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = _PretokenizedDPOTrainer(
            model=hf, ref_model=hf_ref, processing_class=_tokenizer(),
            args=_args(trl.DPOConfig, tmp_path, beta=0.1, max_length=None),
            train_dataset=datasets.Dataset.from_list(rows),
        )  # fmt: skip
    theirs = trainer._compute_loss(hf, trainer.data_collator(rows), return_outputs=False)
    model, ref = load_hf_llama(hf), load_hf_llama(hf_ref)
    chosen, rejected = pad_and_collate_pref(examples, 40, PAD)
    with torch.no_grad():
        ref_c, ref_r = pair_logprobs(ref, chosen, rejected)
    pol_c, pol_r = pair_logprobs(model, chosen, rejected)
    ours, _ = dpo_loss(pol_c, pol_r, ref_c, ref_r, beta=0.1)
    assert abs(float(ours) - float(theirs)) < 1e-4


def test_lora_model_equals_peft_model_with_the_same_adapters():
    peft = pytest.importorskip("peft", reason="peft not installed (optional extra: posttrain)")
    from g2c.lora import inject_lora

    hf = _tiny_llama(seed=5, dtype=torch.float64)
    model = load_hf_llama(hf).to(dtype=torch.float64)  # hf holds fp32-exact values
    inject_lora(model, ["q_proj", "v_proj", "down_proj"], rank=4, alpha=8)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                          target_modules=["q_proj", "v_proj", "down_proj"])  # fmt: skip
    ref = peft.get_peft_model(copy.deepcopy(hf), cfg).eval()
    g = torch.Generator().manual_seed(6)
    theirs_by_name = {
        n: m for n, m in ref.named_modules() if isinstance(m, peft.tuners.lora.Linear)
    }
    count = 0
    for name, layer in model.named_modules():
        if not hasattr(layer, "lora_A"):
            continue
        i, part, proj = name.split(".")[1], name.split(".")[2], name.split(".")[3]
        hf_part = {"attn": "self_attn", "ffn": "mlp"}[part]
        peft_layer = theirs_by_name[f"base_model.model.model.layers.{i}.{hf_part}.{proj}"]
        with torch.no_grad():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g, dtype=torch.float64))
            peft_layer.lora_A["default"].weight.copy_(layer.lora_A.T)  # peft: A (r, in)
            peft_layer.lora_B["default"].weight.copy_(layer.lora_B.T)  # peft: B (out, r)
        count += 1
    assert count == 6
    idx = torch.randint(0, VOCAB, (2, 24), generator=g)
    with torch.no_grad():
        ours, theirs = model(idx), ref(input_ids=idx).logits
        base = hf(input_ids=idx).logits
    assert (ours - base).abs().max() > 1e-2  # the adapters change the output
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
