"""A short training loop shared by fine-tuning and distillation: KD toward a teacher plus labels where known."""

from __future__ import annotations

from typing import Any

import numpy as np


def kd_loss(student_out, teacher_out, labels, temperature: float, alpha: float):
    import torch.nn.functional as F

    if student_out.dim() == 2 and student_out.shape[1] > 1:
        t = temperature
        soft = F.kl_div(F.log_softmax(student_out / t, 1), F.softmax(teacher_out / t, 1), reduction="batchmean") * t * t
        if labels is None:
            return soft
        return alpha * soft + (1 - alpha) * F.cross_entropy(student_out, labels)
    return F.mse_loss(student_out, teacher_out)


def train_against(student: Any, teacher: Any, items: Any, *, epochs: int, lr: float, temperature: float = 4.0,
                  alpha: float = 0.5, seed: int = 0, batch: int = 64, after_step=None) -> Any:
    """Train ``student`` on the training split toward ``teacher``'s outputs (and the labels, if any)."""
    import torch

    from optbench.models.torch_output import first_tensor

    if len(items) == 0:
        raise ValueError("training needs a non-empty training split (data.train)")
    g = torch.Generator().manual_seed(seed)
    feeds = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in items.inputs.items()}
    labels = torch.from_numpy(items.labels).long() if items.labels is not None else None
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    teacher.eval()
    student.train()
    n = len(items)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(batch):
            xb = {k: v[idx] for k, v in feeds.items()}
            with torch.no_grad():
                t_out = first_tensor(teacher(*xb.values())).float()
            s_out = first_tensor(student(*xb.values())).float()
            loss = kd_loss(s_out, t_out, labels[idx] if labels is not None else None, temperature, alpha)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
    return student.eval()


def accuracy(module: Any, items: Any) -> float | None:
    import torch

    from optbench.models.torch_output import first_tensor

    if items.labels is None or len(items) == 0:
        return None
    with torch.no_grad():
        out = first_tensor(module(*(torch.from_numpy(v) for v in items.inputs.values())))
    if out.dim() != 2:
        return None
    return float((out.argmax(1).numpy() == items.labels).mean())
