"""The package layering: no import cycle between the project's modules (imports inside functions
count too), and layers import downward only (models <- training; inference <- evaluation / serve /
heads; nothing in inference or evaluation imports training)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("elmd", "retrieval")

FORBIDDEN = {
    "elmd.models": ("elmd.training", "elmd.inference", "elmd.evaluation", "elmd.serve", "elmd.heads", "elmd.cli"),
    "elmd.data": ("elmd.models", "elmd.training", "elmd.inference", "elmd.evaluation", "elmd.serve", "elmd.cli"),
    "elmd.training": ("elmd.inference", "elmd.evaluation", "elmd.serve", "elmd.cli"),
    "elmd.inference": ("elmd.training", "elmd.evaluation", "elmd.serve", "elmd.cli"),
    "elmd.evaluation": ("elmd.training", "elmd.serve", "elmd.cli"),
    "retrieval": ("elmd.models", "elmd.training", "elmd.inference", "elmd.evaluation", "elmd.serve", "elmd.cli"),
}
"""Module prefix -> prefixes it must never import."""


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file, with the packages whose
    ``__init__`` such an import runs (not ``name``'s own packages: they are already running)."""
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    found |= {".".join(m.split(".")[:k]) for m in found for k in range(1, m.count(".") + 1)}  # parents run too
    return {m for m in found if m in known and m != name and not name.startswith(m + ".")}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports_of(n, p, set(mods)) for n, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_layers_import_downward_only():
    bad = []
    for name, deps in graph().items():
        for prefix, banned in FORBIDDEN.items():
            if name == prefix or name.startswith(prefix + "."):
                bad += [f"{name} -> {d}" for d in deps if any(d == b or d.startswith(b + ".") for b in banned)]
    assert bad == []
