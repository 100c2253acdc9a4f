"""UPop (Shi et al., ICML 2023): unified and progressive structured pruning (notes §2), in the paper's names.

Masks ζ, initialised to 1, inserted by forward hooks on the adapter's sites (``insert_masks``):

* ``ζ_attn[l]`` [head_dim]: one per attention, shared across heads and across q/k/v, multiplying q, k and v
  right after their projections (each projection's [.., heads·head_dim] output times ζ repeated per head).
  Entry j stands for dim j of every head: 3·heads rows of q/k/v (biases too) and heads columns of o. The
  head count stays; the per-head dimension shrinks (``structures.keep_head_dims``, softmax scale unchanged).
* ``ζ_mlp[l]`` [width]: one per MLP, multiplying fc1's output before the activation.

Search (``search``): only the weights train; ζ are plain leaf tensors, never given to the optimizer. The loss
is ``L_task + w_attn·Σ|ζ_attn| + w_mlp·Σ|ζ_mlp|``. At every ``interval``-th step (and the last) the target
``π_t = p·sqrt((1 − cos(π(t+1)/T))/2)`` rises towards p; the scores of ζ are z-standardised per kind over
all layers, ranked (largest first: lowering those ζ lowers the loss most) and the prefix whose cost is
nearest ``π_t`` of the total is selected (``select``; cost = parameters an entry removes, biases included).
Selected ζ are set to ``1 − π_t/p``, all others to 1. At t = T−1, π = p: the selected ζ are exactly 0, so
``compress`` cuts them without changing the function, and ``retrain`` fine-tunes the compact model.

Scores: the **cumulative** gradient of each ζ since the search began, as in the reference DeiT code (ζ is
outside the optimizer, so ``zero_grad`` never clears it). It equals ranking a ζ trained by plain SGD, and
is far less noisy than one batch's gradient (the BLIP ``--amp`` path's behaviour), which matters for the
few hundred steps a time-boxed run gets. Since every ζ stays > 0 until the last step, the L1 terms add the
same constant to every score of a kind, which the standardisation removes: as in the paper, they shape the
loss, not the ranking.

Time box (``upop``): search gets ``upop_search_share`` of ``upop_seconds``. The schedule needs T up front,
so the first ``PROBE_STEPS`` search steps (ζ = 1; their gradients count) time a step and fix
T = remaining search time / step time. Retraining runs until the box is spent, its learning rate decaying
on a cosine of the elapsed share. ``upop_steps`` > 0 replaces both with fixed step counts.

Differences from the reference code, on purpose: the kept q/k/v bias is the original one (its
``compress()`` assigns ``qkv.weight.bias``, leaving a fresh random bias); the threshold prefix includes the
entry whose cumulative cost is nearest the target (the reference's strict ``>`` drops it); each layer's
kept head dim and MLP width are rounded to ``multiple`` where the width allows two or more multiples; the
model stays in eval mode (no dropout) while training; gradients are clipped to norm 1 (as
``train_vit_fmnist``). Families whose head dims cannot be cut (Llama: rotary embeddings pair them) are
refused. The task losses live in ``TASKS`` keyed by zoo name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from edgecomp.errors import ConfigError
from edgecomp.prune.structures import (
    Layer,
    channel_params,
    head_dim_params,
    keep_channels,
    keep_head_dims,
    layers_of,
)
from edgecomp.registry import Registry

PROBE_STEPS = 3  # search steps run before T is fixed (time-boxed runs); all but the first are timed
UPDATES = 100  # mask updates over the search when ``upop_interval`` is 0
SEED = 0  # batch order and augmentation of the task losses
CLIP = 1.0  # gradient-norm clip

TaskLoss = Callable[[nn.Module], torch.Tensor]  # draws the next batch, returns the scalar task loss


def progress(t: int, T: int, p: float) -> float:
    """UPop's cosine progressive target π_t = p·sqrt((1 − cos(π(t+1)/T))/2): ≈ 0 at t = 0, exactly p at T−1."""
    if t == T - 1:
        return p  # cos(π) = −1 exactly, but say so
    return p * math.sqrt((1 - math.cos(math.pi * (t + 1) / T)) / 2)


