"""Train vit-fmnist on Fashion-MNIST train and write its weights and test accuracy.

    python -m edgecomp.zoo.train_vit_fmnist --epochs 12 --out edgecomp/zoo/weights

Writes ``vit-fmnist.safetensors`` (fp32) and ``vit-fmnist.json`` (config, epochs, seed, measured test
top-1, wall time). Deterministic for a given seed and thread count. Not run in CI: the weights are
committed, this script is how they were made.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgecomp.zoo.data import fashion_mnist
from edgecomp.zoo.vit import ViT, ViTConfig

CONFIG = ViTConfig()  # 28x28, patch 4, dim 192, depth 6, 3 heads, MLP 576


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random 2-pixel-padded crop and horizontal flip; x: [B, 1, 28, 28]."""
    B = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2), value=float(-fashion_mnist.MEAN / fashion_mnist.STD))
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
    out = padded[:, :, dy : dy + 28, dx : dx + 28]
    flip = torch.rand(B, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


@torch.no_grad()
def evaluate(model: ViT, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = sum(int((model(x[i : i + batch]).argmax(-1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "weights")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)

    xtr, ytr = fashion_mnist.load("train")
    xte, yte = fashion_mnist.load("test")
    xtr, xte = torch.from_numpy(fashion_mnist.normalize(xtr)), torch.from_numpy(fashion_mnist.normalize(xte))
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)

    model = ViT(CONFIG).init_weights_(args.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.999))
    steps_per_epoch = len(xtr) // args.batch
    total, warmup = args.epochs * steps_per_epoch, steps_per_epoch // 2
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    t0 = time.time()
    history = []
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        loss_sum = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch : (i + 1) * args.batch]
            logits = model(_augment(xtr[idx], g))
            loss = F.cross_entropy(logits, ytr[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_sum += float(loss)
        acc = evaluate(model, xte, yte)
        history.append({"epoch": epoch + 1, "train_loss": round(loss_sum / steps_per_epoch, 4), "test_top1": acc,
                        "elapsed_s": round(time.time() - t0, 1)})
        print(json.dumps(history[-1]), flush=True)
        _save(model, args, history, args.out)  # after every epoch, so a stopped run still leaves weights


def _save(model: ViT, args: argparse.Namespace, history: list[dict], out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / "vit-fmnist.safetensors.tmp"), metadata={"format": "pt"})
    (out / "vit-fmnist.safetensors.tmp").replace(out / "vit-fmnist.safetensors")
    meta = {"config": CONFIG.to_dict(), "seed": args.seed, "batch": args.batch, "lr": args.lr,
            "epochs_planned": args.epochs, "threads": args.threads, "history": history,
            "test_top1": history[-1]["test_top1"], "params": sum(p.numel() for p in model.parameters()),
            "torch": torch.__version__, "numpy": np.__version__}
    (out / "vit-fmnist.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
