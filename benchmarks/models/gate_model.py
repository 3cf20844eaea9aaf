"""A small MLP for the latency-gate benchmark; WORK, or else OPTBENCH_GATE_WORK, scales its depth (1.3 = 30 % more
hidden layers).

The variant ids hash the spec, not this file or the environment, so a run with more work keeps the ids of
the baseline's variants: exactly the situation of a code change that slows a model down. The paired mode writes a
copy of this file per work level with WORK set: a re-timing rebuilds a torch row's module from the copy of the file
its run kept, in a process that does not see the run's environment.
"""

import os

import torch

BASE_LAYERS = 10
WORK = None  # a factor on BASE_LAYERS; None: OPTBENCH_GATE_WORK (default 1)


def build(width: int = 256):
    torch.manual_seed(0)
    layers = round(BASE_LAYERS * (WORK if WORK is not None else float(os.environ.get("OPTBENCH_GATE_WORK", "1"))))
    blocks = []
    for _ in range(layers):
        blocks += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*blocks, torch.nn.Linear(width, 10)).eval()
