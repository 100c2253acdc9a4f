"""A small DPT-style monocular depth network: edgecomp's ViT encoder, reassemble + fusion decoder.

Shapes: input ``pixels`` [B, 3, S, S] float32 (normalised as ``depth_scenes.normalize``), output ``depth``
[B, 1, S, S] float32, metric z-depth in metres (the network predicts log-depth; ``exp`` is the last op).

Encoder: the blocks of ``edgecomp.zoo.vit`` (same ``Block`` / ``Attention`` / ``Mlp`` modules, so the ViT
pruning, merging and quantization adapters see the same structure), class token first. The decoder reads
the tokens after the blocks named in ``readout`` (DPT's hooks), and for each:

1. *reassemble*: readout-project (each patch token concatenated with the class token -> Linear -> GELU),
   tokens back on the G x G patch grid, 1x1 conv to ``stage_dims[i]``, then resampled to G*4, G*2, G and
   G/2 (transposed conv x4, x2, identity, 3x3 stride-2 conv), then a 3x3 conv to ``features`` channels;
2. *fusion*: from the coarsest stage up, residual conv units (ReLU-conv-ReLU-conv + skip), add, bilinear x2
   upsample, 1x1 conv (DPT's FeatureFusionBlock);
3. *head*: 3x3 conv to features/2, 3x3 conv, ReLU, 1x1 conv to one channel, ``exp``. (With patch 8 the
   finest stage sits at S/2 and the last fusion already upsamples to S, so the head has no upsample.)

``decode(tokens_per_readout)`` is public so token merging can un-merge each readout back to the grid
before the decoder reads it (``edgecomp.merge.depth``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgecomp.zoo.vit import Block, ViTConfig


@dataclass(frozen=True)
class DepthViTConfig:
    image_size: int = 64  # input height = width, pixels
    patch_size: int = 8  # square patch side, pixels
    in_chans: int = 3  # RGB
    dim: int = 128  # token width
    depth: int = 6  # transformer blocks
    heads: int = 4  # attention heads
    mlp_dim: int = 256  # MLP hidden width
    readout: tuple[int, ...] = (1, 3, 4, 5)  # 0-based blocks whose outputs feed the decoder, shallow first
    stage_dims: tuple[int, ...] = (24, 32, 48, 64)  # reassemble widths per readout
    # fusion width; NOTE: 32 trained 5x slower than 24 per step on the 2-core CPU (oneDNN conv choice)
    features: int = 24
    eps: float = 1e-6  # LayerNorm epsilon
    init_log_depth: float = 1.5  # bias of the last conv: exp(1.5) ~ 4.5 m, the scenes' median depth

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if (self.image_size // self.patch_size) % 2:
            raise ValueError("the patch grid side must be even (the coarsest stage halves it)")
        if len(self.readout) != 4 or len(self.stage_dims) != 4:
            raise ValueError("DPT reads exactly four layers (readout and stage_dims have four entries)")
        if sorted(self.readout) != list(self.readout) or not all(0 <= r < self.depth for r in self.readout):
            raise ValueError(f"readout {self.readout} must be increasing block indices below depth {self.depth}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens(self) -> int:
        """Sequence length including the class token."""
        return self.grid**2 + 1

    def vit(self) -> ViTConfig:
        return ViTConfig(
            self.image_size, self.patch_size, self.in_chans, 1, self.dim, self.depth, self.heads, self.mlp_dim, self.eps
        )

    def to_dict(self) -> dict:
        return asdict(self)


class ResidualConvUnit(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """out = conv1x1(up2(rcu2(x + rcu1(skip)))), or without ``skip`` for the coarsest stage."""

    def __init__(self, ch: int):
        super().__init__()
        self.rcu1 = ResidualConvUnit(ch)
        self.rcu2 = ResidualConvUnit(ch)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.rcu1(skip)
        x = F.interpolate(self.rcu2(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.out(x)


class Reassemble(nn.Module):
    """Tokens [B, N, dim] (class token first) -> feature map [B, features, G*scale, G*scale]."""

    def __init__(self, cfg: DepthViTConfig, stage_dim: int, scale: float):
        super().__init__()
        self.grid = cfg.grid
        self.project = nn.Linear(2 * cfg.dim, cfg.dim)
        self.act = nn.GELU()
        self.to_stage = nn.Conv2d(cfg.dim, stage_dim, 1)
        if scale > 1:
            self.resample = nn.ConvTranspose2d(stage_dim, stage_dim, int(scale), stride=int(scale))
        elif scale == 1:
            self.resample = nn.Identity()
        else:
            self.resample = nn.Conv2d(stage_dim, stage_dim, 3, stride=2, padding=1)
        self.to_features = nn.Conv2d(stage_dim, cfg.features, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls, patches = x[:, :1], x[:, 1:]
        t = self.act(self.project(torch.cat([patches, cls.expand_as(patches)], dim=-1)))
        B, N, C = t.shape
        fmap = t.transpose(1, 2).reshape(B, C, self.grid, self.grid)
        return self.to_features(self.resample(self.to_stage(fmap)))


class DepthViT(nn.Module):
    """DPT-style depth network; ``forward(pixels [B, 3, S, S]) -> depth [B, 1, S, S]`` in metres."""

    SCALES = (4.0, 2.0, 1.0, 0.5)

    def __init__(self, cfg: DepthViTConfig):
        super().__init__()
        self.cfg = cfg
        v = cfg.vit()
        self.patch_embed = nn.Conv2d(cfg.in_chans, cfg.dim, cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.dim))
        self.blocks = nn.ModuleList(Block(v) for _ in range(cfg.depth))
        self.reassemble = nn.ModuleList(Reassemble(cfg, d, s) for d, s in zip(cfg.stage_dims, self.SCALES, strict=True))
        self.fusion = nn.ModuleList(FusionBlock(cfg.features) for _ in range(4))
        f = cfg.features
        self.head1 = nn.Conv2d(f, f // 2, 3, padding=1)
        self.head2 = nn.Conv2d(f // 2, f // 2, 3, padding=1)
        self.head3 = nn.Conv2d(f // 2, 1, 1)

    def init_weights_(self, seed: int) -> DepthViT:
        """Deterministic init: transformer weights truncated normal (std 0.02), convs Kaiming-uniform from
        the seeded generator, zero biases, unit LayerNorm, last bias ``init_log_depth``."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif "norm" in name:
                    p.fill_(1.0)
                elif p.ndim == 4:
                    fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                    bound = (6.0 / fan_in) ** 0.5 * 0.5
                    p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
                else:
                    p.copy_(torch.randn(p.shape, generator=g).clamp_(-2, 2) * 0.02)
            self.head3.bias.fill_(self.cfg.init_log_depth)
        return self

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, C, H, W] -> tokens [B, N, dim]: patches, class token first, plus positions."""
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed

    def decode(self, readouts: list[torch.Tensor]) -> torch.Tensor:
        """Four token tensors [B, N, dim] (shallow first, class token first, N = grid² + 1) -> depth
        [B, 1, S, S] metres."""
        maps = [r(x) for r, x in zip(self.reassemble, readouts, strict=True)]
        y = self.fusion[3](maps[3])
        for i in (2, 1, 0):
            y = self.fusion[i](y, maps[i])
        return torch.exp(self.head3(F.relu(self.head2(self.head1(y)))))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embed(pixels)
        readouts = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.cfg.readout:
                readouts.append(x)
        return self.decode(readouts)
