"""A model whose forward starts a child process and then hangs: a timeout must end the child too."""

import subprocess
import time

import torch


class Spawner(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[0] == 3:
            subprocess.Popen(["sleep", "287"])
            time.sleep(3600)
        return self.fc(x)


def build():
    torch.manual_seed(0)
    return Spawner()