def rounded_kept(kept: int, width: int, multiple: int) -> int:
    """``kept`` rounded to the nearest multiple of ``multiple`` (at least one multiple, at most ``width``);
    widths with room for fewer than two multiples round to 1 instead ("where possible")."""
    m = multiple if width >= 2 * multiple else 1
    return min(width, max(m, int(math.floor(kept / m + 0.5)) * m))


def standardize(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """z-standardise one kind's scores over all its layers (population std; 1 if they are all equal)."""
    flat = torch.cat([s.double().flatten() for s in scores])
    sd = flat.std(unbiased=False)
    z = (flat - flat.mean()) / (sd if sd > 0 else 1.0)
    return list(torch.split(z, [s.numel() for s in scores]))


def select(grads_attn: list[torch.Tensor], grads_mlp: list[torch.Tensor], cost_attn: list[int],
           cost_mlp: list[int], target: float, multiple: int = 1) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The ζ entries to lower: (attn, mlp) boolean masks per layer, True = selected.

    ``grads_*[l]`` are layer l's scores (larger = prune first), ``cost_*[l]`` the parameters one entry of
    layer l removes. Scores are z-standardised per kind over all layers, all entries ranked together, and
    the top prefix whose cost is nearest ``target`` · total cost is selected. Then each layer's kept count
    is rounded (``rounded_kept``), taking or returning its highest / lowest-scoring entries.
    """
    z_attn, z_mlp = standardize(grads_attn), standardize(grads_mlp)
    groups = z_attn + z_mlp
    costs = list(cost_attn) + list(cost_mlp)
    z = torch.cat(groups)
    cost = torch.cat([torch.full((g.numel(),), float(c), dtype=torch.float64) for g, c in zip(groups, costs,
                                                                                            strict=True)])
    order = torch.argsort(z, descending=True, stable=True)
    spent = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(cost[order], 0)])
    n = int(torch.argmin((spent - target * spent[-1]).abs()))
    chosen = torch.zeros(len(z), dtype=torch.bool)
    chosen[order[:n]] = True
    out = []
    for g, picked in zip(groups, torch.split(chosen, [g.numel() for g in groups]), strict=True):
        width = g.numel()
        n_sel = width - rounded_kept(width - int(picked.sum()), width, multiple) if picked.any() else 0
        mask = torch.zeros(width, dtype=torch.bool)
        mask[torch.argsort(g, descending=True, stable=True)[:n_sel]] = True
        out.append(mask)
    return out[: len(z_attn)], out[len(z_attn):]


@dataclass
class Masks:
    """ζ of every layer and the hooks applying them (``insert_masks``); ``remove()`` takes the hooks out."""

    attn: list[torch.Tensor]  # ζ_attn[l] [head_dim]
    mlp: list[torch.Tensor]  # ζ_mlp[l] [width]
    handles: list = field(default_factory=list)

    def sparsity(self) -> torch.Tensor:
        """Σ|ζ_attn| and Σ|ζ_mlp| as a [2] tensor (differentiable)."""
        return torch.stack([sum(z.abs().sum() for z in self.attn), sum(z.abs().sum() for z in self.mlp)])

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _times(z: torch.Tensor, repeat: int):
    def hook(_module, _args, out):
        return out * (z.repeat(repeat) if repeat > 1 else z)

    return hook


def check_supported(module: nn.Module, layers: list[Layer] | None = None) -> list[Layer]:
    """The module's layers, or a ConfigError if UPop cannot cut its per-head dims (Llama: RoPE pairs them)."""
    layers = layers_of(module) if layers is None else layers
    if any(L.attn.set_head_dim is None or L.attn.grouped for L in layers):
        raise ConfigError(f"prune method upop cannot prune {type(module).__name__}: UPop shrinks every head's "
                          "dimension, and this family's rotary position embeddings pair those dimensions",
                          hint="use --prune-method newton, flap or magnitude here; upop cuts head dims in the "
                               f"ViT and BERT families (task losses for {', '.join(TASKS)})")
    return layers


def insert_masks(layers: list[Layer]) -> Masks:
    """ζ = 1 for every layer, hooked in: q, k, v outputs times ζ_attn repeated per head, fc1's output (the
    first MLP input, before the activation) times ζ_mlp."""
    masks = Masks([], [])
    for L in layers:
        za = torch.ones(L.attn.head_dim, requires_grad=True)
        zm = torch.ones(L.mlp.output.in_features, requires_grad=True)
        masks.handles += [lin.register_forward_hook(_times(za, L.attn.heads)) for lin in L.attn.inputs]
        masks.handles.append(L.mlp.inputs[0].register_forward_hook(_times(zm, 1)))
        masks.attn.append(za)
        masks.mlp.append(zm)
    return masks


def optimizer(module: nn.Module, lr: float) -> torch.optim.Optimizer:
    """AdamW over the module's parameters (never ζ), weight decay 0.05 on matrices outside the embeddings
    (the recipe vit-fmnist was trained with)."""
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in params if not (p.ndim >= 2 and "embed" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr)


def _step(module: nn.Module, loss_fn: TaskLoss, opt: torch.optim.Optimizer,
          masks: Masks | None = None, weights: tuple[float, float] = (0.0, 0.0)) -> float:
    """One training step; returns the task loss (the sparsity terms are added only when ``masks`` is given)."""
    task = loss_fn(module)
    loss = task
    if masks is not None:
        loss = loss + (torch.tensor(weights) * masks.sparsity()).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], CLIP)
    opt.step()
    return task.item()


