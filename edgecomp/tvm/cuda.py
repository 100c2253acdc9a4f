"""The build machine's side of a CUDA target: nvcc, and TVM's CUDA runtime loaded on a host without a GPU.

TVM compiles CUDA kernels to device code only when its CUDA runtime sidecar (``libtvm_runtime_cuda.so``)
is loaded; that library links the driver ``libcuda.so.1``, which a GPU-less build machine lacks. TVM
tries to load the sidecar once, at ``import tvm``, and silently goes on without it, after which every
CUDA build ships raw CUDA source instead of a fatbin (notes/tvm-0.27.md §3, trap 1).

``build_env()`` makes a CUDA build produce a fatbin in this process, whenever ``tvm`` was imported:

* nvcc must be on PATH (TVM runs ``nvcc`` by name); ``TVM_CUDA_COMPILE_MODE=nvcc`` is set for the block
  (the default, NVRTC, needs the ``cuda-bindings`` package, which this project does not install);
* if no real ``libcuda.so.1`` loads, a stub whose 9 driver entry points (those the sidecar imports) all
  return CUDA_ERROR_NO_DEVICE is built with gcc once, cached under ``$EDGECOMP_CACHE/cuda-stub/``, and
  loaded RTLD_GLOBAL: the dynamic linker then resolves the sidecar's ``libcuda.so.1`` to it by soname;
* the sidecar is then loaded, which registers ``ffi.Module.create.cuda``: that registration is what
  makes codegen call nvcc (measured: loading the stub before ``import tvm`` is enough alone; after
  ``import tvm``, and even after a build that already fell back to source, loading stub + sidecar works).

The stub never runs a kernel: this process cannot execute CUDA code, and nothing here tries to.
``export_library`` output is checked by ``edgecomp.tvm.fatbin.check_library``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from edgecomp.errors import EdgecompError

STUB_SYMBOLS = ("cuDeviceGetName", "cuFuncSetAttribute", "cuGetErrorName", "cuGetErrorString", "cuLaunchKernelEx",
                "cuModuleGetFunction", "cuModuleLoadData", "cuModuleUnload", "cuTensorMapEncodeTiled")
NVCC_HINT = ("install the CUDA toolkit (12.x or 13.x) and put its bin/ on PATH, e.g. apt-get install "
             "nvidia-cuda-toolkit, or pip install nvidia-cuda-nvcc")


class CudaToolchainError(EdgecompError):
    """nvcc, gcc or TVM's CUDA runtime sidecar is missing or does not load."""


def stub_source() -> str:
    """C source of the stub ``libcuda.so.1``: every driver entry point TVM's sidecar imports returns 100."""
    lines = ["/* edgecomp stub libcuda: lets libtvm_runtime_cuda.so load on a GPU-less build machine. */"]
    lines += [f"int {name}(void) {{ return 100; /* CUDA_ERROR_NO_DEVICE */ }}" for name in STUB_SYMBOLS]
    return "\n".join(lines) + "\n"


def require_nvcc() -> str:
    """The path of ``nvcc`` on PATH, or CudaToolchainError saying what to install."""
    path = shutil.which("nvcc")
    if path is None:
        raise CudaToolchainError("nvcc is not on PATH: CUDA targets compile their kernels with it", hint=NVCC_HINT)
    return path


def stub_library() -> Path:
    """The cached stub ``libcuda.so.1`` (built with gcc on first use; the cache key hashes source and gcc)."""
    from edgecomp.runtime.cross import cache_root

    gcc = shutil.which("gcc")
    if gcc is None:
        raise CudaToolchainError("gcc is not installed: it builds the libcuda stub that CUDA builds need here",
                                 hint="apt-get install gcc")
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    src = stub_source()
    key = hashlib.sha256((src + "\n".join(version)).encode()).hexdigest()[:12]
    lib = cache_root() / "cuda-stub" / key / "libcuda.so.1"
    if lib.exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    c, tmp = lib.parent / f".stub-{tag}.c", lib.parent / f".libcuda-{tag}.so"
    c.write_text(src)
    try:
        res = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wl,-soname,libcuda.so.1", str(c), "-o", str(tmp)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise CudaToolchainError(f"building the libcuda stub failed: {res.stderr.strip()[:200]}",
                                     hint=f"gcc {' '.join(version)}")
        os.replace(tmp, lib)  # atomic: a concurrent build sees the old name or the whole file
    finally:
        c.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return lib


def has_driver() -> bool:
    """Whether a real CUDA driver (``libcuda.so.1`` exporting ``cuInit``) can be loaded in this process."""
    try:
        return hasattr(ctypes.CDLL("libcuda.so.1"), "cuInit")  # the stub has no cuInit
    except OSError:
        return False


def load_runtime() -> str:
    """Load TVM's CUDA runtime sidecar into this process (idempotent); return how: "loaded", "driver", "stub".

    Raises CudaToolchainError when the sidecar does not load (its other dependency, ``libcudart``, missing)."""
    import tvm
    from tvm.base import _LOADED_LIBS
    from tvm_ffi.libinfo import load_lib_ctypes

    if tvm.get_global_func("ffi.Module.create.cuda", allow_missing=True) is not None:
        return "loaded"
    how = "driver" if has_driver() else "stub"
    if how == "stub":
        ctypes.CDLL(str(stub_library()), mode=ctypes.RTLD_GLOBAL)
    runtime_dir = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
    try:  # as tvm.backend.cuda.register_backend does at import, where a failure is silent
        _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(package="tvm", target_name="tvm_runtime_cuda",
                                                           extra_lib_paths=[runtime_dir], mode="RTLD_LOCAL")
    except (OSError, RuntimeError) as e:
        raise CudaToolchainError(f"TVM's CUDA runtime (libtvm_runtime_cuda.so) does not load: {e}",
                                 hint="it needs the CUDA runtime library libcudart of the version apache-tvm was "
                                      "built with; " + NVCC_HINT) from None
    if tvm.get_global_func("ffi.Module.create.cuda", allow_missing=True) is None:
        raise CudaToolchainError("TVM's CUDA runtime loaded but registered no CUDA module loader",
                                 hint="this apache-tvm wheel may be built without CUDA (USE_CUDA=OFF)")
    return how


@contextlib.contextmanager
def build_env():
    """Within the block, CUDA codegen compiles kernels with nvcc into fatbins (module doc). Yields how the
    CUDA runtime was loaded ("loaded" | "driver" | "stub")."""
    require_nvcc()
    how = load_runtime()
    previous = os.environ.get("TVM_CUDA_COMPILE_MODE")
    os.environ["TVM_CUDA_COMPILE_MODE"] = "nvcc"
    try:
        yield how
    finally:
        if previous is None:
            os.environ.pop("TVM_CUDA_COMPILE_MODE", None)
        else:
            os.environ["TVM_CUDA_COMPILE_MODE"] = previous
