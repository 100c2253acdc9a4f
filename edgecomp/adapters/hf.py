"""Export-friendly wrappers around Hugging Face transformers models (imports torch)."""

from __future__ import annotations

import torch


class CausalLMLogits(torch.nn.Module):
    """input_ids int64 [1, T] -> logits float32 [1, T, vocab].

    Explicit ``position_ids`` and an all-ones ``attention_mask`` (and no cache) keep the legacy ONNX
    exporter away from transformers' packed-sequence detection (``aten::diff``), so shapes stay static.
    """

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], dtype=torch.int64, device=input_ids.device).unsqueeze(0)
        return self.lm(input_ids=input_ids, position_ids=positions, attention_mask=torch.ones_like(input_ids),
                       use_cache=False).logits


class EncoderHidden(torch.nn.Module):
    """(input_ids, attention_mask) int64 [1, T] -> last_hidden_state float32 [1, T, hidden]."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