def search(module: nn.Module, layers: list[Layer], cfg, loss_fn: TaskLoss, seconds: float) -> tuple[Masks, dict]:
    """UPop's unified progressive search on ``module`` (in place: its weights train). Returns the masks,
    still hooked in, with the selected ζ exactly 0 and the others 1, and what the search did."""
    p = cfg.ratio
    masks = insert_masks(layers)
    cost_attn = [head_dim_params(L.attn) for L in layers]
    cost_mlp = [channel_params(L.mlp) for L in layers]
    score_attn = [torch.zeros_like(z) for z in masks.attn]
    score_mlp = [torch.zeros_like(z) for z in masks.mlp]
    opt = optimizer(module, cfg.upop_lr)
    weights = (cfg.upop_w_attn, cfg.upop_w_mlp)
    losses = []

    def step() -> None:
        losses.append(_step(module, loss_fn, opt, masks, weights))
        with torch.no_grad():  # cumulative scores: ζ.grad summed over every step so far
            for z, s in zip(masks.attn + masks.mlp, score_attn + score_mlp, strict=True):
                s += z.grad
                z.grad = None

    t0 = time.perf_counter()
    probe = 0
    if cfg.upop_steps:
        T = cfg.upop_steps
    else:  # the first step pays one-off costs (lazy init), so the later probe steps set the pace
        step()
        t1 = time.perf_counter()
        for _ in range(PROBE_STEPS - 1):
            step()
        probe = PROBE_STEPS
        per_step = (time.perf_counter() - t1) / (PROBE_STEPS - 1)
        T = max(1, int((seconds - (time.perf_counter() - t0)) / per_step))
    interval = cfg.upop_interval or max(1, T // UPDATES)
    updates = 0
    for t in range(T):
        step()
        if t == T - 1 or (t > 0 and t % interval == 0):
            pi = progress(t, T, p)
            sel_attn, sel_mlp = select(score_attn, score_mlp, cost_attn, cost_mlp, pi, cfg.multiple)
            with torch.no_grad():
                for z, sel in zip(masks.attn + masks.mlp, sel_attn + sel_mlp, strict=True):
                    z.fill_(1.0)
                    z[sel] = 1.0 - pi / p
            updates += 1
    info = {"steps": probe + T, "probe_steps": probe, "schedule_steps": T, "interval": interval,
            "mask_updates": updates, "seconds": round(time.perf_counter() - t0, 1),
            "task_loss_first": _mean(losses[:10]), "task_loss_last": _mean(losses[-10:])}
    return masks, info


def compress(layers: list[Layer], masks: Masks) -> None:
    """Take the hooks out and cut every entry whose ζ is 0 (the kept ζ are 1: nothing left to fold in)."""
    masks.remove()
    for L, za, zm in zip(layers, masks.attn, masks.mlp, strict=True):
        dims = (za != 0).nonzero()[:, 0]
        if len(dims) < L.attn.head_dim:
            keep_head_dims(L.attn, dims.tolist())
        channels = (zm != 0).nonzero()[:, 0]
        if len(channels) < L.mlp.output.in_features:
            keep_channels(L.mlp, channels)


def retrain(module: nn.Module, cfg, loss_fn: TaskLoss, seconds: float) -> dict:
    """Fine-tune the compact model on the task loss: ``upop_steps`` steps, or until ``seconds`` are spent,
    the learning rate decaying to 0 on a cosine of the share done."""
    opt = optimizer(module, cfg.upop_lr)
    losses = []
    t0 = time.perf_counter()
    while True:
        if cfg.upop_steps:
            done = len(losses) / cfg.upop_steps
        else:  # a search that overran its share leaves nothing: the box is kept
            done = (time.perf_counter() - t0) / seconds if seconds > 0 else 1.0
        if done >= 1:
            break
        for g in opt.param_groups:
            g["lr"] = cfg.upop_lr * 0.5 * (1 + math.cos(math.pi * done))
        losses.append(_step(module, loss_fn, opt))
    return {"steps": len(losses), "seconds": round(time.perf_counter() - t0, 1),
            "task_loss_first": _mean(losses[:10]), "task_loss_last": _mean(losses[-10:])}


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 5) if xs else None


