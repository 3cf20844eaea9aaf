"""YAML read within bounds, for a spec file and a ``--set`` value alike: its size, what its anchors and aliases
expand to, and how deep it nests, each checked on the composed document before anything is constructed."""

from __future__ import annotations

from typing import Any

import yaml

from optbench.errors import SpecError

MAX_BYTES = 1_000_000   # a spec file's size at most
MAX_VALUES = 100_000    # scalars, lists and mappings after anchors and aliases are expanded
MAX_DEPTH = 64          # lists and mappings inside each other: a spec needs a handful


def safe_yaml(text: str, what: str, file: str | None = None) -> tuple[yaml.Node | None, Any]:
    """The composed and the constructed document of ``text`` (a spec file, or a ``--set`` value), within the size,
    alias-expansion and nesting bounds: an alias bomb or a thousand nested brackets is one line, never minutes
    of expansion or a RecursionError."""
    if len(text) > MAX_BYTES:
        raise SpecError(f"{what} is {len(text):,} characters; at most {MAX_BYTES:,}", file=file)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        size, depth = _expanded_size(node), _depth(node)
        if size > MAX_VALUES:
            raise SpecError(f"{what} expands to more than {MAX_VALUES:,} values (YAML anchors and aliases repeat "
                            f"parts of it); write the values out", file=file, found=f"{size:,.0f} values")
        if depth > MAX_DEPTH:
            raise SpecError(f"{what} nests lists and mappings {depth} deep; at most {MAX_DEPTH}", file=file)
        return node, yaml.safe_load(text)  # constructed only once its size is known
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise SpecError(f"invalid YAML in {what}: {e.problem or e.context}", file=file,
                        line=mark.line + 1 if mark and file else None) from None
    except yaml.YAMLError as e:
        raise SpecError(f"invalid YAML in {what}: {e}", file=file) from None
    except RecursionError:
        raise SpecError(f"{what} nests lists and mappings deeper than YAML can be read; at most {MAX_DEPTH}",
                        file=file) from None


def _depth(node: yaml.Node | None) -> int:
    """How deep lists and mappings nest (without recursion: composing a deep document is what fails first)."""
    deepest, todo, seen = 0, [(node, 1)] if node is not None else [], set()
    while todo:
        n, d = todo.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        deepest = max(deepest, d)
        if isinstance(n, yaml.MappingNode):
            todo += [(x, d + 1) for kv in n.value for x in kv]
        elif isinstance(n, yaml.SequenceNode):
            todo += [(x, d + 1) for x in n.value]
    return deepest


def _expanded_size(node: yaml.Node | None) -> float:
    """How many nodes the document holds once every alias is expanded (aliases share composed nodes, so this
    counts with a memo instead of expanding: a 700-byte alias bomb is found in microseconds)."""
    memo: dict[int, float] = {}

    def size(n: yaml.Node) -> float:
        if id(n) in memo:
            return memo[id(n)]
        memo[id(n)] = 1.0  # a recursive alias counts once
        if isinstance(n, yaml.MappingNode):
            total = 1.0 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1.0 + sum(size(v) for v in n.value)
        else:
            total = 1.0
        memo[id(n)] = total
        return total

    return size(node) if node is not None else 0.0
