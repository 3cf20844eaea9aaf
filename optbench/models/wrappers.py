"""Small modules that give a Hugging Face encoder a tensor-in, tensor-out interface for export."""

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
