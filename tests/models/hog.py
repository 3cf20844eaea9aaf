"""A model that touches 3 GiB at batch size 2 (a runaway allocation), for the resident-memory watchdog."""

import numpy as np
import torch


class Hog(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[0] == 2:
            self.hog = np.ones(3 * 2**30 // 8)
        return self.fc(x)


def build():
    torch.manual_seed(0)
    return Hog()
