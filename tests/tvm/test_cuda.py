"""CUDA builds on a machine without a GPU (edgecomp.tvm.cuda, the CUDA path of compile.py, fatbin.py).

Compile-only tests run wherever nvcc and the aarch64 cross compiler are installed: the Jetson Orin
artifact must be an aarch64 library holding sm_87 machine code and no CUDA source. Tests that execute
kernels are marked ``gpu`` and skip without one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgecomp.artifact import Artifact
from edgecomp.config import BuildConfig
from edgecomp.targets import load_target
from edgecomp.tvm import cuda, fatbin

EM_AARCH64 = 183


@pytest.fixture(scope="module")
def orin():
    """The jetson-orin target, or a skip naming the missing compiler."""
    target = load_target("jetson-orin")
    for tool in ("nvcc", target.cross.cc, "gcc"):
        if shutil.which(tool) is None:
            pytest.skip(f"jetson-orin builds need {tool}")
    return target


@pytest.fixture(scope="module")
def orin_tiny(orin, tiny_module, tiny_spec, tiny_calibration, tmp_path_factory):
    """The conftest Tiny module (conv, Linear+GELU, LayerNorm, Linear) built for jetson-orin, and its build time."""
    from edgecomp import api

    t = time.perf_counter()
    path = api.build(tiny_module, orin, tmp_path_factory.mktemp("orin") / "tiny", inputs=tiny_spec,
                     calibration=tiny_calibration)
    return Artifact.open(path), time.perf_counter() - t


def _lower(art: Artifact) -> dict:
    return next(s for s in art.report()["stages"] if s["stage"] == "lower")


def test_orin_artifact_is_aarch64_with_sm87_fatbin_and_no_source(orin_tiny):
    art, seconds = orin_tiny
    assert seconds < 60, f"the tiny jetson-orin build took {seconds:.0f} s"
    so = (art.path / "model.so").read_bytes()
    assert so[:4] == b"\x7fELF" and int.from_bytes(so[18:20], "little") == EM_AARCH64
    report = fatbin.check_library(art.path / "model.so", "sm_87")
    assert report["source_markers"] == 0 and b"__global__" not in so
    assert [(e["kind"], e["sm"], e["cuda_elf"]) for e in report["entries"]] == [("elf", 87, True)]
    lower = _lower(art)
    assert lower["library"]["entries"] == report["entries"] and lower["library"]["bytes"] == len(so)
    assert lower["tvm_target"]["kind"] == "cuda" and lower["tvm_target"]["host"]["mtriple"] == "aarch64-linux-gnu"
    assert set(lower["schedules"]) <= {"matmul", "gemv", "reduction", "general_reduction", "fallback"}
    assert art.manifest["target"]["runner"] == "device"


def test_orin_report_says_not_executed_and_export_check_ran(orin_tiny):
    art, _ = orin_tiny
    lower = _lower(art)
    assert lower["check"].startswith("not executed: no GPU")
    assert not any(k in lower for k in ("max_abs_err", "rel_l2_err", "worst_feed_err"))  # no number without a run
    export = next(s for s in art.report()["stages"] if s["stage"] == "export")
    assert export["checked_against"] and export["max_abs_err"] < 1e-4


@pytest.mark.parametrize("command, message", [(["run"], "runs only on that device"),
                                              (["bench"], "runs only on that device"),
                                              (["bench", "--device", "rpc://127.0.0.1:9/orin"], "CUDA kernels"),
                                              (["package", "--target", "jetson-orin", "-o", "B"], "CUDA kernels")])
def test_run_bench_and_package_refuse_a_jetson_artifact(orin_tiny, command, message, tmp_path):
    res = subprocess.run([sys.executable, "-m", "edgecomp", command[0], str(orin_tiny[0].path), *command[1:]],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "jetson" in res.stderr.lower()
    assert list(tmp_path.iterdir()) == []
    assert "qemu" not in res.stderr and "Traceback" not in res.stderr


_SOURCE_ONLY = textwrap.dedent("""
    import sys
    import tvm
    from tvm.script import tirx as T

    @T.prim_func
    def add1(a: T.Buffer((256,), "float32"), b: T.Buffer((256,), "float32")):
        for i in T.thread_binding(2, "blockIdx.x"):
            for j in T.thread_binding(128, "threadIdx.x"):
                b[i * 128 + j] = a[i * 128 + j] + T.float32(1)

    tgt = tvm.target.Target({"kind": "cuda", "arch": "sm_87"}, host={"kind": "llvm", "mtriple": "aarch64-linux-gnu"})
    with tgt:
        ex = tvm.compile(tvm.IRModule({"add1": add1}), target=tgt)
    ex.export_library(sys.argv[1], fcompile=tvm.support.cc.cross_compiler("aarch64-linux-gnu-g++"))
