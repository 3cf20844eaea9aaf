"""``optbench tune``: the fastest variant at one (batch, shape) point that passes every budget, task metric and
constraint of the spec, searched over calibration, per-channel, activation symmetry, per node group precision
(int8 → fp16 → fp32) and backends; every candidate a real variant of one run (see :mod:`optbench.tune.strategy`)."""
