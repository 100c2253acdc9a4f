"""Train depth-vit on rendered scenes (``depth_scenes`` train split) and write its weights and metrics.

    python -m edgecomp.zoo.train_depth_vit --scenes 12000 --steps 2400 --out edgecomp/zoo/weights
    python -m edgecomp.zoo.train_depth_vit --device cuda --workers 16 --textures crops.npz \
        --scenes 60000 --steps 20000 --batch 128 --budget-s 420     # a lent GPU machine

Writes ``depth-vit.safetensors`` (fp32) and ``depth-vit.json`` (config, schedule, seed, device, per-checkpoint
loss and validation AbsRel / δ1 on the val split, wall time). On the CPU it is deterministic for a given seed
and thread count; on a GPU up to the order of floating-point sums. ``--textures`` reads the texture crops
from a file written by ``depth_scenes.save_texture_file`` (a machine without the zoo's photo packages renders
the same scenes). ``--budget-s`` shortens the planned steps, after timing the first ``--every`` of them, so
that training ends inside the budget; the cosine schedule is then laid over the steps that fit, and the JSON
records both counts.
Loss on e = ln p − ln g: mean |e| + SILog-style sqrt(mean e² − 0.85 (mean e)²). Augmentation: horizontal
flips (depth flipped alike) and per-image brightness / contrast jitter. Not run in CI: the weights are
committed, this script is how they were made.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgecomp.eval import depth_metrics
from edgecomp.zoo.data import depth_scenes
from edgecomp.zoo.dpt import DepthViT, DepthViTConfig

CONFIG = DepthViTConfig()
NAME = "depth-vit"


def _augment(x: torch.Tensor, d: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, 3, S, S] normalised pixels, d [B, 1, S, S] -> flipped / jittered copies."""
    B = x.shape[0]
    flip = (torch.rand(B, generator=g, device=x.device) < 0.5)[:, None, None, None]
    x, d = torch.where(flip, x.flip(-1), x), torch.where(flip, d.flip(-1), d)
    gain = 1.0 + 0.3 * (torch.rand(B, 1, 1, 1, generator=g, device=x.device) * 2 - 1)
    bias = 0.2 * (torch.rand(B, 3, 1, 1, generator=g, device=x.device) * 2 - 1)
    return x * gain + bias, d


def _loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    e = torch.log(pred) - torch.log(gt)
    return e.abs().mean() + torch.sqrt((e**2).mean() - 0.85 * e.mean() ** 2 + 1e-8)


@torch.no_grad()
def evaluate(model: DepthViT, x: torch.Tensor, d: np.ndarray, batch: int = 50) -> dict[str, float]:
    model.eval()
    pred = torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])[:, 0].float().cpu().numpy()
    return depth_metrics.mean_metrics([depth_metrics.image_metrics(p, g) for p, g in zip(pred, d, strict=True)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=12000, help="rendered train scenes")
    ap.add_argument("--val", type=int, default=200, help="rendered val scenes")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--every", type=int, default=200, help="steps between validation + checkpoint")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "weights")
    ap.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    ap.add_argument("--workers", type=int, default=1, help="processes that render the scenes")
    ap.add_argument("--textures", type=Path, help="texture crops from depth_scenes.save_texture_file")
    ap.add_argument("--budget-s", type=float, default=0.0, help="fit the steps into this many seconds (0: no)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":  # TF32 GEMMs / convolutions: the weights are saved and evaluated in fp32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    g = torch.Generator(device=dev).manual_seed(args.seed)
    if args.textures is not None:
        depth_scenes.use_texture_file(args.textures)

    t0 = time.time()
    cfg = depth_scenes.SceneConfig(size=CONFIG.image_size)
    images, depths = depth_scenes.load("train", args.scenes, cfg, workers=args.workers)
    xtr = torch.from_numpy(depth_scenes.normalize(images)).to(dev)
    dtr = torch.from_numpy(depths)[:, None].to(dev)
    del images, depths
    vimages, vdepths = depth_scenes.load("val", args.val, cfg, workers=args.workers)
    xva = torch.from_numpy(depth_scenes.normalize(vimages)).to(dev)
    render_s = round(time.time() - t0, 1)
    print(json.dumps({"rendered": args.scenes + args.val, "seconds": render_s}), flush=True)

    model = DepthViT(CONFIG).init_weights_(args.seed).to(dev)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n and "token" not in n]
    ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )
    plan = {"steps": args.steps, "warmup": max(1, args.steps // 20)}  # a budget can shorten both (below)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / plan["warmup"]) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / plan["steps"]))),
    )
    history, loss_sum, perm, pos = [], 0.0, torch.randperm(len(xtr), generator=g, device=dev), 0
    t1 = time.time()
    step = 0
    while step < plan["steps"]:
        step += 1
        model.train()
        if pos + args.batch > len(perm):
            perm, pos = torch.randperm(len(xtr), generator=g, device=dev), 0
        idx = perm[pos : pos + args.batch]
        pos += args.batch
        x, d = _augment(xtr[idx], dtr[idx], g)
        loss = _loss(model(x), d)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_sum += float(loss.detach())
        if args.budget_s and step == args.every:
            # steps that fit: the first --every steps set the pace (validation and saving included below)
            fit = int(args.every * (args.budget_s - render_s) / max(time.time() - t1, 1e-9) * 0.95)
            plan["steps"] = max(args.every, min(args.steps, fit // args.every * args.every))
            plan["warmup"] = min(plan["warmup"], max(1, plan["steps"] // 20))
            print(json.dumps({"steps_fit": plan["steps"]}), flush=True)
        if step % args.every == 0 or step == plan["steps"]:
            m = evaluate(model, xva, vdepths)
            history.append(
                {
                    "step": step,
                    "train_loss": round(loss_sum / args.every, 4),
                    "val_abs_rel": round(m["abs_rel"], 4),
                    "val_delta1": round(m["delta1"], 4),
                    "elapsed_s": round(time.time() - t1, 1),
                }
            )
            loss_sum = 0.0
            print(json.dumps(history[-1]), flush=True)
            _save(model, args, plan["steps"], history, render_s, args.out)  # a stopped run still leaves weights


def _save(
    model: DepthViT, args: argparse.Namespace, steps: int, history: list[dict], render_s: float, out: Path
) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / f"{NAME}.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / f"{NAME}.safetensors")
    meta = {
        "command": " ".join(["python -m edgecomp.zoo.train_depth_vit", *sys.argv[1:]]),
        "config": CONFIG.to_dict(),
        "seed": args.seed,
        "batch": args.batch,
        "lr": args.lr,
        "steps_planned": args.steps,
        "steps_run": steps,
        "budget_s": args.budget_s,
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "train_scenes": args.scenes,
        "val_scenes": args.val,
        "threads": args.threads,
        "render_seconds": render_s,
        "history": history,
        "params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    (out / f"{NAME}.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
