"""Where the prunable structures live, per model family, and how to cut them out physically.

A ``Layer`` is one transformer block seen by the pruner:

* ``attn``: the attention's input projections (q, k, v: whole heads are output rows of each), its output
  projection (o: whole heads are input columns) and the head geometry. With grouped-query attention
  (``kv_heads < heads``) k and v hold one head per group and are never cut; query heads are removed in
  *slices* of one head per group so every group keeps the same number of query heads and GQA stays
  regular (``units``).
* ``mlp``: the MLP's input projections (fc1, or gate and up: intermediate channels are output rows) and
  its output projection (fc2 / down: channels are input columns).

``ADAPTERS`` maps a torch module's class name to a function returning its layers, so supporting a new
family is one registered function. Cutting goes through ``keep_heads`` / ``keep_head_dims`` (UPop) /
``keep_channels``, which slice ``nn.Linear`` weights (and biases: the kept bias is the original one, never
a fresh init) and update the attributes the family's forward reads its head count and head size from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgecomp.registry import Registry


@dataclass
class AttentionSite:
    inputs: tuple[nn.Linear, ...]  # q, k, v (GQA: only q is cut, see kv_heads)
    output: nn.Linear  # o: input column block h*head_dim:(h+1)*head_dim belongs to head h
    heads: int
    head_dim: int
    kv_heads: int
    set_heads: Callable[[int], None]  # tells the module its new (query) head count
    # tells the module its new per-head dimension (UPop); None where dims cannot be cut (RoPE pairs them)
    set_head_dim: Callable[[int], None] | None = None

    @property
    def grouped(self) -> bool:
        return self.kv_heads < self.heads

    @property
    def cut_inputs(self) -> tuple[nn.Linear, ...]:
        """The projections whose output rows go with a query head: q only under GQA, else q, k, v."""
        return self.inputs[:1] if self.grouped else self.inputs


@dataclass
class MlpSite:
    inputs: tuple[nn.Linear, ...]  # fc1, or gate and up: channel i is output row i
    output: nn.Linear  # fc2 / down: channel i is input column i


@dataclass
class Layer:
    index: int
    attn: AttentionSite
    mlp: MlpSite


ADAPTERS: Registry[Callable[[nn.Module], list[Layer]]] = Registry("pruning adapter")


def _setter(obj, *names: str, scale: dict[str, int] | None = None) -> Callable[[int], None]:
    """A setter writing ``n`` (times ``scale[name]``) into each attribute ``names`` of ``obj``."""
    scale = scale or {}

    def set_heads(n: int) -> None:
        for name in names:
            setattr(obj, name, n * scale.get(name, 1))

    return set_heads


@ADAPTERS.register("DepthViT")  # depth-vit's encoder is built from the same blocks
@ADAPTERS.register("ViT")
def vit_layers(module: nn.Module) -> list[Layer]:
    """edgecomp.zoo.vit.ViT (vit-fmnist, vit-s16) and edgecomp.zoo.dpt.DepthViT (depth-vit): q/k/v/o per
    block, fc1 -> GELU -> fc2."""
    layers = []
    for i, blk in enumerate(module.blocks):
        a = blk.attn
        site = AttentionSite((a.q, a.k, a.v), a.o, a.heads, a.head_dim, a.heads, _setter(a, "heads"),
                             _setter(a, "head_dim"))  # the softmax scale is a fixed attribute: unchanged
        layers.append(Layer(i, site, MlpSite((blk.mlp.fc1,), blk.mlp.fc2)))
    return layers


@ADAPTERS.register("MiniLMEmbedder")
def bert_layers(module: nn.Module) -> list[Layer]:
    """transformers BertModel (minilm-l6) inside the zoo's embedder: self-attention query/key/value +
    output.dense, intermediate.dense -> GELU -> output.dense."""
    layers = []
    for i, blk in enumerate(module.bert.encoder.layer):
        s = blk.attention.self
        d = s.attention_head_size
        site = AttentionSite((s.query, s.key, s.value), blk.attention.output.dense, s.num_attention_heads, d,
                             s.num_attention_heads,
                             _setter(s, "num_attention_heads", "all_head_size", scale={"all_head_size": d}),
                             _bert_head_dim_setter(s))
        layers.append(Layer(i, site, MlpSite((blk.intermediate.dense,), blk.output.dense)))
    return layers


@ADAPTERS.register("CausalLMLogits")
def llama_layers(module: nn.Module) -> list[Layer]:
    """transformers LlamaForCausalLM (smollm2-135m) inside the zoo's logits wrapper: GQA attention
    q/k/v/o_proj, SwiGLU gate/up -> down_proj."""
    cfg = module.lm.config
    if cfg.model_type != "llama":
        raise KeyError(cfg.model_type)
    layers = []
    for i, blk in enumerate(module.lm.model.layers):
        a = blk.self_attn
        heads, kv = a.q_proj.out_features // a.head_dim, a.k_proj.out_features // a.head_dim
        site = AttentionSite((a.q_proj, a.k_proj, a.v_proj), a.o_proj, heads, a.head_dim, kv,
                             _gqa_setter(a, kv) if kv < heads else _ignore)
        layers.append(Layer(i, site, MlpSite((blk.mlp.gate_proj, blk.mlp.up_proj), blk.mlp.down_proj)))
    return layers


def _bert_head_dim_setter(s: nn.Module) -> Callable[[int], None]:
    # BertSelfAttention views q/k/v as (-1, attention_head_size) and scales by its fixed ``scaling``
    def set_head_dim(d: int) -> None:
        s.attention_head_size = d
        s.all_head_size = s.num_attention_heads * d

    return set_head_dim


def _ignore(n: int) -> None:
    """Head count setter for modules that infer it from the weights (view(..., -1, head_dim))."""


def _gqa_setter(attn: nn.Module, kv_heads: int) -> Callable[[int], None]:
    # eager attention repeats each k/v head num_key_value_groups times: that is the per-group head count
    def set_heads(n: int) -> None:
        attn.num_key_value_groups = n // kv_heads

    return set_heads


def layers_of(module: nn.Module) -> list[Layer]:
    """The module's prunable layers via its adapter (ConfigError listing the supported ones if none)."""
    from edgecomp.errors import ConfigError

    kind = type(module).__name__
    if kind not in ADAPTERS:
        raise ConfigError(f"no pruning adapter for {kind}",
                          hint=f"pruning supports: {', '.join(ADAPTERS)} (zoo: vit-fmnist, vit-s16, minilm-l6, "
                               "smollm2-135m)")
    try:
        return ADAPTERS.get(kind)(module)
    except (AttributeError, KeyError) as e:
        raise ConfigError(f"{kind} does not have the layout its pruning adapter expects ({e})",
                          hint="pruning supports the zoo's ViT, BERT and Llama models") from None


