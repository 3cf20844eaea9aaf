"""Small modules that give a model a tensor-in, tensor-out interface for export: a Hugging Face encoder, a
torch.export program."""

from __future__ import annotations

import torch


class PooledEncoder(torch.nn.Module):
    """Encoder + pooling: (input_ids, attention_mask[, token_type_ids]) → one embedding per item."""

    def __init__(self, encoder: torch.nn.Module, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.encoder, self.pooling, self.normalize = encoder, pooling, normalize

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        if self.pooling == "none":
            return hidden
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled


class ExportedModule(torch.nn.Module):
    """A torch.export program as a module. Its train/eval behaviour was fixed when it was exported, and the
    program's module refuses ``train()``/``eval()``: here they only set the flag, so code that puts a module in
    eval mode (the ONNX exporter, backends) takes it as it is."""

    def __init__(self, program) -> None:
        super().__init__()
        self.program = program.module()

    def train(self, mode: bool = True) -> ExportedModule:
        self.training = mode
        return self

    def forward(self, *args):
        return self.program(*args)
