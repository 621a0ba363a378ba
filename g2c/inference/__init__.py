"""16 inference — from "I built it" to "I can use it".

- The engine (:mod:`g2c.inference.engine`): prefill / decode split, a pre-allocated KV cache
  (:class:`StaticKVCache`), left-padded static batches and continuous batching
  (:class:`Engine`, :class:`Request`, :class:`RequestHandle`), sampling controls, streaming,
  constrained decoding (JSON, JSON Schemas, tool calls); a compiled decode step
  (:class:`CompiledDecoder`, ``Engine(compile=True)``).
- Weight-only quantization (:mod:`g2c.inference.quant`) and speculative decoding
  (:mod:`g2c.inference.speculative`).
- Backends (:mod:`g2c.inference.backends`): one interface (:class:`Backend`) over g2c's own
  engine, Ollama, OpenAI-compatible servers, ``transformers`` and llama.cpp;
  :func:`benchmark` measures any of them.
"""

from g2c.inference.backends import (
    BACKEND_APIS,
    DEFAULT_OLLAMA_URL,
    DEFAULT_OPENAI_URL,
    Backend,
    BackendError,
    BackendInfo,
    ChatResult,
    InferenceResult,
    LlamaCppBackend,
    LocalTransformerBackend,
    OllamaBackend,
    OllamaError,
    OpenAIBackend,
    OpenAIError,
    TextStream,
    TransformersBackend,
    backend_from_spec,
    served_model,
)
from g2c.inference.benchmark import BenchmarkResult, benchmark, percentile
from g2c.inference.cache import CachePlan, StaticKVCache, StaticLayerKVCache
from g2c.inference.compiled import CompiledDecoder
from g2c.inference.constrained import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    SegmentConstraint,
    ToolCallConstraint,
    json_segments,
    parse_tool_call,
    schema_segments,
    tool_call_segments,
)
from g2c.inference.engine import DEFAULT_MAX_LEN, FINISH_REASONS, Engine, Request, RequestHandle
from g2c.inference.quant import (
    INT4_GROUP_SIZES,
    KERNELS,
    QUANT_MODES,
    QuantizedLinear,
    TorchQuantizedLinear,
    dequantize_int4,
    dequantize_int8,
    dequantize_model,
    kernel_supported,
    model_bytes,
    quantize_int4,
    quantize_int8,
    quantize_model,
)
from g2c.inference.speculative import (
    DraftModel,
    PromptLookup,
    SpeculativeResult,
    accept_or_resample,
    speculative_generate,
)

__all__ = [
    "Backend",
    "BackendInfo",
    "InferenceResult",
    "ChatResult",
    "TextStream",
    "LocalTransformerBackend",
    "OllamaBackend",
    "OllamaError",
    "OpenAIBackend",
    "OpenAIError",
    "BACKEND_APIS",
    "backend_from_spec",
    "served_model",
    "BackendError",
    "TransformersBackend",
    "LlamaCppBackend",
    "DEFAULT_OLLAMA_URL",
    "DEFAULT_OPENAI_URL",
    "benchmark",
    "BenchmarkResult",
    "percentile",
    "StaticKVCache",
    "StaticLayerKVCache",
    "CachePlan",
    "Engine",
    "CompiledDecoder",
    "Request",
    "RequestHandle",
    "FINISH_REASONS",
    "DEFAULT_MAX_LEN",
    # quantization (g2c.inference.quant)
    "QUANT_MODES",
    "INT4_GROUP_SIZES",
    "KERNELS",
    "QuantizedLinear",
    "TorchQuantizedLinear",
    "quantize_int8",
    "dequantize_int8",
    "quantize_int4",
    "dequantize_int4",
    "kernel_supported",
    "quantize_model",
    "dequantize_model",
    "model_bytes",
    # speculative decoding (g2c.inference.speculative)
    "DraftModel",
    "PromptLookup",
    "SpeculativeResult",
    "accept_or_resample",
    "speculative_generate",
    "SegmentConstraint",
    "ToolCallConstraint",
    "json_segments",
    "schema_segments",
    "tool_call_segments",
    "parse_tool_call",
    "TOOL_CALL_OPEN",
    "TOOL_CALL_CLOSE",
]
