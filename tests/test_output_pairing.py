"""A session's outputs under the reference's names: by name where the session names them (whatever its order),
by position only where it cannot (a torch module's tuple); names that differ are an error naming both lists."""

import numpy as np
import pytest

from optbench.outputs import as_reference_names


def test_named_outputs_are_read_by_name_whatever_their_order():
    a, b = np.zeros(2), np.ones(2)
    out = as_reference_names({"negated": b, "double": a}, ["double", "negated"], by_name=True)
    assert list(out) == ["double", "negated"] and out["double"] is a and out["negated"] is b


def test_names_that_differ_from_the_reference_are_an_error_naming_both():
    with pytest.raises(ValueError) as e:
        as_reference_names({"logits": np.zeros(1), "extra": np.zeros(1)}, ["logits", "probs"], by_name=True)
    assert "['logits', 'extra']" in str(e.value) and "['logits', 'probs']" in str(e.value)


def test_unnamed_outputs_are_read_in_the_order_the_reference_recorded():
    a, b = np.zeros(2), np.ones(2)
    out = as_reference_names({"output": a, "output_1": b}, ["scores", "boxes"], by_name=False)
    assert out["scores"] is a and out["boxes"] is b
    with pytest.raises(ValueError, match="returns 1 unnamed output"):
        as_reference_names({"output": a}, ["scores", "boxes"], by_name=False)
