"""The JSON schema of a spec, for editors and CI linters: the pydantic models' schema with each registered
backend's options written out, so a backend given by name (``- onnxruntime``) or with its options inline
(``- {name: torch, device: cpu}``) validates as it loads, and a misspelled option is flagged."""

from __future__ import annotations

from typing import Any


def spec_json_schema() -> dict[str, Any]:
    from optbench.backends import all_backends
    from optbench.spec.models import Spec

    schema = Spec.model_json_schema()
    defs = schema.setdefault("$defs", {})
    generic = defs["BackendSpec"]
    label = generic["properties"]["label"]
    backends = all_backends()
    forms: list[dict[str, Any]] = [{"type": "string", "enum": list(backends),
                                    "description": "A registered backend by name, with its default options."}]
    for name, cls in backends.items():
        options = cls.Options.model_json_schema()
        for key, value in options.pop("$defs", {}).items():
            if key in defs and defs[key] != value:
                raise RuntimeError(f"backend {name}'s options define '{key}' unlike the spec's own")
            defs[key] = value
        props = options.get("properties", {})
        forms.append({
            "type": "object", "title": f"backend {name}", "description": (cls.__doc__ or "").strip().split("\n")[0],
            "properties": {"name": {"const": name}, "label": label,
                           "options": {"type": "object", "properties": props, "additionalProperties": False},
                           **props},
            "required": ["name"], "additionalProperties": False,
        })
    defs["BackendSpec"] = {"title": "BackendSpec", "description": generic.get("description", "A backend to run on: "
                           "its name, or an object with its name and options (inline or under 'options')."),
                           "anyOf": forms}
    return schema
