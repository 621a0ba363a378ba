"""06 lm — language models before the transformer, on characters.

Counts bigram → neural bigram → Bengio MLP → vanilla RNN → LSTM → WaveNet-style hierarchy, all
behind one interface (``model.context_length``; ``model(x (B, ctx)) → (B, V)`` next-token
logits) so ``get_batch``, ``perplexity``, ``sample`` and ``train_lm`` work on every one of them,
and ``compare_models`` scores them on the same TinyShakespeare validation targets.
``copy_task`` holds the copy / reverse-sequence task on which attention beats recurrence
(``examples/08_copy_reverse.py``).
"""

from g2c.lm.bigram import CountsBigramLM, NeuralBigramLM
from g2c.lm.compare import (
    CompareConfig,
    compare_models,
    count_parameters,
    plot_val_curves,
    results_markdown,
)
from g2c.lm.copy_task import COPY_TASKS, copy_task_accuracy, copy_task_loss, make_copy_batch
from g2c.lm.data import char_split
from g2c.lm.mlp import MLPLanguageModel
from g2c.lm.models import MODEL_NAMES, MODELS, LMConfig, build_model, load_lm, save_lm
from g2c.lm.rnn import LSTMCell, LSTMLanguageModel, RNNCell, RNNLanguageModel
from g2c.lm.train import (
    LMTrainSettings,
    bits_per_token,
    get_batch,
    perplexity,
    sample,
    train_lm,
)
from g2c.lm.wavenet import FlattenConsecutive, WaveNetLM

__all__ = [
    "LMTrainSettings",
    "CountsBigramLM",
    "NeuralBigramLM",
    "MLPLanguageModel",
    "RNNCell",
    "LSTMCell",
    "RNNLanguageModel",
    "LSTMLanguageModel",
    "FlattenConsecutive",
    "WaveNetLM",
    "get_batch",
    "perplexity",
    "bits_per_token",
    "sample",
    "train_lm",
    "LMConfig",
    "MODEL_NAMES",
    "MODELS",
    "build_model",
    "save_lm",
    "load_lm",
    "char_split",
    "COPY_TASKS",
    "make_copy_batch",
    "copy_task_loss",
    "copy_task_accuracy",
    "CompareConfig",
    "compare_models",
    "count_parameters",
    "results_markdown",
    "plot_val_curves",
]
