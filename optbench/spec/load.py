"""Load a spec file: safe YAML, pydantic validation, errors that name file, line and field."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from optbench.errors import SpecError
from optbench.spec.models import Spec


def load_spec(path: str | Path) -> Spec:
    """Parse and validate ``path``; every problem raises :class:`SpecError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError("spec file not found", file=str(path)) from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read spec: {e.__class__.__name__}", file=str(path)) from None
    data, lines = parse_yaml(text, str(path))
    spec = validate(data, lines, str(path))
    check_files(spec, path, lines)
    return spec


def parse_yaml(text: str, file: str) -> tuple[Any, dict[tuple, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise SpecError(f"invalid YAML: {e.problem or e.context}", file=file,
                        line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise SpecError(f"invalid YAML: {e}", file=file) from None
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
    return part in {"python", "torchvision", "onnx", "transformers", "synthetic", "digits", "npz", "text",
                    "TransformSpec", "literal['none']", "str", "int", "list[...]"} or "[" in part


def _translate(err: ValidationError, data: dict, lines: dict[tuple, int], file: str) -> SpecError:
    errors = err.errors(include_url=False)
    first = _most_specific(errors)
    loc = _yaml_loc(first["loc"], data)
    field = ".".join(str(p) for p in loc) or "(top level)"
    kind, msg = first["type"], first["msg"]
    found = first.get("input")
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
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
    expected = expected.removeprefix("value error, ")
    return SpecError(f"invalid value{more}", file=file, line=line_of(lines, loc), field=field,
                     expected=expected, found=_short(found))


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
    from optbench.spec import models as m

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
    for attr in ("weights", "path"):
        value = getattr(model, attr, None)
        if value and not value.startswith("package:") and not resolve_path(value, spec_path).exists():
            raise SpecError("file not found", file=file, line=line_of(lines, ("model", attr)),
                            field=f"model.{attr}", found=repr(value))
    if getattr(spec.data, "path", None) and not resolve_path(spec.data.path, spec_path).exists():
        raise SpecError("file not found", file=file, line=line_of(lines, ("data", "path")),
                        field="data.path", found=repr(spec.data.path))
    if model.source == "python":
        check_entrypoint(model.entrypoint, spec_path, file, line_of(lines, ("model", "entrypoint")))
    if model.source == "onnx":
        check_onnx(resolve_path(model.path, spec_path), file, line_of(lines, ("model", "path")))
    check_data(spec, spec_path, lines)


def check_onnx(path: Path, file: str, line: int | None) -> None:
    """A file given as ONNX must parse and pass the ONNX checker (catches non-ONNX and truncated files)."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load(str(path), load_external_data=False))
    except Exception as e:
        first = (str(e).strip().splitlines() or [e.__class__.__name__])[0][:160]
        raise SpecError(f"not a valid ONNX model ({first})", file=file, line=line, field="model.path",
                        found=repr(str(path))) from None


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


def resolve_path(value: str, spec_path: Path) -> Path:
    """Relative paths are tried from the working directory, then from the spec's folder."""
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p
    beside = spec_path.parent / p
    return beside if beside.exists() else p


def check_entrypoint(entrypoint: str, spec_path: Path, file: str, line: int | None) -> None:
    target, func = entrypoint.split(":")
    field = "model.entrypoint"
    if target.endswith(".py") or "/" in target:
        path = resolve_path(target, spec_path)
        if not path.is_file():
            raise SpecError("entrypoint file not found", file=file, line=line, field=field, found=repr(target))
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
