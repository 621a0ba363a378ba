"""The course order is the import order (ARCHITECTURE.md, docs/architecture.md).

Every ``g2c`` subpackage may import only subpackages that come before it in ``LAYERS``; no g2c
module hides a g2c import inside a function (the classic way to dodge an import cycle). The CLI
is the one exception to the second rule: it imports its stage lazily so ``g2c --help`` starts
fast, which is a start-up choice, not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "g2c"

# Lowest first. Names not built yet are listed so their place is fixed before they land.
LAYERS = [
    "artifacts",
    "data",
    "autodiff",
    "tensors",
    "classic",
    "nn",
    "training",
    "tokenizer",
    "embeddings",
    "lm",
    "attention",
    "transformer",
    "pretraining",
    "sampling",
    "sft",
    "lora",
    "dpo",
    "eval",
    "inference",
    "synth",
    "rag",
    "tools",
    "agent",
    "assistant",
    "serve",
    "runs",
    "cli",
]
LAZY_IMPORTS_ALLOWED = {"cli"}


def _package_of(path: Path) -> str | None:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else None


def _g2c_imports(tree: ast.AST):
    """Yield (node, imported g2c subpackage, inside_function) for every g2c import."""

    def visit(node: ast.AST, in_func: bool):
        for child in ast.iter_child_nodes(node):
            nested = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    parts = alias.name.split(".")
                    if parts[0] == "g2c" and len(parts) > 1:
                        yield child, parts[1], in_func
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                parts = child.module.split(".")
                if parts[0] == "g2c":
                    if len(parts) > 1:
                        yield child, parts[1], in_func
                    else:  # from g2c import x
                        for alias in child.names:
                            yield child, alias.name, in_func
            yield from visit(child, nested)

    yield from visit(tree, False)


def _modules():
    return sorted(p for p in ROOT.rglob("*.py") if _package_of(p) is not None)


def test_every_subpackage_has_a_place_in_the_course_order():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), f"add {sorted(packages - set(LAYERS))} to LAYERS"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_course_order(path: Path):
    package = _package_of(path)
    rank = LAYERS.index(package)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []
    for node, target, in_func in _g2c_imports(tree):
        if target not in LAYERS:
            continue  # e.g. `from g2c import __version__`
        if LAYERS.index(target) > rank:
            problems.append(f"line {node.lineno}: upward import of g2c.{target}")
        if in_func and target != package and package not in LAZY_IMPORTS_ALLOWED:
            problems.append(f"line {node.lineno}: g2c.{target} imported inside a function")
    assert not problems, f"{path.relative_to(ROOT.parent)}: " + "; ".join(problems)