def upop(module: nn.Module, cfg, loss_fn: TaskLoss) -> dict:
    """Prune ``module`` in place with UPop to ``cfg.ratio`` of its prunable parameters: search, compress,
    retrain, within ``cfg.upop_seconds`` (or ``cfg.upop_steps``). Returns the pruning summary (the keys of
    ``edgecomp.prune.prune``'s, per-layer head dims, and ``upop``: steps, seconds, losses)."""
    from edgecomp.prune import count_params, prunable_params

    layers = check_supported(module)
    params_before, prunable = count_params(module), prunable_params(layers)
    before = [(L.attn.heads, L.attn.head_dim, L.mlp.output.in_features) for L in layers]
    was_training = module.training
    module.eval().requires_grad_(True)
    budget = cfg.upop_seconds
    t0 = time.perf_counter()
    try:
        masks, searched = search(module, layers, cfg, loss_fn, budget * cfg.upop_search_share)
        kept_dims = [(z != 0).nonzero()[:, 0].tolist() for z in masks.attn]
        compress(layers, masks)
        retrained = retrain(module, cfg, loss_fn, max(0.0, budget - (time.perf_counter() - t0)))
    finally:
        module.requires_grad_(False).train(was_training)
    after, prunable_after = count_params(module), prunable_params(layers)
    rows = [{"layer": L.index, "heads": [h, L.attn.heads], "head_dim": [d, L.attn.head_dim], "kept_head_dims": dims,
             "mlp_channels": [w, L.mlp.output.in_features]}
            for L, (h, d, w), dims in zip(layers, before, kept_dims, strict=True)]
    return {"method": "upop", "ratio": cfg.ratio, "multiple": cfg.multiple,
            "params": [params_before, after], "prunable_params": [prunable, prunable_after],
            "removed_share_of_prunable": round(1 - prunable_after / prunable, 4) if prunable else 0.0,
            "removed_share_of_model": round(1 - after / params_before, 4),
            "layers": rows,
            "upop": {"grad_score": "cumulative", "batch": cfg.upop_batch, "lr": cfg.upop_lr,
                     "w_attn": cfg.upop_w_attn, "w_mlp": cfg.upop_w_mlp,
                     "budget_seconds": None if cfg.upop_steps else budget,
                     "search": searched, "retrain": retrained}}


# --- task losses, keyed by zoo name -------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    description: str
    # (fp32 teacher = the unpruned module, the imported Model, PruneConfig) -> loss function
    make: Callable[..., TaskLoss]


TASKS: Registry[Task] = Registry("UPop task")


