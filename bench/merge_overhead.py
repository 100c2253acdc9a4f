"""What the unfused token-merging ops cost next to the transformer block they sit in (x86, batch 1).

    python bench/merge_overhead.py                 # the committed cases
    python bench/merge_overhead.py --table-only    # README table from the JSON

Each case compiles two artifacts through ``edgecomp build`` (a torch module source, the same lowering as a zoo
build) and times them with ``edgecomp bench --compare none``: one transformer block at the layer's input
token count (the dims of the model named), and the merge alone at the same shapes (planning from the keys
plus the size-weighted merge of tokens and sizes). The share is merge / (block + merge): the cost of the
unfused path as a fraction of a merging layer. Weights and inputs are random: latency does not depend on
values, only the matching decisions do, and their cost is data independent (fixed shapes, no branches).
One JSON per case in bench/results/merge_overhead/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from readme_section import run_then_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "merge_overhead"
BEGIN, END = "<!-- merge-overhead:begin -->", "<!-- merge-overhead:end -->"
# name -> (dims of the model's block, tokens entering the layer, r, method)
CASES = {
    "vit-s16-tome-r13-first": (dict(dim=384, heads=6, mlp_dim=1536), 197, 13, "tome"),
    "vit-s16-tome-r13-last": (dict(dim=384, heads=6, mlp_dim=1536), 197 - 11 * 13, 13, "tome"),
    "vit-s16-crossget-r13-first": (dict(dim=384, heads=6, mlp_dim=1536), 197, 13, "crossget"),
    "minilm-l6-tome-r64-first": (dict(dim=384, heads=12, mlp_dim=1536), 256, 64, "tome"),
}


class MergeOnly(torch.nn.Module):
    """(x [1, N, C], k [1, H, N, D], size [1, N, 1]) -> merged (x, size): the ops a merging layer adds, in the
    merge stage's own module (``merges_<method>.0``), so the build fuses them exactly as in a merging ViT."""

    def __init__(self, r: int, method: str):
        super().__init__()
        from edgecomp.merge.vit import LayerMerge

        self.method = method
        self.add_module(f"merges_{method}", torch.nn.ModuleList([LayerMerge(method, 0, r, 0)]))

    def forward(self, x, k, size):
        B, H, N, D = k.shape
        class_query = k[:, :, 0].reshape(B, H * D)  # (keys stand in for queries: only timing matters here)
        return getattr(self, f"merges_{self.method}")[0](x, k, class_query, size)


def _spec(name, shape):
    from edgecomp.specs import TensorSpec

    return TensorSpec(name, tuple(shape), "float32")


def _build_and_time(module, feeds: dict, out: Path) -> float:
    from edgecomp import api

    specs = tuple(_spec(k, v.shape) for k, v in feeds.items())
    api.build(module.eval(), "x86", out, inputs=specs, calibration=[feeds])
    bench = out / "bench.json"
    subprocess.run([sys.executable, "-m", "edgecomp", "bench", str(out), "--compare", "none", "--json", str(bench)],
                   check=True, cwd=ROOT)
    return json.loads(bench.read_text())["results"]["edgecomp"]["p50_ms"]


def run(name: str, build_dir: Path) -> None:
    from edgecomp.zoo.vit import Block, ViTConfig

    dims, N, r, method = CASES[name]
    cfg = ViTConfig(image_size=16, patch_size=16, in_chans=1, num_classes=1, depth=1, **dims)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, N, dims["dim"])).astype(np.float32)
    k = rng.standard_normal((1, dims["heads"], N, dims["dim"] // dims["heads"])).astype(np.float32)
    block_ms = _build_and_time(Block(cfg), {"x": x}, build_dir / f"{name}-block")
    merge_ms = _build_and_time(MergeOnly(r, method), {"x": x, "k": k, "size": np.ones((1, N, 1), np.float32)},
                               build_dir / f"{name}-merge")
    report = json.loads((build_dir / f"{name}-merge" / "report.json").read_text())
    lower = next(st for st in report["stages"] if st["stage"] == "lower")
    fused = lower.get("merge_kernels", {}).get("fused", 0)
    result = {"case": name, "tokens_in": N, "r": r, "method": method, "dims": dims,
              "lowered_as": "fused kernel" if fused else "ops", "block_p50_ms": block_ms,
              "merge_p50_ms": merge_ms, "merge_share_of_layer": round(merge_ms / (block_ms + merge_ms), 4)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(result, flush=True)


def table() -> str:
    rows = ["| case | tokens in | r | method | merge lowered as | block p50 ms | merge p50 ms | "
            "merge share of the layer |", "|---|---|---|---|---|---|---|---|"]
    for f in sorted(RESULTS.glob("*.json")):
        r = json.loads(f.read_text())
        rows.append(f"| {r['case']} | {r['tokens_in']} | {r['r']} | {r['method']} | {r.get('lowered_as', 'ops')} | "
                    f"{r['block_p50_ms']:.3f} | "
                    f"{r['merge_p50_ms']:.3f} | {100 * r['merge_share_of_layer']:.1f} % |")
    return ("\n".join(rows) + "\n\nOne transformer block and the merge alone, each compiled by `edgecomp build` and "
            "timed by `edgecomp bench` (batch 1, 2 threads, p50); ToMe runs as the fused `token_merge` kernel, "
            "CrossGET as separate TVM functions. Regenerate: `python bench/merge_overhead.py` "
            "(JSON in `bench/results/merge_overhead/`).")


def main() -> None:
    run_then_table(__doc__, "cases", CASES, ROOT / "out" / "merge_overhead", run, table, BEGIN, END)


if __name__ == "__main__":
    main()
