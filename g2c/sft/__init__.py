"""13 sft — supervised fine-tuning: chat templates, loss masks, packing, SFTTrainer.

A base language model continues text; a chat model answers turns. SFT (Ouyang et al. 2022,
InstructGPT) trains the base model on conversations rendered with a chat template, counting
the loss only on what the assistant says. Shapes: conversations → SFTExample(ids, mask) →
(x, y, loss_mask) (B, T) → a scalar loss.

- :mod:`~g2c.sft.template` — ``ChatTemplate`` (g2c's markers), ``JinjaChatTemplate`` (any
  model's Hugging Face template), ``render_with_mask``.
- :mod:`~g2c.sft.data` — ``pad_and_collate``, packing (``pack_examples``, ``collate_packed``).
- :mod:`~g2c.sft.loss` — ``masked_cross_entropy``, ``sft_loss`` (vocabulary projection only
  where the mask is 1).
- :mod:`~g2c.sft.trainer` — ``SFTTrainer`` (a specialisation of the training loop),
  ``sft_eval_loss``.
- :mod:`~g2c.sft.tasks` — a generated, exactly scored task family with a held-out split.
- :mod:`~g2c.sft.chat` — ``ChatSession``: multi-turn chat with history and streaming (``g2c chat``).
"""

from g2c.sft.chat import CHAT_FORMAT, ChatSession, TurnInfo, template_for
from g2c.sft.data import PackedRow, check_examples, collate_packed, pack_examples, pad_and_collate
from g2c.sft.loss import masked_cross_entropy, projected_token_nll, sft_loss, token_nll
from g2c.sft.tasks import (
    FAMILIES,
    IDENTITY_ANSWER,
    TaskItem,
    generate_tasks,
    is_heldout,
    score_answer,
)
from g2c.sft.template import (
    ROLES,
    BaseChatTemplate,
    ChatSpan,
    ChatTemplate,
    JinjaChatTemplate,
    SFTExample,
    check_messages,
    render_with_mask,
)
from g2c.sft.trainer import SFTConfig, SFTTrainer, sft_eval_loss

__all__ = [
    "CHAT_FORMAT",
    "ChatSession",
    "TurnInfo",
    "template_for",
    "ROLES",
    "BaseChatTemplate",
    "ChatSpan",
    "ChatTemplate",
    "JinjaChatTemplate",
    "SFTExample",
    "check_messages",
    "render_with_mask",
    "PackedRow",
    "check_examples",
    "pad_and_collate",
    "pack_examples",
    "collate_packed",
    "masked_cross_entropy",
    "sft_loss",
    "projected_token_nll",
    "token_nll",
    "SFTConfig",
    "SFTTrainer",
    "sft_eval_loss",
    "FAMILIES",
    "IDENTITY_ANSWER",
    "TaskItem",
    "generate_tasks",
    "is_heldout",
    "score_answer",
]
