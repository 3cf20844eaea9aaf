"""A small MLP for the latency-gate benchmark; OPTBENCH_GATE_WORK scales its depth (1.3 = 30 % more layers).

The variant ids hash the spec, not this file or the environment, so a run with more work keeps the ids of
the baseline's variants: exactly the situation of a code change that slows a model down.
"""

import os

import torch

BASE_LAYERS = 10


def build(width: int = 256):
    torch.manual_seed(0)
    layers = round(BASE_LAYERS * float(os.environ.get("OPTBENCH_GATE_WORK", "1")))
    blocks = []
    for _ in range(layers):
        blocks += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*blocks, torch.nn.Linear(width, 10)).eval()
