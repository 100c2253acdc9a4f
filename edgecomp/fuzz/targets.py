"""What each fuzz case does inside the worker, and how its end is classified.

``execute(target, payload, ctx) -> {"outcome", "type", "detail"}``: ``ok`` when the call returned, ``error``
for an ``EdgecompError`` whose message and hint are one line each (for ``cli``: exit 2 with ``error:``
and at most a ``hint:`` line, or click's own usage error), ``traceback`` for anything else (with the
exception type and the innermost edgecomp frame, to find the bug). Payloads are JSON; file contents travel
base64-encoded under ``"b64"``.

``Context.prepare(fixtures)`` makes (once per fixtures directory, shared by restarted workers) a tiny ONNX
model and its x86 artifact, which the ``recipe``, ``cli``, ``npy`` and ``params`` cases reuse.
"""

from __future__ import annotations

import base64
import json
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path

from edgecomp.errors import EdgecompError

# Fast builds: no tuning records, two calibration feeds, one check feed per stage.
FAST = ("lower.tuning=\"none\"", "calib_samples=2", "export.check_samples=1", "lower.check_samples=1")
TARGETS = ("onnx", "recipe", "cli", "npy", "params")


@dataclass(frozen=True)
class Context:
    fixtures: Path  # tiny.onnx, tiny/ (its artifact), garbage.bin, recipe.toml, x.npy
    scratch: Path  # emptied before every case

    @classmethod
    def prepare(cls, fixtures: Path) -> "Context":
        fixtures = Path(fixtures)
        fixtures.mkdir(parents=True, exist_ok=True)
        if not (fixtures / "tiny" / "manifest.json").exists():
            _make_fixtures(fixtures)
        scratch = fixtures / "scratch"
        scratch.mkdir(exist_ok=True)
        return cls(fixtures, scratch)


def tiny_onnx_bytes(seed: int = 0) -> bytes:
    """x float32[1, 4] -> MatMul(W 4x3, N(0, 1) drawn with ``seed``) -> Relu -> y float32[1, 3], opset 17."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                              "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _make_fixtures(fixtures: Path) -> None:
    import numpy as np

    from edgecomp import api
    from edgecomp.config import BuildConfig

    (fixtures / "tiny.onnx").write_bytes(tiny_onnx_bytes())
    (fixtures / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (fixtures / "recipe.toml").write_text("[lower]\ntuning = \"none\"\n")
    np.save(fixtures / "x.npy", np.ones((1, 4), np.float32))
    api.build(fixtures / "tiny.onnx", "x86", fixtures / "tiny", BuildConfig().with_overrides(FAST))


def execute(target: str, payload: dict, ctx: Context) -> dict:
    shutil.rmtree(ctx.scratch, ignore_errors=True)
    ctx.scratch.mkdir()
    try:
        result = RUNNERS[target](payload, ctx)
        return result or {"outcome": "ok"}
    except EdgecompError as e:
        one_line = "\n" not in str(e) and "\n" not in e.hint and bool(e.message)
        return {"outcome": "error" if one_line else "traceback", "type": type(e).__name__, "detail": e.message[:300]}
    except Exception as e:
        return {"outcome": "traceback", "type": type(e).__name__, "detail": _where(e)}


def _where(e: BaseException) -> str:
    """``file:line`` of the innermost edgecomp frame (else the innermost frame) and the message's first line."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "/edgecomp/" in f.filename and "/fuzz/" not in f.filename] or frames[-1:]
    at = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return f"{at}: {msg}"


def _bytes(payload: dict) -> bytes:
    return base64.b64decode(payload["b64"])


def _build(source, ctx: Context, cfg=None) -> None:
    from edgecomp import api
    from edgecomp.config import BuildConfig

    api.build(source, "x86", ctx.scratch / "out", cfg or BuildConfig().with_overrides(FAST))


def run_onnx(payload: dict, ctx: Context) -> None:
    path = ctx.scratch / "model.onnx"
    path.write_bytes(_bytes(payload))
    _build(path, ctx)


