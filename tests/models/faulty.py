"""A model that misbehaves at chosen batch sizes, for fault-injection tests of the sweep.

batch 1: fine · 2: segfault · 3: hangs · 4: allocates past the memory cap · 5: raises mid-measurement
"""

import ctypes
import time

import numpy as np
import torch


class Faulty(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.calls = 0

    def forward(self, x):
        n = x.shape[0]
        self.calls += 1
        if n == 2:
            ctypes.string_at(0)
        elif n == 3:
            time.sleep(3600)
        elif n == 4:
            self.hog = np.ones(64 * 2**30 // 8)  # 64 GiB
        elif n == 5 and self.calls > 40:
            raise RuntimeError("injected failure during measurement")
        return self.fc(x)


def build():
    torch.manual_seed(0)
    return Faulty()


def build_raises():
    raise RuntimeError("the entrypoint itself fails")


def build_not_module():
    return 42


class Plain(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


def build_plain():
    torch.manual_seed(0)
    return Plain()
