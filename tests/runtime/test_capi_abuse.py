"""The C API under abuse (capi_abuse.c): null pointers, wrong shapes, dtypes, sizes and indices, handles used
after close or never opened, double close, reopening, truncated or damaged params.bin, signatures that lie,
missing files. Each case must come back as a status and a message, never an abort or a crash.

Two builds of the same program: natively on x86 with -fsanitize=address,undefined against the x86 TVM
runtime of the installed wheels (any ASan/UBSan report fails the test), on the tiny ONNX model; and
cross-built for arm64, run under qemu-aarch64 against an arm64 bundle of the same model. The x86 build is
cached under the edgecomp cache, keyed by the sources and the compiler (compiling edgecomp.cc with ASan
takes ~20 s).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgecomp import api
from edgecomp.artifact import Artifact
from edgecomp.config import BuildConfig
from edgecomp.fuzz.targets import tiny_onnx_bytes
from edgecomp.runtime import bundle, cross

PROGRAM = Path(__file__).resolve().parent / "capi_abuse.c"
FAST = BuildConfig().with_overrides(["lower.tuning=\"none\"", "calib_samples=2"])
FILE, ARG, SHAPE, DTYPE, SIZE, RUNTIME = 5, 1, 2, 3, 4, 6
EXPECTED = {
    "open_missing_library": FILE, "open_missing_params": FILE, "open_null_library": ARG, "params_empty": FILE,
    "params_cut_7": FILE, "params_cut_16": FILE, "params_cut_40": FILE, "params_cut_half": FILE,
    "params_cut_last": FILE, "params_huge_count": FILE, "params_trailing_bytes": FILE, "params_bad_magic": FILE,
    "sig_huge_input_count": FILE, "sig_huge_dims": FILE, "sig_overflowing_dims": FILE, "sig_negative_dim": FILE,
    "sig_bad_version": FILE, "sig_empty": FILE, "sig_params_count_lies": FILE,
    "index_null_name": ARG, "index_null_out": ARG, "info_int32_max": ARG, "set_rank_huge": SHAPE,
    "set_rank_negative": ARG, "set_dtype_negative": DTYPE, "set_nbytes_zero": SIZE, "set_nbytes_max": SIZE,
    "set_index_max": ARG, "get_index_negative": ARG, "get_null_data": ARG, "dtype_name_invalid": 0,
    "dtype_size_invalid": 0, "run_inputs_never_set": 0, "first_run": 0, "set_short_nbytes": SIZE,
    "second_handle": 0, "second_handle_run": 0, "second_handle_same": 1,
    "closed_run": ARG, "closed_set_input": ARG, "closed_get_output": ARG, "closed_output_info": ARG,
    "closed_num_inputs_count": -1, "never_opened_run": ARG, "reopen": 0, "reopen_run": 0, "reopen_same": 1,
    "sig_wrong_shape_open": 0, "sig_wrong_shape_run": RUNTIME,
}


def _check(res: subprocess.CompletedProcess) -> None:
    out = res.stdout + res.stderr
    assert res.returncode == 0 and res.stdout.endswith("done\n"), out[-3000:]
    for alarm in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Aborted", "terminate called"):
        assert alarm not in res.stderr, res.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines()[:-1])
    got = {case: int(lines[case].split(" ", 1)[0]) for case in EXPECTED if case in lines}
    assert got == EXPECTED
    assert "not an open handle" in lines["closed_run"] and "not a valid params file" in lines["params_cut_half"]
    assert "expect Tensor with ndim 2 but get 3" in lines["sig_wrong_shape_run"]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("capi") / "tiny.onnx"
    path.write_bytes(tiny_onnx_bytes())
    return path


def _asan_program() -> Path:
    """capi_abuse + edgecomp.cc built with ASan and UBSan for this machine, cached by sources and compiler."""
    import tvm
    import tvm_ffi
    import tvm_ffi.libinfo

    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("needs g++")
    capi = bundle.CAPI_DIR
    version = subprocess.run([gxx, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    key = hashlib.sha256(b"".join(p.read_bytes() for p in (PROGRAM, capi / "edgecomp.cc", capi / "edgecomp.h"))
                         + "\n".join(version).encode()).hexdigest()[:12]
    exe = cross.cache_root() / "x86-asan" / f"capi_abuse-{key}"
    if exe.exists():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    tvm_lib, ffi_lib = Path(tvm.__file__).parent / "lib", Path(tvm_ffi.__file__).parent / "lib"
    san = ["-g", "-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    tmp = exe.with_name(f".{exe.name}.tmp-{os.getpid()}")
    steps = [
        [gxx, *san, "-std=c++17", f"-I{capi}", f"-I{tvm_ffi.libinfo.find_include_path()}",
         f"-I{tvm_ffi.libinfo.find_dlpack_include_path()}", "-c", str(capi / "edgecomp.cc"), "-o", f"{tmp}.cc.o"],
        ["gcc", *san, "-std=c99", "-Wall", "-Werror", f"-I{capi}", "-c", str(PROGRAM), "-o", f"{tmp}.c.o"],
        [gxx, *san, f"{tmp}.c.o", f"{tmp}.cc.o", "-o", str(tmp), f"-L{tvm_lib}", f"-L{ffi_lib}", "-Wl,--no-as-needed",
         "-ltvm_runtime", "-ltvm_ffi", f"-Wl,-rpath,{tvm_lib}", f"-Wl,-rpath,{ffi_lib}"],
    ]
    try:
        for cmd in steps:
            res = subprocess.run(cmd, capture_output=True, text=True)
            assert res.returncode == 0, res.stderr[-3000:]
        os.replace(tmp, exe)
    finally:
        for p in (tmp, Path(f"{tmp}.cc.o"), Path(f"{tmp}.c.o")):
            p.unlink(missing_ok=True)
    return exe


def test_abuse_x86_under_asan_and_ubsan(tiny_onnx, tmp_path):
    art = Artifact.open(api.build(tiny_onnx, "x86", tmp_path / "art", FAST))
    (tmp_path / "model.txt").write_text(bundle.signature(art))
    (tmp_path / "scratch").mkdir()
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    res = subprocess.run([str(_asan_program()), str(art.path / "model.so"), str(art.path / "params.bin"),
                          str(tmp_path / "model.txt"), str(tmp_path / "scratch")], capture_output=True, text=True,
                         env=env, timeout=300)
    _check(res)


def test_abuse_arm64_under_qemu(tiny_onnx, arm64, tmp_path):
    art = Artifact.open(api.build(tiny_onnx, arm64, tmp_path / "art", FAST))
    path = bundle.package(art, arm64, tmp_path / "bundle")
    exe, lib = tmp_path / "capi_abuse", path / "lib"
    res = subprocess.run([bundle.tool(arm64.cross, "gcc"), "-O1", "-std=c99", "-Wall", "-Werror",
                          f"-I{path / 'include'}", str(PROGRAM), "-o", str(exe), f"-L{lib}", "-ledgecomp",
                          f"-Wl,-rpath-link,{lib}", f"-Wl,-rpath,{lib}"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (tmp_path / "scratch").mkdir()
    res = subprocess.run([arm64.cross.emulator, "-L", arm64.cross.sysroot, str(exe), str(lib / "model.so"),
                          str(path / "params.bin"), str(path / "model.txt"), str(tmp_path / "scratch")],
                         capture_output=True, text=True, timeout=300)
    _check(res)
