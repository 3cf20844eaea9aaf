"""The package's shape, as the house rules state it: one-way imports (counting imports inside functions), no
module over 450 lines, no backend named outside optbench/backends/, clocks read only in optbench/measure/."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "optbench"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            edges[m] |= {t for t in targets if t in mods and t != m}
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_counting_imports_inside_functions():
    mods = _modules()
    assert _cycles(_edges(mods)) == []


def test_no_module_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}


def test_no_backend_named_outside_the_backends_package():
    from optbench.backends import all_backends

    names = set(all_backends())
    kinds = {"consumes", "reference_for", "source"}  # "torch" and "onnx" as kinds of model, not backends
    found = []
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG)
        if rel.parts[0] == "backends" or rel.name == "cache.py":  # cache.py names libraries whose versions key artifacts
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, (ast.Attribute, ast.Name)) and getattr(s, "attr", getattr(s, "id", "")) in kinds
                       for s in sides):
                    continue
                if any(isinstance(s, ast.Constant) and s.value in names for s in sides):
                    found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("startswith", "endswith"):
                for a in node.args:
                    for v in [a, *(a.elts if isinstance(a, ast.Tuple) else [])]:
                        if isinstance(v, ast.Constant) and isinstance(v.value, str) and \
                                any(v.value.startswith(n) for n in names):
                            found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_only_measure_reads_clocks():
    clocks = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter"), ("time", "perf_counter_ns"),
              ("time", "time_ns"), ("time", "monotonic_ns"), ("datetime", "now"), ("datetime", "utcnow"),
              ("date", "today")}
    found = []
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG)
        if rel.parts[0] == "measure":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in clocks:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert found == []