def head_channels(site: AttentionSite, heads: list[int]) -> torch.Tensor:
    """Indices of the o-projection input columns (= q rows) that belong to ``heads``: int64 [len(heads)*head_dim]."""
    d = site.head_dim
    return torch.tensor([h * d + j for h in sorted(heads) for j in range(d)], dtype=torch.int64)


def _slice_linear(lin: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None,
                  weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> None:
    """Shrink ``lin`` in place to output ``rows`` / input ``cols``; ``weight`` / ``bias`` replace the values."""
    w = lin.weight.data if weight is None else weight
    b = bias if bias is not None else (None if lin.bias is None else lin.bias.data)
    if rows is not None:
        w = w[rows]
        b = None if b is None else b[rows]
    if cols is not None:
        w = w[:, cols]
    lin.weight = nn.Parameter(w.contiguous().to(lin.weight.dtype), requires_grad=lin.weight.requires_grad)
    if b is not None:  # a compensated bias may be new (FLAP on a bias-free Llama projection)
        lin.bias = nn.Parameter(b.contiguous().to(lin.weight.dtype), requires_grad=lin.weight.requires_grad)
    lin.out_features, lin.in_features = w.shape


def keep_heads(site: AttentionSite, heads: list[int], o_weight: torch.Tensor | None = None,
               o_bias: torch.Tensor | None = None) -> None:
    """Keep query heads ``heads`` (sorted; under GQA an equal count per group), cut the rest.

    ``o_weight`` [out, heads*head_dim] (full width) / ``o_bias`` [out] are compensated values for the
    output projection; without them the original ones are sliced.
    """
    heads = sorted(heads)
    if site.grouped:
        per = site.heads // site.kv_heads
        counts = [sum(1 for h in heads if h // per == g) for g in range(site.kv_heads)]
        if len(set(counts)) != 1:
            raise ValueError(f"grouped attention must keep the same number of heads per group, got {counts}")
    idx = head_channels(site, heads)
    for lin in site.cut_inputs:
        _slice_linear(lin, rows=idx)
    _slice_linear(site.output, cols=idx, weight=o_weight, bias=o_bias)
    site.heads = len(heads)
    site.set_heads(len(heads))


def head_dim_channels(site: AttentionSite, dims: list[int]) -> torch.Tensor:
    """Indices of the q/k/v rows (= o input columns) of per-head dims ``dims`` in every head: int64
    [heads*len(dims)], head-major like the projections' output layout."""
    d = site.head_dim
    return torch.tensor([h * d + j for h in range(site.heads) for j in sorted(dims)], dtype=torch.int64)


def keep_head_dims(site: AttentionSite, dims: list[int]) -> None:
    """Keep per-head dimensions ``dims`` in every head (UPop's attention cut), cut the rest.

    The same dims go from every head's q, k and v rows (biases sliced, the originals kept) and from the
    matching o input columns; the head count is unchanged and the softmax scale stays the original
    1/√head_dim (the families read it from a fixed attribute). Refused where dims cannot be cut (rotary
    embeddings pair them, grouped k/v heads repeat): ``set_head_dim`` is None.
    """
    if site.set_head_dim is None or site.grouped:
        raise ValueError("this attention's per-head dimensions cannot be cut (rotary embeddings or grouped k/v)")
    if not dims:
        raise ValueError("keep_head_dims needs at least one dim per head")
    idx = head_dim_channels(site, dims)
    for lin in site.inputs:
        _slice_linear(lin, rows=idx)
    _slice_linear(site.output, cols=idx)
    site.head_dim = len(dims)
    site.set_head_dim(len(dims))


def keep_channels(site: MlpSite, channels: torch.Tensor, out_weight: torch.Tensor | None = None,
                  out_bias: torch.Tensor | None = None) -> None:
    """Keep MLP intermediate ``channels`` (int64, sorted); ``out_weight`` [out, full width] / ``out_bias``
    are compensated values for the output projection."""
    channels = torch.sort(channels).values
    for lin in site.inputs:
        _slice_linear(lin, rows=channels)
    _slice_linear(site.output, cols=channels, weight=out_weight, bias=out_bias)


def attention_units(site: AttentionSite, head_scores: torch.Tensor) -> list[list[int]]:
    """The removable attention units, least important first by ``head_scores`` [heads] (higher = keep).

    Without GQA every head is a unit. With GQA a unit is a slice: the j-th least important query head of
    every group, so removing units in order keeps the per-group count equal.
    """
    if not site.grouped:
        return [[int(h)] for h in torch.argsort(head_scores, stable=True)]
    per = site.heads // site.kv_heads
    ranked = [sorted(range(g * per, (g + 1) * per), key=lambda h: (float(head_scores[h]), h))
              for g in range(site.kv_heads)]
    return [[ranked[g][j] for g in range(site.kv_heads)] for j in range(per)]


def head_params(site: AttentionSite) -> int:
    """Parameters removed with one query head (q/k/v rows unless GQA, o columns), biases included."""
    rows = sum(lin.in_features + (lin.bias is not None) for lin in site.cut_inputs) * site.head_dim
    return rows + site.head_dim * site.output.out_features


def head_dim_params(site: AttentionSite) -> int:
    """Parameters removed with one per-head dim (UPop's attention mask entry): that row of q, k and v in
    every head plus the matching o columns, biases included (DeiT-S: 18·(384+1) + 6·384 = 9234)."""
    return site.heads * (sum(lin.in_features + (lin.bias is not None) for lin in site.inputs)
                         + site.output.out_features)


def channel_params(site: MlpSite) -> int:
    """Parameters removed with one MLP intermediate channel (input rows + output column), biases included."""
    return sum(lin.in_features + (lin.bias is not None) for lin in site.inputs) + site.output.out_features