def task_for(model_name: str) -> Task:
    """The registered task loss of a model, or a ConfigError naming the models that have one."""
    if model_name not in TASKS:
        raise ConfigError(f"prune method upop has no training loss for {model_name}",
                          hint=f"UPop searches and retrains on the model's task; it supports {', '.join(TASKS)}. "
                               "Other models: --prune-method newton, flap or magnitude (training-free)")
    return TASKS.get(model_name)


def prune_with_task(module: nn.Module, teacher: nn.Module, model, cfg) -> dict:
    """``upop`` on ``module`` with the task loss registered for ``model.name`` (teacher: the unpruned model)."""
    check_supported(module)
    task = task_for(model.name)
    summary = upop(module, cfg, task.make(teacher, model, cfg))
    summary["upop"]["task"] = task.description
    return summary


def _epochs(n: int, batch: int, seed: int):
    """Endless random batches of indices into range(n), reshuffled each epoch."""
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - batch + 1, batch):
            yield perm[i : i + batch]
        if n < batch:
            yield torch.randint(0, n, (batch,), generator=g)


def fmnist_cross_entropy(teacher: nn.Module, model, cfg) -> TaskLoss:
    """Cross-entropy (label smoothing 0.1) on augmented Fashion-MNIST train batches: vit-fmnist's own
    training recipe (``train_vit_fmnist``)."""
    from edgecomp.zoo.data import fashion_mnist
    from edgecomp.zoo.train_vit_fmnist import _augment

    images, labels = fashion_mnist.load("train")
    x, y = torch.from_numpy(fashion_mnist.normalize(images)), torch.from_numpy(labels)
    g = torch.Generator().manual_seed(SEED)
    batches = _epochs(len(x), cfg.upop_batch, SEED)

    def loss(module: nn.Module) -> torch.Tensor:
        idx = next(batches)
        return F.cross_entropy(module(_augment(x[idx], g)), y[idx], label_smoothing=0.1)

    return loss


def minilm_distillation(teacher: nn.Module, model, cfg) -> TaskLoss:
    """1 − cos(student, fp32 teacher) of the sentence embeddings, on unlabelled pydoc-topics sentences (the
    calibration text, held apart from every eval set), padded per batch; teacher embeddings cached."""
    from edgecomp.zoo import minilm

    sentences = minilm.pydoc_sentences()
    tok = minilm.tokenizer()
    batches = _epochs(len(sentences), cfg.upop_batch, SEED)
    cache: dict[int, torch.Tensor] = {}

    def loss(module: nn.Module) -> torch.Tensor:
        idx = next(batches).tolist()
        enc = tok([sentences[i] for i in idx], padding=True, truncation=True, max_length=minilm.SEQ_LEN,
                  return_tensors="pt")
        ids, mask = enc["input_ids"].long(), enc["attention_mask"].long()
        missing = [j for j, i in enumerate(idx) if i not in cache]
        if missing:
            with torch.no_grad():
                emb = teacher(ids[missing], mask[missing])
            cache.update({idx[j]: e for j, e in zip(missing, emb, strict=True)})
        target = torch.stack([cache[i] for i in idx])
        return (1 - F.cosine_similarity(module(ids, mask), target, dim=-1)).mean()

    return loss


def calibration_distillation(teacher: nn.Module, model, cfg) -> TaskLoss:
    """MSE to the teacher's outputs on the model's own calibration feeds, stacked into batches. Not
    registered for any zoo model (a few dozen feeds overfit); tests and custom models register it."""
    import numpy as np

    names = [s.name for s in model.inputs]
    inputs = [torch.from_numpy(np.concatenate([f[n] for f in model.calibration])) for n in names]
    with torch.no_grad():
        targets = torch.cat([teacher(*(x[i : i + 1] for x in inputs)) for i in range(len(model.calibration))])
    batches = _epochs(len(targets), cfg.upop_batch, SEED)

    def loss(module: nn.Module) -> torch.Tensor:
        idx = next(batches)
        return F.mse_loss(module(*(x[idx] for x in inputs)), targets[idx])

    return loss


TASKS.add("vit-fmnist", Task("cross-entropy on Fashion-MNIST train", fmnist_cross_entropy))
TASKS.add("minilm-l6", Task("distillation (1 - cos) to the fp32 embeddings on pydoc-topics sentences",
                            minilm_distillation))
