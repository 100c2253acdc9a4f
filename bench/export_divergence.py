"""Where do the fake-quant torch model and onnxruntime part ways? Block by block, on calibration feeds.

    python bench/export_divergence.py efficientnet-lite0 --quant w4a4 --method quartdepth --blocks _blocks \\
        --set quantize.recon_seconds=60

Runs the compiler's prune / merge / quantize stages in process (the recipe's own settings, ``--set`` as for
``edgecomp build``), exports the quantized module as the export stage does (unfolded), and compares on the
first ``--feeds`` calibration feeds: the output of every block of the sequence at module attribute
``--blocks`` (the ONNX value is the last node named ``/<blocks>.<i>/...``) and the model output, each as
relative L2 of onnxruntime vs torch fake-quant, torch fake-quant vs fp32 and onnxruntime vs fp32. A rounding
flip cascade shows as onnxruntime vs torch growing block by block from float rounding while both stay equally
far from fp32; a wrong export shows as one block where onnxruntime alone jumps away from fp32. The torch
fake-quant model is also evaluated on the model's task (held-out data, fp32 reference in the same run), to
set beside the built artifact's `edgecomp eval`.
Writes bench/results/quant/<model>-<quant>-<method>-export-divergence.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "quant"


def rel(x, y) -> float:
    y = np.asarray(y, np.float64)
    return float(np.linalg.norm(np.asarray(x, np.float64) - y) / max(np.linalg.norm(y), 1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--quant", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--blocks", required=True, help="module attribute holding the block sequence")
    ap.add_argument("--feeds", type=int, default=2)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    a = ap.parse_args()

    import onnx
    import torch

    from edgecomp import onnx_tools
    from edgecomp.config import BuildConfig
    from edgecomp.stages import importer, merge, prune, quantize
    from edgecomp.stages.export import _export_torch
    from edgecomp.targets import load_target

    cfg = BuildConfig().with_overrides([f'quantize.scheme="{a.quant}"', f'quantize.method="{a.method}"', *a.sets])
    model = importer.load(a.model, cfg.calib_samples, cfg.seed)
    fp32 = copy.deepcopy(model.payload).eval()
    target = load_target("x86")
    for stage in (prune, merge, quantize):
        model = stage.run(model, getattr(cfg, stage.NAME), target)
    q = model.payload.eval()
    onnx_model = _export_torch(types.SimpleNamespace(payload=q, calibration=model.calibration, inputs=model.inputs,
                                                     outputs=model.outputs, name=a.model), cfg.export)
    last: dict[int, str] = {}
    for node in onnx_model.graph.node:  # the block's last node in topological order is its output
        parts = node.name.split("/")
        if len(parts) > 2 and parts[1].startswith(a.blocks + "."):
            last[int(parts[1].split(".")[1])] = node.output[0]
    names = [last[k] for k in sorted(last)]
    outputs = list(model.outputs)
    del onnx_model.graph.output[:]
    onnx_model.graph.output.extend(onnx.helper.make_tensor_value_info(v, onnx.TensorProto.FLOAT, None)
                                   for v in names + outputs)
    sess = onnx_tools.session(onnx_model, optimize=False)
    seqs = (getattr(q, a.blocks), getattr(fp32, a.blocks))
    feeds_out = []
    for i, feed in enumerate(model.calibration[:a.feeds]):
        got: dict = {"q": {}, "fp32": {}}
        hooks = [b.register_forward_hook(lambda m, x, y, k=k, d=got[w]: d.__setitem__(k, y.detach().numpy()))
                 for w, seq in zip(("q", "fp32"), seqs, strict=True) for k, b in enumerate(seq)]
        x = [torch.from_numpy(feed[s.name]) for s in model.inputs]
        with torch.no_grad():
            yq, yf = q(*x).numpy(), fp32(*x).numpy()
        for h in hooks:
            h.remove()
        ort = sess.run(None, {s.name: feed[s.name] for s in model.inputs})
        blocks = [{"block": k, "ort_vs_torch": rel(o, got["q"][k]), "torch_vs_fp32": rel(got["q"][k], got["fp32"][k]),
                   "ort_vs_fp32": rel(o, got["fp32"][k])} for k, o in zip(sorted(last), ort, strict=False)]
        feeds_out.append({"feed": i, "blocks": blocks, "output": {
            "ort_vs_torch": rel(ort[-1], yq), "torch_vs_fp32": rel(yq, yf), "ort_vs_fp32": rel(ort[-1], yf)}})
        print(f"feed {i}: output ort-torch {feeds_out[-1]['output']['ort_vs_torch']:.3g}, torch-fp32 "
              f"{feeds_out[-1]['output']['torch_vs_fp32']:.3g}, ort-fp32 {feeds_out[-1]['output']['ort_vs_fp32']:.3g}")
        for b in blocks:
            print(f"  block {b['block']:2d}: ort-torch {b['ort_vs_torch']:.2e}  torch-fp32 {b['torch_vs_fp32']:.3f}  "
                  f"ort-fp32 {b['ort_vs_fp32']:.3f}")
    held_out = None
    if model.task:  # the torch fake-quant model on the eval data (not fitted): compare with the artifact's eval
        from edgecomp import api

        ev = api.evaluate_module(q, a.model, model.inputs, model.task, reference=fp32)
        held_out = {"task": ev["task"], "metric": ev["metric"], "value": ev["value"], "n": ev["n"],
                    "details": ev["details"]}
        print(f"torch fake-quant on {ev['task']}: {ev['metric']} {ev['value']:.4g} (n={ev['n']})")
    out = RESULTS / f"{a.model}-{a.quant}-{a.method}-export-divergence.json"
    cmd = f"python bench/export_divergence.py {a.model} --quant {a.quant} --method {a.method} --blocks {a.blocks}" + \
        "".join(f" --set {s}" for s in a.sets)
    out.write_text(json.dumps({"model": a.model, "scheme": a.quant, "method": a.method, "command": cmd,
                               "calibration_feeds_compared": len(feeds_out), "feeds": feeds_out,
                               "torch_fake_quant_on_eval_data": held_out}, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
