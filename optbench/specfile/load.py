"""Load a spec file: safe YAML, pydantic validation, errors that name file, line and field."""

from __future__ import annotations

import difflib
import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from optbench.errors import SpecError
from optbench.paths import ONNX_DTYPES, check_onnx, resolve_model_file, resolve_path  # noqa: F401 (here too)
from optbench.safe_yaml import safe_yaml
from optbench.spec.models import Spec


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    """Parse and validate ``path`` with ``--set KEY.PATH=VALUE`` overrides; every problem raises
    :class:`SpecError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError("spec file not found", file=str(path)) from None
    except IsADirectoryError:
        found = sorted(str(p) for p in path.glob("*.y*ml"))[:6]
        raise SpecError("is a folder; give one spec file", file=str(path),
                        expected=" or ".join(found) if found else "a .yaml spec") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"cannot read spec: not UTF-8 text ({e.reason} at byte {e.start})", file=str(path)) from None
    data, lines = parse_yaml(text, str(path))
    if overrides:
        from optbench.quick import apply_overrides

        data = apply_overrides(data, overrides)
    spec = validate(data, lines, str(path))
    check_serving(spec, str(path), lines)
    check_files(spec, path, lines)
    return spec


def parse_yaml(text: str, file: str) -> tuple[Any, dict[tuple, int]]:
    node, data = safe_yaml(text, "the spec", file=file)
    if not isinstance(data, dict):
        raise SpecError("a spec is a mapping of keys (name, model, inputs, ...)", file=file,
                        found=type(data).__name__ if data is not None else "an empty file")
    lines: dict[tuple, int] = {}
    _index(node, (), lines)
    return data, lines


def _index(node: yaml.Node, at: tuple, lines: dict[tuple, int]) -> None:
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            lines[at + (key,)] = k.start_mark.line + 1
            _index(v, at + (key,), lines)
            lines[at + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _index(v, at + (i,), lines)


def line_of(lines: dict[tuple, int], loc: tuple) -> int | None:
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def validate(data: dict, lines: dict[tuple, int], file: str) -> Spec:
    try:
        return Spec.model_validate(data)
    except ValidationError as e:
        raise _translate(e, data, lines, file) from None


def _yaml_loc(loc: tuple, data: Any) -> tuple:
    """Drop pydantic's union tags (e.g. 'python', 'function-after[...]') from a location."""
    out: list = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(part, str) and (part in ("name",) and isinstance(cur, dict)):
            out.append(part)
            cur = None
        elif isinstance(part, str) and cur is not None and not isinstance(cur, (dict, list)):
            continue
        elif isinstance(cur, (dict, list)) and isinstance(part, str) and _is_tag(part):
            continue
        else:
            out.append(part)
            cur = None
    return tuple(out)


def _is_tag(part: str) -> bool:
    return part in {"python", "torchvision", "onnx", "transformers", "torchscript", "exported", "tensorflow", "tflite",
                    "openvino", "synthetic", "digits", "npz", "text",
                    "TransformSpec", "literal['none']", "str", "int", "list[...]"} or "[" in part


def _translate(err: ValidationError, data: dict, lines: dict[tuple, int], file: str) -> SpecError:
    errors = err.errors(include_url=False)
    first = _most_specific(errors)
    loc = _yaml_loc(first["loc"], data)
    field = ".".join(str(p) for p in loc) or None
    kind, msg = first["type"], first["msg"]
    found = first.get("input")
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    if not loc and kind == "value_error":  # a rule across fields: its message names them; no dump of the spec
        text = msg.removeprefix("Value error, ")
        key = next((k for k in data if isinstance(data, dict) and re.search(rf"\b{re.escape(str(k))}\b", text)), None)
        return SpecError(text + more, file=file, line=line_of(lines, (key,)) if key else None)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = _model_at(loc[:-1], data)
        hint = ""
        if parent is not None:
            match = difflib.get_close_matches(key, list(parent.model_fields), n=1)
            hint = f"; did you mean '{match[0]}'?" if match else f"; allowed: {', '.join(parent.model_fields)}"
        return SpecError(f"unknown key '{key}'{hint}{more}", file=file, line=line_of(lines, loc), field=field)
    if kind == "missing":
        return SpecError(f"required field is missing{more}", file=file, line=line_of(lines, loc[:-1]), field=field)
    if kind == "union_tag_invalid":
        ctx = first.get("ctx", {})
        return SpecError(f"unknown {ctx.get('discriminator', 'source')}{more}", file=file, line=line_of(lines, loc),
                         field=field, expected=f"one of {ctx.get('expected_tags')}", found=repr(ctx.get("tag")))
    expected = msg[0].lower() + msg[1:] if msg else "a valid value"
    expected = expected.removeprefix("value error, ") + _yaml11_hint(found)
    return SpecError(f"invalid value{more}", file=file, line=line_of(lines, loc), field=field,
                     expected=expected, found=_short(found))


