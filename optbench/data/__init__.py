"""Input data: sources registered by name, split into disjoint, seeded train/calibration/eval sets.

A source returns every item it has (arrays keyed by input name, labels if known);
:func:`load_splits` shuffles them with the spec's seed and cuts the splits, so the
calibration items used for int8 are never the items drift is measured on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optbench.data.items import (  # noqa: F401 (the package's names)
    SOURCES,
    Feed,
    Items,
    Splits,
    _check_inputs,
    feeds_of,
    fit_axis,
    source,
)
from optbench.errors import SpecError
from optbench.spec.models import Spec


def load_splits(spec: Spec, spec_dir: Path, tokenizer=None) -> Splits:
    from optbench.data import sources  # noqa: F401  (registers the built-in sources)

    d = spec.data
    need = d.eval + d.calibration + (d.train or 0)
    items = SOURCES[d.source](spec, spec_dir, need, tokenizer=tokenizer)
    _check_inputs(items, spec)
    items.inputs = {i.name: items.inputs[i.name] for i in spec.inputs if i.value is None}  # extra arrays dropped
    items.feed = feeds_of(spec.inputs)
    items.fit = d.fit
    n = len(items)
    if n < d.eval + d.calibration + (d.train or 0):
        raise SpecError(f"data source '{d.source}' has {n} items, fewer than eval+calibration+train", field="data",
                        expected=f"at most {n} items in all", found=str(d.eval + d.calibration + (d.train or 0)))
    order = np.random.default_rng(spec.seed).permutation(n)
    ev, cal = order[: d.eval], order[d.eval : d.eval + d.calibration]
    rest = order[d.eval + d.calibration :]
    train = rest if d.train is None else rest[: d.train]
    return Splits(items.take(train), items.take(cal), items.take(ev))

