"""The package's shape, as the house rules state it: one-way imports between modules and between packages
(counting imports inside functions), no backend named outside optbench/backends/, clocks read only in optbench/measure/
and optbench/clock.py (deadlines and stamps for everyone else)."""

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


def _edges(mods: dict[str, Path], sources: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Module → the package's modules it imports anywhere (inside functions too); ``sources`` replaces files' text."""
    sources = sources or {}
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(sources.get(m) or p.read_text())):
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


def _package(module: str) -> str:
    """optbench.report.render → optbench.report; a top-level module (optbench.cli) is its own package."""
    return ".".join(module.split(".")[:2])


def _package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m, targets in edges.items():
        out.setdefault(_package(m), set()).update(_package(t) for t in targets if _package(t) != _package(m))
    return out


def test_no_import_circle_counting_imports_inside_functions():
    assert _cycles(_edges(_modules())) == []


def test_no_import_circle_between_packages():
    """report → history and history → report through different modules is a circle of packages that no module
    circle shows: the packages must stack (commands on top, then report/tune/explain/history, then run, ...)."""
    assert _cycles(_package_edges(_edges(_modules()))) == []


def test_a_planted_package_circle_is_found():
    mods = _modules()
    planted = mods["optbench.history.store"].read_text() + "\n\ndef _x():\n    import optbench.report.render\n"
    cycles = _cycles(_package_edges(_edges(mods, {"optbench.history.store": planted})))
    assert any({"optbench.history", "optbench.report"} <= set(c) for c in cycles), cycles


def _backend_names() -> set[str]:
    from optbench.backends import all_backends

    return set(all_backends())


def _named_backends(rel: Path, source: str, names: set[str]) -> list[str]:
    """Places in one module's source that name a backend: compared with, prefix-tested, or listed in a literal."""
    # "torch" and "onnx" as kinds of model, not backends; sys.modules holds libraries' import names
    kinds = {"consumes", "reference_for", "source", "modules"}
    libraries = {"loads_with", "converts_with"}  # import names of libraries that share a backend's name
    found = []
    tree = ast.parse(source)
    exempt = {id(n) for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg in libraries
              for n in ast.walk(node.value)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, (ast.Attribute, ast.Name)) and getattr(s, "attr", getattr(s, "id", "")) in kinds
                   for s in sides):
                exempt |= {id(n) for s in sides for n in ast.walk(s)}
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
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and id(node) not in exempt:
            # ["onnxruntime", "openvino"]: a hand-kept registry of backends (a default, an order, a subset)
            strings = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if strings and all(v in names for v in strings):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:120]}")
    return found


def test_no_backend_named_outside_the_backends_package():
    names = _backend_names()
    found = []
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG)
        if rel.parts[0] == "backends" or rel.name == "cache.py":  # cache.py names libraries whose versions key artifacts
            continue
        found += _named_backends(rel, p.read_text(), names)
    assert found == []


def test_a_planted_backend_list_is_found():
    found = _named_backends(Path("x.py"), 'ORDER = ["onnxruntime", "openvino"]\n', _backend_names())
    assert found and "onnxruntime" in found[0]


CLOCKS = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter"), ("time", "perf_counter_ns"),
          ("time", "time_ns"), ("time", "monotonic_ns"), ("time", "process_time"), ("time", "thread_time"),
          ("datetime", "now"), ("datetime", "utcnow"), ("date", "today")}


def _clock_reads(rel: Path, source: str) -> list[str]:
    """Clock reads in one module: ``time.perf_counter()`` and the imports that hide them (``from time import
    perf_counter``, ``from datetime import datetime`` is allowed: its ``.now()`` is a call found as the first)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in CLOCKS:
            found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            hidden = [a.name for a in node.names if (node.module, a.name) in CLOCKS]
            if hidden:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_measure_and_the_clock_module_read_clocks():
    found = []
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG)
        if rel.parts[0] == "measure" or rel == Path("clock.py"):
            continue
        found += _clock_reads(rel, p.read_text())
    assert found == []


def test_a_planted_clock_import_is_found():
    assert _clock_reads(Path("x.py"), "from time import perf_counter\n\nt = perf_counter()\n")
    assert _clock_reads(Path("x.py"), "import time as t\nfrom time import monotonic as m\n")