def _yaml11_hint(found: Any) -> str:
    """A number YAML 1.1 read as text (``1e12``: it wants a dot and a signed exponent), with how to write it."""
    if not isinstance(found, str) or not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", found.strip()):
        return ""
    mantissa, exponent = found.strip().lower().split("e")
    written = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent if exponent[0] in '+-' else '+' + exponent}"
    return f" (YAML 1.1 reads {found.strip()} as text, not a number: write {written})"


def _most_specific(errors: list[dict]) -> dict:
    """Among union alternatives prefer an 'unknown key' error, then the deepest location."""
    for e in errors:
        if e["type"] == "extra_forbidden":
            return e
    return errors[0]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _model_at(loc: tuple, data: Any) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (for 'did you mean')."""
    import optbench.spec.models as m

    model: Any = Spec
    cur: Any = data
    for part in loc:
        cur = cur[part] if isinstance(cur, (dict, list)) else None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _resolve(field.annotation, cur, m)
    return model


def _resolve(annotation: Any, value: Any, m: Any) -> type[BaseModel] | None:
    import typing

    args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in args:
        found = _resolve(a, value, m)
        if found is None:
            continue
        src = found.model_fields.get("source")
        if src is None or not isinstance(value, dict):
            return found
        if value.get("source") in typing.get_args(src.annotation):
            return found
    return None


# ---------------------------------------------------------------- files the spec names
def check_files(spec: Spec, spec_path: Path, lines: dict[tuple, int]) -> None:
    """Files a spec names must exist, and a python entrypoint must resolve (without being called)."""
    file = str(spec_path)
    model = spec.model
    check_extras(spec, file, lines)
    check_backends(spec, file, lines)
    for attr in ("weights", "path"):
        value = getattr(model, attr, None)
        if model.source == "onnx" and attr == "path":
            continue  # resolved (package form included) and checked against the spec below
        if value and not value.startswith("package:") and not resolve_path(value, spec_path).exists():
            raise SpecError(f"file not found (looked for {resolve_path(value, spec_path)}; relative paths are "
                            "read from the spec's folder)", file=file, line=line_of(lines, ("model", attr)),
                            field=f"model.{attr}", found=repr(value))
    if getattr(spec.data, "path", None) and not resolve_path(spec.data.path, spec_path).exists():
        raise SpecError(f"file not found (looked for {resolve_path(spec.data.path, spec_path)}; relative paths are "
                        "read from the spec's folder)", file=file, line=line_of(lines, ("data", "path")),
                        field="data.path", found=repr(spec.data.path))
    if model.source == "python":
        check_entrypoint(model.entrypoint, spec_path, file, line_of(lines, ("model", "entrypoint")))
    if model.source == "onnx":
        line = line_of(lines, ("model", "path"))
        proto = check_onnx(resolve_model_file(model.path, spec_path, file, line), file, line)
        check_inputs_against_graph(spec, proto, file, line_of(lines, ("inputs",)))
    check_model_file(spec, spec_path, file, lines)
    check_data(spec, spec_path, lines)


def check_model_file(spec: Spec, spec_path: Path, file: str, lines: dict[tuple, int]) -> None:
    """The file layouts of the framework sources (what a run would otherwise find late): a SavedModel is a folder
    holding saved_model.pb, a frozen graph a file; an IR's .bin sits beside its .xml; tf2onnx writes opsets up to 18.
    A graph whose ops touch files, processes or the network is refused (:mod:`optbench.models.trust`); what needs
    the framework itself (signatures, inputs) is checked where the model loads."""
    model = spec.model
    line = line_of(lines, ("model", "path"))
    value = getattr(model, "path", "") or ""
    path = resolve_model_file(value, spec_path, file, line, folder=True) if value.startswith("package:") else \
        resolve_path(value, spec_path)
    problem = None
    if model.source == "tensorflow" and path.is_dir() and not (path / "saved_model.pb").is_file():
        problem = f"the folder {path} holds no saved_model.pb: not a SavedModel"
    elif model.source == "tensorflow" and path.is_file() and model.signature:
        problem = "a frozen graph (.pb file) has no signatures; 'signature' names one of a SavedModel's"
    elif model.source == "tensorflow" and path.is_dir() and model.outputs:
        problem = "'outputs' names a frozen graph's output tensors; a SavedModel's signature names its outputs"
    elif model.source == "openvino" and path.is_file() and not path.with_suffix(".bin").is_file():
        problem = f"the IR's weights {path.with_suffix('.bin').name} are not beside {path.name}"
    elif model.source in ("torchscript", "exported", "tflite", "openvino") and path.is_dir():
        problem = f"{path} is a folder; {model.kind.label} is one file"
    if problem:
        raise SpecError(problem, file=file, line=line, field="model.path", found=repr(model.path))
    from optbench.models.trust import refuse_untrusted

    try:
        refuse_untrusted(model, spec_path.parent)  # ops that reach outside the computation: refused at plan
    except SpecError as e:
        raise SpecError(e.message, file=file, line=line, field=e.field, found=e.found) from None
    if model.kind.onnx == "tf2onnx" and spec.export.opset > 18:
        raise SpecError("tf2onnx writes ONNX opsets up to 18", file=file, line=line_of(lines, ("export", "opset")),
                        field="export.opset", expected="at most 18", found=str(spec.export.opset))


def check_serving(spec: Spec, file: str, lines: dict[tuple, int]) -> None:
    """A serving section the machine cannot hold, or longer than a variant's time limit: refused before it runs
    (:mod:`optbench.measure.serving.bounds`)."""
    if spec.serving is None:
        return
    from optbench.measure.serving.bounds import Machine, serving_problem

    if found := serving_problem(spec.serving, spec.measure.timeout_s, Machine.here()):
        field, why = found
        raise SpecError(why, file=file, line=line_of(lines, tuple(field.split("."))), field=field)


def check_extras(spec: Spec, file: str, lines: dict[tuple, int]) -> None:
    """What the spec needs from the ``torch`` extra is installed, else one line naming the extra
    (:mod:`optbench.extras`); backends whose runtime is missing are planned as skipped instead."""
    from optbench.extras import importable, torch_needs

    for module, field, what in torch_needs(spec):
        if not importable(module):
            raise SpecError(f"{what} needs {module}, which is not installed: pip install 'optbench[torch]'",
                            file=file, line=line_of(lines, tuple(field.split("."))), field=field)


def check_backends(spec: Spec, file: str, lines: dict[tuple, int]) -> None:
    """Backend names and options, with the line of the entry that is wrong."""
    from optbench.backends import get_backend

    for i, b in enumerate(spec.backends):
        try:
            get_backend(b.name).parse_options(b.options, f"backends.{i}.options")
        except SpecError as e:
            raise SpecError(e.message, file=file, line=line_of(lines, ("backends", i)),
                            field=e.field if e.field != "backends" else f"backends.{i}.name",
                            expected=e.expected, found=e.found) from None


def check_inputs_against_graph(spec: Spec, proto, file: str, line: int | None) -> None:
    """The spec's inputs must be the graph's: names, ranks, dtypes and static dims, naming both sides."""
    inits = {i.name for i in proto.graph.initializer}
    graph = {i.name: i.type.tensor_type for i in proto.graph.input if i.name not in inits}
    names = [i.name for i in spec.inputs]
    if unknown := [n for n in names if n not in graph]:
        raise SpecError(f"the ONNX graph has no input {unknown}", file=file, line=line, field="inputs",
                        expected=f"inputs of the graph: {sorted(graph)}", found=repr(unknown))
    if missing := [n for n in graph if n not in names]:
        raise SpecError(f"the spec leaves graph inputs {missing} unset", file=file, line=line, field="inputs",
                        expected=f"every graph input: {sorted(graph)}", found=repr(names))
    outputs = [o.name for o in proto.graph.output]
    # with a model-level hook, entries that judge (a task, parts, budgets) may name what the hook returns: those
    # are checked once it has run on the reference; entries that only place a raw output's batch are the graph's
    from optbench.outputs import only_reading

    raw = [o for o in spec.outputs if not spec.postprocess_outputs or only_reading(o)]
    if unknown := [o.name for o in raw if o.name not in outputs]:
        hooked = " (with postprocess_outputs, an entry that only sets batch_axis names a raw graph output)" \
            if spec.postprocess_outputs else ""
        raise SpecError(f"the ONNX graph has no output {unknown}{hooked}", file=file, field="outputs",
                        expected=f"outputs of the graph: {outputs}", found=repr(unknown))
    for inp in spec.inputs:
        t = graph[inp.name]
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        dtype = ONNX_DTYPES.get(t.elem_type, f"onnx type {t.elem_type}")
        where = f"inputs.{names.index(inp.name)}"
        if dtype != inp.dtype:
            raise SpecError(f"input '{inp.name}' dtype differs from the graph's", file=file, line=line, field=where,
                            expected=f"{dtype} (graph)", found=f"{inp.dtype} (spec)")
        if t.HasField("shape") and len(dims) != len(inp.shape):
            raise SpecError(f"input '{inp.name}' rank differs from the graph's", file=file, line=line, field=where,
                            expected=f"{dims} (graph)", found=f"{inp.shape} (spec)")
        for axis, (g, mine) in enumerate(zip(dims, inp.shape)):
            if isinstance(g, int) and g > 0 and isinstance(mine, int) and g != mine:
                raise SpecError(f"input '{inp.name}' axis {axis} is {g} in the graph", file=file, line=line,
                                field=where, expected=f"{dims} (graph)", found=f"{inp.shape} (spec)")
            if isinstance(g, int) and g > 1 and isinstance(mine, str) and mine != "batch":  # a fixed batch: plan
                raise SpecError(f"input '{inp.name}' axis {axis} is fixed at {g} in the graph, the spec makes it "
                                f"dynamic ('{mine}')", file=file, line=line, field=where,
                                expected=f"{dims} (graph)", found=f"{inp.shape} (spec)")


def check_data(spec: Spec, spec_path: Path, lines: dict[tuple, int]) -> None:
    """Inputs must match the data's arrays (rank, fixed dims, dtype) and the splits must fit."""
    from optbench.data import load_splits

    if spec.data.source == "text":
        return  # needs the model's tokenizer: checked when the run prepares its data
    try:
        load_splits(spec, spec_path.parent)
    except SpecError as e:
        e.file = str(spec_path)
        e.line = e.line or line_of(lines, tuple((e.field or "").split(".")[:1]))
        raise SpecError(e.message, file=e.file, line=e.line, field=e.field, expected=e.expected,
                        found=e.found) from None


def check_entrypoint(entrypoint: str, spec_path: Path, file: str, line: int | None) -> None:
    target, func = entrypoint.split(":")
    field = "model.entrypoint"
    if target.endswith(".py") or "/" in target:
        path = resolve_path(target, spec_path)
        if not path.is_file():
            raise SpecError(f"entrypoint file not found (looked for {path}; relative paths are read from the "
                            "spec's folder)", file=file, line=line, field=field, found=repr(target))
        if func not in _top_level_names(path):
            raise SpecError(f"entrypoint file has no top-level function '{func}'", file=file, line=line, field=field,
                            expected="a function defined in " + str(path), found=repr(func))
    elif importlib.util.find_spec(target.split(".")[0]) is None:
        raise SpecError("entrypoint module cannot be imported", file=file, line=line, field=field, found=repr(target))


def _top_level_names(path: Path) -> set[str]:
    import ast

    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as e:
        raise SpecError(f"entrypoint file has a syntax error: {e.msg}", file=str(path), line=e.lineno) from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names
