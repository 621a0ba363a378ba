"""g2c — From Gradients to ChatGPT.

One package that builds every layer of a language-model stack from first principles, in
course order: autodiff → tensors → nn → training → tokenizer → embeddings → lm → attention →
transformer → pretraining → sampling → ... Each topic is a subpackage; see docs/modules/.
"""

__version__ = "0.1.0"
