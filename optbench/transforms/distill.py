"""Distillation: the spec's model teaches a student (its own model spec) with a KD loss on the training split."""

from __future__ import annotations

from typing import Any

from optbench.transforms import count_params, transform
from optbench.transforms.train import accuracy, train_against


@transform("distill")
def distill(module: Any, s: Any, ctx: Any) -> tuple[Any, dict]:
    from optbench.models import load_model

    student = load_model(s.student, ctx.spec_dir, train=ctx.splits.train, seed=ctx.spec.seed).module
    if student is None:
        raise ValueError("the distillation student must be a torch model, not an ONNX file")
    student = train_against(student, module.eval(), ctx.splits.train, epochs=s.epochs, lr=s.lr,
                            temperature=s.temperature, alpha=s.alpha, seed=ctx.spec.seed)
    return student, {"teacher_params": count_params(module), "params": count_params(student),
                     "distill_epochs": s.epochs, "temperature": s.temperature, "alpha": s.alpha,
                     "student_train_accuracy": accuracy(student, ctx.splits.train)}
