"""The ONNX file the torch-free quickstart runs: the quickstart's digits CNN (narrower), trained on the training
split of ``experiments/quickstart-onnx.yaml`` (its data section is the quickstart's, so the split is read from
``quickstart.yaml``: disjoint from the calibration and eval items either spec judges on) and exported with a
dynamic batch.

    python experiments/datagen/digits_onnx.py experiments/models/digits.onnx

writes the committed file (needs the ``torch`` extra; running the file needs none).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def main(out: str) -> None:
    import torch

    sys.path[:0] = [str(HERE / "models"), str(HERE.parent)]  # the model's code, and this checkout's optbench
    from digits import DigitsCNN, fit

    from optbench.data import load_splits
    from optbench.specfile.load import load_spec

    spec_path = HERE / "quickstart.yaml"
    splits = load_splits(load_spec(spec_path), spec_path.parent)
    torch.manual_seed(0)
    model = fit(DigitsCNN(width=16, hidden=64), splits.train.inputs["image"], splits.train.labels, epochs=12)
    example = torch.from_numpy(splits.eval.inputs["image"][:2])
    torch.onnx.export(model, (example,), out, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)


if __name__ == "__main__":
    main(sys.argv[1])