""")


def test_source_only_library_is_refused(orin, tmp_path):
    """Trap 1 of notes/tvm-0.27.md §3, reproduced: a process that never loads the CUDA runtime (no stub)
    exports raw CUDA source; the check must refuse that library."""
    if cuda.has_driver():
        pytest.skip("a real CUDA driver is installed: TVM builds a fatbin without the stub")
    script, so = tmp_path / "source_only.py", tmp_path / "source_only.so"
    script.write_text(_SOURCE_ONLY)
    res = subprocess.run([sys.executable, str(script), str(so)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TVM_CUDA_COMPILE_MODE": "nvcc"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert b"__global__" in so.read_bytes()
    with pytest.raises(fatbin.DeviceCodeError, match="raw CUDA source"):
        fatbin.check_library(so, "sm_87")


def test_missing_nvcc_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cuda.shutil, "which", lambda name: None)
    with pytest.raises(cuda.CudaToolchainError, match="nvcc is not on PATH") as e:
        cuda.require_nvcc()
    assert "CUDA toolkit" in e.value.hint and e.value.exit_code == 2


def test_stub_exports_the_driver_symbols_the_runtime_imports(orin, tmp_path, monkeypatch):
    if shutil.which("nm") is None:
        pytest.skip("needs nm (binutils)")
    monkeypatch.setenv("EDGECOMP_CACHE", str(tmp_path))
    lib = cuda.stub_library()
    assert lib.name == "libcuda.so.1" and lib.is_relative_to(tmp_path)
    assert cuda.stub_library() == lib  # cached
    syms = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    assert {line.split()[-1] for line in syms.splitlines()} >= set(cuda.STUB_SYMBOLS)
    import tvm

    runtime = Path(tvm.__file__).parent / "lib" / "libtvm_runtime_cuda.so"
    if runtime.exists():
        undefined = subprocess.run(["nm", "-D", "--undefined-only", str(runtime)], capture_output=True,
                                   text=True).stdout
        needed = {line.split()[-1].split("@")[0] for line in undefined.splitlines() if " cu" in line}
        needed = {s for s in needed if s.startswith("cu") and not s.startswith("cuda")}
        assert needed <= set(cuda.STUB_SYMBOLS), f"driver symbols the stub lacks: {needed - set(cuda.STUB_SYMBOLS)}"


@pytest.fixture(scope="module")
def orin_q4(orin, tiny_module, tiny_spec, tiny_calibration, tmp_path_factory):
    """The Tiny module quantized W4A16 (RTN, group 32; MatMulNBits) and built for jetson-orin."""
    from edgecomp import api

    cfg = BuildConfig().with_overrides(['quantize.scheme="w4a16"', 'quantize.method="rtn"', "quantize.group_size=32"])
    return Artifact.open(api.build(tiny_module, orin, tmp_path_factory.mktemp("orin-q4") / "q", cfg,
                                   inputs=tiny_spec, calibration=tiny_calibration))


def test_int4_weights_stay_packed_in_the_cuda_kernels(orin, orin_q4):
    """W4A16 (MatMulNBits) on jetson-orin: the weights ship as packed uint8 and the GPU kernel that consumes
    them reads those bytes; no float copy of a quantized weight is a parameter."""
    import onnx

    from edgecomp.tvm import frontend
    from edgecomp.tvm.compile import compile_relax

    art = orin_q4
    model = onnx.load(str(art.path / "model.onnx"))
    nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2  # fc1 (512 -> 64) and fc2 (64 -> 10)
    specs = art.manifest["param_specs"]
    packed = sorted(s["shape"] for s in specs if s["dtype"] == "uint8")
    assert [64, 256] in [sorted(p) for p in packed] or any(np.prod(p) == 512 * 64 // 2 for p in packed), packed
    float_sizes = {int(np.prod(s["shape"])) for s in specs if s["dtype"].startswith("float")}
    assert 512 * 64 not in float_sizes and 64 * 10 not in float_sizes  # no dequantized weight parameter
    fatbin.check_library(art.path / "model.so", "sm_87")

    mod, params, _ = frontend.to_relax(model, art.inputs, orin.tvm_target(), kernels=True)
    compiled = compile_relax(mod, params, orin, use_database=False)
    fused = {f: r for f, r in compiled.schedules.items() if "dequantize_q4" in f}
    assert len(fused) == 2 and all("matmul" in f for f in fused), compiled.schedules  # decode inside the GEMMs
    assert set(fused.values()) <= {"matmul", "gemv", "reduction"}  # thread-bound dlight GEMM / GEMV schedules
    cu = next(m for m in _modules(compiled.executable.mod) if m.kind == "cuda")
    kernels = _kernels(cu.inspect_source("cuda"))
    for name in fused:
        signature, body = kernels[f"{name}_kernel"]
        assert "uchar* __restrict__" in signature  # the packed int4 bytes themselves
        assert "& 15)" in body and ">> 4)" in body  # nibbles unpacked inside the GEMM kernel
    assert not any(k.startswith("dequantize_q4") for k in kernels)  # no separate float-weight kernel


def test_fused_int4_graph_matches_onnxruntime_on_the_cpu(orin, orin_q4):
    """The kernels cannot run here, but the graph they are scheduled from can: the GPU path's fused graph
    (decode inside the matmuls), compiled for this CPU with naive loops, must agree with onnxruntime.
    dlight's schedules only reorder and bind those loops."""
    import onnx
    import tvm

    from edgecomp import onnx_tools
    from edgecomp.runtime.vm import VMRunner
    from edgecomp.tvm import frontend
    from edgecomp.tvm.compile import gpu_graph

    model = onnx.load(str(orin_q4.path / "model.onnx"))
    mod, params, _ = frontend.to_relax(model, orin_q4.inputs, orin.tvm_target(), kernels=True)
    mod = gpu_graph(mod, orin.tvm_target())
    fused = [gv.name_hint for gv, f in mod.functions_items() if "dequantize_q4" in gv.name_hint]
    assert len(fused) == 2 and all("matmul" in f for f in fused)
    cpu = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    feeds = orin_q4.example_inputs()
    got = VMRunner(cpu, params, orin_q4.inputs)(feeds)
    ref = onnx_tools.run(onnx_tools.session(model), feeds)
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.shape and float(np.abs(a - b).max()) <= 1e-4 * max(1.0, float(np.abs(b).max()))


