"""A classifier whose outputs turn NaN at batch size 4 (a broken kernel), for report and check robustness."""

import torch


class NanAtFour(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        y = self.fc(x)
        return y * float("nan") if x.shape[0] == 4 else y


def build():
    torch.manual_seed(0)
    return NanAtFour()
