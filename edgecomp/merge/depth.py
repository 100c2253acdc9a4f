"""Token merging inside depth-vit (``edgecomp.zoo.dpt.DepthViT``), with **unmerge** before each readout.

``MergingDepthViT`` shares the network's modules and changes only the encoder's forward pass, exactly as
``MergingViT`` does for the classifier: in every block with ``r > 0`` tokens merge between attention and MLP
(proportional attention, class token protected, the same ``PLANNERS``). The source map of every merge is
tracked (``matching.track_sources``), and at each decoder readout the merged tokens are put back on the
patch grid with ``matching.unmerge`` (every original token reads the merged token it ended up in), so the
DPT decoder always sees ``grid² + 1`` tokens in their original order and its static shapes do not change.

Shapes: ``forward(pixels [B, 3, S, S]) -> depth [B, 1, S, S]``; inside, tokens shrink from N0 = grid² + 1 by
``schedule[i]`` after block i, and each readout is ``unmerge(x [B, N_i, C], sources [B, N0]) -> [B, N0, C]``.
"""

from __future__ import annotations

from torch import Tensor, nn

from edgecomp.merge import matching
from edgecomp.merge.vit import merged_blocks


class MergingDepthViT(nn.Module):
    def __init__(self, net: nn.Module, schedule: tuple[int, ...], method: str, seed: int = 0):
        super().__init__()
        self.net, self.schedule, self.method = net, tuple(schedule), method
        self.seed = seed
        self.train(net.training)  # see MergingViT: a new Module starts in training mode
        self.merge_seconds = 0.0  # wall time spent planning + merging in eager forwards, for the report

    def forward(self, pixels: Tensor) -> Tensor:
        net = self.net
        readouts = [matching.unmerge(x, sources) if merged else x
                    for layer, x, sources, merged in merged_blocks(self, net.blocks, net.embed(pixels), True)
                    if layer in net.cfg.readout]
        return net.decode(readouts)