def _kernels(source: str) -> dict[str, tuple[str, str]]:
    """{kernel name: (signature, body)} of the kernel definitions in CUDA ``source``."""
    out = {}
    for chunk in source.split('extern "C" __global__')[1:]:
        head, brace, body = chunk.partition("{")
        if brace and ";" not in head:  # a definition, not a forward declaration
            out[head.split("(")[-2].split()[-1]] = (head, body)
    return out


def _modules(mod):
    yield mod
    for m in mod.imports:
        yield from _modules(m)


@pytest.mark.gpu
def test_x86_host_cuda_build_matches_onnxruntime(request):
    """On a machine with a GPU: the same pipeline for an x86-host CUDA target, run, against onnxruntime."""
    import tvm

    if not cuda.has_driver() or not tvm.cuda().exist:
        pytest.skip("no GPU")
    import dataclasses

    import onnx
    from tvm import relax

    from edgecomp import onnx_tools
    from edgecomp.tvm import frontend
    from edgecomp.tvm.compile import compile_relax

    orin = load_target("jetson-orin")
    arch = "sm_" + tvm.cuda().compute_version.replace(".", "")
    local = dataclasses.replace(orin, tvm={"kind": "cuda", "arch": arch, "host": {"kind": "llvm"}}, cross=None)
    art = Artifact.open(request.getfixturevalue("tiny_artifact"))  # built only when a GPU is there
    model = onnx.load(str(art.path / "model.onnx"))
    mod, params, _ = frontend.to_relax(model, art.inputs, local.tvm_target(), kernels=False)
    compiled = compile_relax(mod, params, local, use_database=False)
    feeds = art.example_inputs()
    dev = tvm.cuda()
    vm = relax.VirtualMachine(compiled.executable, dev)
    args = [tvm.runtime.tensor(feeds[s.name], dev) for s in art.inputs]
    out = vm["main"](*args, *[tvm.runtime.tensor(p, dev) for p in compiled.params])
    got = [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]
    ref = onnx_tools.run(onnx_tools.session(model), feeds)
    for a, b in zip(got, ref, strict=True):
        assert float(np.abs(a - b).max()) < 1e-4


def test_build_without_nvcc_fails_before_any_work(tmp_path):
    if shutil.which(load_target("jetson-orin").cross.cc) is None:
        pytest.skip("the aarch64 cross compiler is missing too (it is checked first)")
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "nvcc").exists())
    res = subprocess.run([sys.executable, "-m", "edgecomp", "build", "vit-fmnist", "--target", "jetson-orin", "-o",
                          str(tmp_path / "J")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": path})
    assert res.returncode == 2
    assert res.stderr.startswith("error: nvcc is not on PATH") and "CUDA toolkit" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_orin_builds_are_byte_identical(orin_tiny, tiny_module, tiny_spec, tiny_calibration, tmp_path):
    """nvcc's fatbin and the cross link are reproducible: a rebuild elsewhere gives the same bytes."""
    import hashlib

    from edgecomp import api

    def hashes(art: Path) -> dict[str, str]:
        return {p.relative_to(art).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(art.rglob("*")) if p.is_file() and p.name != "timings.json"}

    again = api.build(tiny_module, "jetson-orin", tmp_path / "other" / "name", inputs=tiny_spec,
                      calibration=tiny_calibration)
    first, second = hashes(orin_tiny[0].path), hashes(again)
    assert set(first) == set(second) and "model.so" in first
    assert [k for k in first if first[k] != second[k]] == []