def run_recipe(payload: dict, ctx: Context) -> None:
    from edgecomp.config import BuildConfig

    path = ctx.scratch / "recipe.toml"
    path.write_bytes(_bytes(payload))
    cfg = BuildConfig.from_toml(path).with_overrides(payload["overrides"])
    _build(ctx.fixtures / "tiny.onnx", ctx, cfg)


def run_npy(payload: dict, ctx: Context) -> dict:
    path = ctx.scratch / "input.npy"
    path.write_bytes(_bytes(payload))
    return run_cli({"argv": ["run", str(ctx.fixtures / "tiny"), "-i", f"{payload.get('name', 'x')}={path}"]}, ctx)


def run_params(payload: dict, ctx: Context) -> None:
    """A copy of the tiny artifact whose params.bin is the payload and whose manifest hashes it (a consistent
    but corrupt artifact: the hash check passes and the bytes reach the TVM runtime's loader)."""
    from edgecomp import api
    from edgecomp.artifact import file_sha256

    art = ctx.scratch / "art"
    shutil.copytree(ctx.fixtures / "tiny", art)
    (art / "params.bin").write_bytes(_bytes(payload))
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["params.bin"] = {"sha256": file_sha256(art / "params.bin"),
                                       "bytes": (art / "params.bin").stat().st_size}
    (art / "manifest.json").write_text(json.dumps(manifest))
    api.run(art)


PLACES = {"{ART}": "tiny", "{ONNX}": "tiny.onnx", "{GARBAGE}": "garbage.bin", "{RECIPE}": "recipe.toml",
          "{NPY}": "x.npy", "{MISSING}": "no/such/file"}


def run_cli(payload: dict, ctx: Context) -> dict:
    """``edgecomp.cli.main(argv)`` with placeholders ({ART}, {OUT}, ...) replaced by fixture paths."""
    from click.testing import CliRunner

    from edgecomp import cli

    argv = []
    for arg in payload["argv"]:
        for key, rel in PLACES.items():
            arg = arg.replace(key, str(ctx.fixtures / rel))
        argv.append(arg.replace("{OUT}", str(ctx.scratch / "out")))
    code = 0
    runner = CliRunner()
    # NOTE: inside scratch/cwd, so a relative path in the argv (-o 4, --json x) lands in the scratch directory
    with runner.isolated_filesystem(temp_dir=ctx.scratch), runner.isolation() as (out, err, _):
        try:
            cli.main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        stderr = err.getvalue().decode(errors="replace")
    return _classify_cli(code, stderr)


def _classify_cli(code: int, stderr: str) -> dict:
    lines = [line for line in stderr.splitlines() if line.strip()]
    if "Traceback" in stderr or code not in (0, 2, 130):
        return {"outcome": "traceback", "type": f"exit {code}", "detail": " | ".join(lines[-3:])[:300]}
    if code == 0:
        return {"outcome": "ok"}
    if lines and lines[0].startswith("error: ") and len(lines) <= 2 and all(
            line.startswith(("error: ", "hint: ")) for line in lines):
        return {"outcome": "error", "type": "exit 2", "detail": lines[0][:300]}
    if any(line.startswith("Error: ") for line in lines):  # click's usage errors: Usage + Try + Error lines
        return {"outcome": "error", "type": "usage", "detail": next(x for x in lines if x.startswith("Error: "))}
    return {"outcome": "traceback", "type": f"exit {code}", "detail": " | ".join(lines[-3:])[:300]}


def run_selftest(payload: dict, ctx: Context) -> None:
    """The harness's own test (tests/fuzz): a segfault, a hang or a plain exception, on request."""
    import ctypes
    import time

    if payload["do"] == "segfault":
        ctypes.string_at(0)
    if payload["do"] == "sleep":
        time.sleep(3600)
    raise RuntimeError("selftest")


RUNNERS = {"onnx": run_onnx, "recipe": run_recipe, "cli": run_cli, "npy": run_npy, "params": run_params,
           "selftest": run_selftest}
