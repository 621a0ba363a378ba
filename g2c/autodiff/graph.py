"""Seeing the computation graph: trace it, print it as text, or draw it with graphviz.

Each node of a :class:`~g2c.autodiff.Value` graph is shown with its operation, its ``data`` and
its ``grad``. ``draw_dot`` needs the optional ``graphviz`` Python package (not a g2c
dependency); ``draw_text`` needs nothing. Source: micrograd's ``trace_graph.ipynb`` (Karpathy).
"""

from __future__ import annotations

from typing import Any

from g2c.autodiff.engine import Value, topological_order


def trace(root: Value) -> tuple[list[Value], list[tuple[Value, Value]]]:
    """Nodes and edges of the graph that produced ``root``.

    Returns ``(nodes, edges)``: nodes in topological order (children first, ``root`` last);
    edges as ``(child, parent)`` pairs, one per use (``a * a`` gives two edges). ``root`` not a
    Value → TypeError.
    """
    nodes = topological_order(root)
    edges = [(child, node) for node in nodes for child in node._children]
    return nodes, edges


def draw_text(root: Value, precision: int = 4) -> str:
    """A text rendering of the graph, one line per node in topological order.

    Each line reads ``v3 = tanh(v2)  data=0.7616  grad=0.42``; leaves read ``v0 = leaf``
    (with the node's ``label`` in brackets when it has one). A plain number combined with a
    Value is not a node (it lives on in the local derivative), so ``v + 1`` reads ``+(v0)``.
    ``precision`` (significant digits, >= 1) else ValueError.
    """
    if precision < 1:
        raise ValueError(f"precision must be >= 1, got {precision}")
    nodes, _ = trace(root)
    names = {node: f"v{i}" for i, node in enumerate(nodes)}
    lines = []
    for node in nodes:
        name = names[node] + (f" [{node.label}]" if node.label else "")
        args = ", ".join(names[c] for c in node._children)
        expr = f"{node._op}({args})" if node._children else "leaf"
        lines.append(
            f"{name} = {expr}  data={node.data:.{precision}g}  grad={node.grad:.{precision}g}"
        )
    return "\n".join(lines)


def draw_dot(root: Value, rankdir: str = "LR") -> Any:
    """The graph as a ``graphviz.Digraph`` (render it with ``.render()`` or show it in Jupyter).

    One record node per Value (label | data | grad), plus a small op node feeding each
    non-leaf. ``rankdir`` is ``"LR"`` (left to right) or ``"TB"`` (top to bottom), else
    ValueError. Raises ModuleNotFoundError naming ``pip install graphviz`` when the optional
    ``graphviz`` package is missing.
    """
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"rankdir must be 'LR' or 'TB', got {rankdir!r}")
    try:
        import graphviz
    except ModuleNotFoundError as exc:  # optional dependency
        raise ModuleNotFoundError(
            "draw_dot needs the optional graphviz package: pip install graphviz "
            "(draw_text needs nothing)"
        ) from exc
    nodes, edges = trace(root)
    dot = graphviz.Digraph(format="svg", graph_attr={"rankdir": rankdir})
    for node in nodes:
        uid = str(id(node))
        text = f"{node.label} | data {node.data:.4f} | grad {node.grad:.4f}"
        dot.node(name=uid, label="{ " + text.lstrip(" |") + " }", shape="record")
        if node._op:
            dot.node(name=uid + node._op, label=node._op)
            dot.edge(uid + node._op, uid)
    for child, parent in edges:
        dot.edge(str(id(child)), str(id(parent)) + parent._op)
    return dot
