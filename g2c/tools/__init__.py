"""18 tools — functions a language model can call, and the loop that lets it.

- :mod:`g2c.tools.core`: :class:`Tool`, :class:`ToolCall`, :class:`ToolResult`,
  :class:`ToolError`, :class:`ToolRegistry`, :func:`validate_arguments` (jsonschema),
  :func:`render_tools_for_prompt`, :func:`parse_tool_calls` (``<tool_call>`` blocks, fenced
  JSON, OpenAI-style native calls), :func:`format_tool_results`, :func:`dispatch_tool_call`
  (errors, hangs and floods become error results), :func:`run_with_tools`.
- :mod:`g2c.tools.builtin`: ``calculator`` (AST-only), ``read_file`` / ``list_dir`` /
  ``write_file`` confined to a root, ``run_python`` on :func:`g2c.eval.sandbox.run_in_sandbox`,
  ``web_search`` over any search callable (a local RAG index).
- :mod:`g2c.tools.measure`: the module's two measurements — valid-call rate with and without
  schema-constrained decoding, and arithmetic accuracy with and without the calculator.
"""

from g2c.tools.builtin import (
    calculator_evaluate,
    default_registry_tools,
    format_number,
    keyword_search,
    make_calculator,
    make_file_tools,
    make_list_dir,
    make_read_file,
    make_run_python,
    make_web_search,
    make_write_file,
    resolve_in_root,
)
from g2c.tools.core import (
    ParsedToolCalls,
    Tool,
    ToolCall,
    ToolError,
    ToolRegistry,
    ToolResult,
    ToolRunResult,
    dispatch_tool_call,
    format_tool_results,
    parse_tool_calls,
    render_tools_for_prompt,
    run_with_tools,
    validate_arguments,
)
from g2c.tools.measure import (
    TOOL_CALL_PROMPTS,
    ArithmeticReport,
    ValidityReport,
    arithmetic_accuracy,
    arithmetic_questions,
    extract_number,
    open_backend,
    tool_call_validity,
)

__all__ = [
    "Tool",
    "ToolCall",
    "ToolResult",
    "ToolError",
    "ToolRegistry",
    "ParsedToolCalls",
    "ToolRunResult",
    "validate_arguments",
    "render_tools_for_prompt",
    "parse_tool_calls",
    "format_tool_results",
    "dispatch_tool_call",
    "run_with_tools",
    "calculator_evaluate",
    "format_number",
    "make_calculator",
    "make_read_file",
    "make_list_dir",
    "make_write_file",
    "make_file_tools",
    "make_run_python",
    "make_web_search",
    "keyword_search",
    "resolve_in_root",
    "default_registry_tools",
    "open_backend",
    "TOOL_CALL_PROMPTS",
    "ValidityReport",
    "tool_call_validity",
    "ArithmeticReport",
    "arithmetic_questions",
    "arithmetic_accuracy",
    "extract_number",
]
