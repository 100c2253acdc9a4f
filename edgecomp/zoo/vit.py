"""A plain pre-norm Vision Transformer, written to export cleanly to ONNX and TVM.

Shapes: input ``pixels`` [B, C, H, W] float32 (already normalised), output ``logits`` [B, classes].
Attention is spelled out (matmul, softmax, matmul) instead of ``scaled_dot_product_attention`` so the
exported graph has no mask machinery and the q/k/v/o linears stay separate for the pruning adapters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 28  # input height = width, pixels
    patch_size: int = 4  # square patch side, pixels
    in_chans: int = 1  # input channels
    num_classes: int = 10  # classifier outputs
    dim: int = 192  # token width
    depth: int = 6  # transformer blocks
    heads: int = 3  # attention heads (dim % heads == 0)
    mlp_dim: int = 576  # hidden width of the MLP
    eps: float = 1e-6  # LayerNorm epsilon

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")

    @property
    def tokens(self) -> int:
        """Sequence length including the class token."""
        return (self.image_size // self.patch_size) ** 2 + 1

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    """Multi-head self-attention over [B, N, dim] with separate q/k/v/o projections."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        # fixed at construction: pruning per-head dims (UPop) must keep the original 1/√head_dim
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, N, dim] -> q, k, v, each [B, heads, N, head_dim]."""
        B, N, _ = x.shape
        H, D = self.heads, self.head_dim
        return tuple(p(x).reshape(B, N, H, D).transpose(1, 2) for p in (self.q, self.k, self.v))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """softmax(q kᵀ · scale [+ bias]) v, heads merged and projected: [B, N, dim]. ``scale`` is 1/√head_dim
        of the unpruned model; ``bias`` broadcasts over the logits [B, H, N, N] (token merging's ``log s``
        per key)."""
        B, H, N, D = q.shape
        logits = (q * self.scale) @ k.transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        return self.o((torch.softmax(logits, dim=-1) @ v).transpose(1, 2).reshape(B, N, H * D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(*self.project(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.mlp = Mlp(cfg.dim, cfg.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """ViT classifier: patch embedding, class token, learned positions, pre-norm blocks, linear head."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Conv2d(cfg.in_chans, cfg.dim, cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)

    def init_weights_(self, seed: int) -> "ViT":
        """Deterministic truncated-normal init (std 0.02), zero biases, unit LayerNorm."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif "norm" in name:
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=g).clamp_(-2, 2) * 0.02)
        return self

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, C, H, W] -> tokens [B, N, dim]: patches, class token first, plus positions."""
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, dim] -> logits [B, classes], read from the class token."""
        return self.head(self.norm(x)[:, 0])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embed(pixels)
        for blk in self.blocks:
            x = blk(x)
        return self.classify(x)
