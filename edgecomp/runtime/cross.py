"""The build machine's side of a cross target: its tools, its TVM runtime libraries and the C++ host program.

A cross target (``Target.cross``, e.g. arm64) needs, on the build machine:

* ``cross.cc`` (``aarch64-linux-gnu-g++``) to link ``model.so`` (``export_library``) and the host program;
* ``cross.emulator`` (``qemu-aarch64``) and ``cross.sysroot`` to run them (``edgecomp.runtime.qemu``);
* ``libtvm_runtime.so`` and ``libtvm_ffi.so`` built for the target: taken from the target platform's wheels
  of exactly the installed ``apache-tvm`` / ``apache-tvm-ffi`` versions (``pip download``), since the model
  code, the VM bytecode and the runtime must come from one TVM release;
* ``run_model``: ``host/run_model.cc`` compiled with ``cross.cc`` against the installed tvm-ffi headers.

Downloads and builds are cached under ``$EDGECOMP_CACHE`` (default ``~/.cache/edgecomp``) in
``<arch>/tvm-<version>-ffi-<version>/``; each file is written under a temporary name and renamed, so an
interrupted fetch or build leaves nothing half-written. A missing tool raises ``ToolchainError`` naming
the Debian package that provides it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

from edgecomp.errors import EdgecompError
from edgecomp.targets import Cross, Target

HOST_SOURCE = Path(__file__).resolve().parent / "host" / "run_model.cc"
# wheel distribution -> the runtime library it holds (path inside the wheel)
RUNTIME_LIBS = {"apache-tvm": "tvm/lib/libtvm_runtime.so", "apache-tvm-ffi": "tvm_ffi/lib/libtvm_ffi.so"}


class ToolchainError(EdgecompError):
    """A tool or library a cross target needs is missing, or running it failed."""


def cache_root() -> Path:
    return Path(os.environ.get("EDGECOMP_CACHE") or Path.home() / ".cache" / "edgecomp")


def require_tool(name: str, package: str) -> str:
    """The absolute path of executable ``name``, or ToolchainError naming ``package``.

    ``name`` may hold environment variables (``$ANDROID_NDK_HOME/.../clang++``); an unset one is named in the
    error, since the fix is to set it, not to install a package."""
    unset = sorted({v for v in re.findall(r"\$\{?(\w+)\}?", name) if not os.environ.get(v)})
    if unset:
        raise ToolchainError(f"{', '.join(unset)} is not set; the compiler {name} needs it ({package})",
                             hint=f"export {unset[0]}=/path/to/it (install: {package})")
    expanded = os.path.expandvars(name)
    path = shutil.which(expanded)
    if path is None:
        if expanded != name:  # a path built from the environment: the variable points to the wrong place
            raise ToolchainError(f"{expanded} does not exist (from {name})",
                                 hint=f"point the variable at an installation that has it ({package})")
        raise ToolchainError(f"{name} is not installed (needed for cross targets)",
                             hint=f"apt-get install {package} (Debian/Ubuntu), or `make test` installs it")
    return path


def _tools(cross: Cross) -> tuple[tuple[str, str], ...]:
    """(tool, package) of the cross compiler and, if the target has one, the emulator."""
    return ((cross.cc, cross.cc_package),) + (((cross.emulator, cross.emulator_package),) if cross.emulator else ())


def missing_tools(cross: Cross) -> list[str]:
    """``"tool (package)"`` for each of the cross compiler and the emulator that is not installed."""
    return [f"{tool} ({pkg})" for tool, pkg in _tools(cross) if shutil.which(os.path.expandvars(tool)) is None]


def require_tools(cross: Cross) -> None:
    """ToolchainError for the first of the cross compiler and the emulator that is not installed."""
    for tool, pkg in _tools(cross):
        require_tool(tool, pkg)


def fcompile(target: Target):
    """The ``fcompile`` for ``Executable.export_library``: the target's cross linker, or None (host compiler)."""
    if target.cross is None:
        return None
    import tvm

    return tvm.support.cc.cross_compiler(require_tool(target.cross.cc, target.cross.cc_package))


def runtime_dir(cross: Cross, arch: str) -> Path:
    """The cache directory holding the target's ``libtvm_runtime.so`` and ``libtvm_ffi.so`` (fetched once)."""
    versions = {dist: importlib.metadata.version(dist) for dist in RUNTIME_LIBS}
    d = cache_root() / arch / f"tvm-{versions['apache-tvm']}-ffi-{versions['apache-tvm-ffi']}"
    if all((d / Path(member).name).exists() for member in RUNTIME_LIBS.values()):
        return d
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        pins = [f"{dist}=={v}" for dist, v in versions.items()]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--platform", cross.wheel_platform, "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}",
               "-d", tmp, *pins]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise ToolchainError(f"could not download the {arch} TVM runtime ({', '.join(pins)}): {last}",
                                 hint=f"needs PyPI; or put libtvm_runtime.so and libtvm_ffi.so for {arch} in {d}")
        for dist, member in RUNTIME_LIBS.items():
            wheel = next(Path(tmp).glob(dist.replace("-", "_") + "-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                _write_atomic(d / Path(member).name, z.read(member))
    return d


def host_program(cross: Cross, arch: str) -> Path:
    """The ``run_model`` executable for the target, beside its runtime libraries (rpath ``$ORIGIN``).

    Built once per host source and compiler; the name carries a hash of both, so an edited
    ``run_model.cc`` or another compiler gives a new binary instead of a stale one."""
    cc = require_tool(cross.cc, cross.cc_package)
    libs = runtime_dir(cross, arch)
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    key = hashlib.sha256(HOST_SOURCE.read_bytes() + "\n".join(version).encode()).hexdigest()[:12]
    exe = libs / f"run_model-{key}"
    if exe.exists():
        return exe
    import tvm_ffi.libinfo

    tmp = libs / f".{exe.name}.tmp-{uuid.uuid4().hex[:8]}"
    # --no-as-needed: nothing in the host references libtvm_runtime directly, but it must be loaded: it
    # registers the VM executable loader and runtime.LoadParamsFromFile.
    cmd = [cc, "-O2", "-std=c++17", f"-I{tvm_ffi.libinfo.find_include_path()}",
           f"-I{tvm_ffi.libinfo.find_dlpack_include_path()}", str(HOST_SOURCE), "-o", str(tmp), f"-L{libs}",
           "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = (res.stderr.strip().splitlines() or ["no output"])[0]
        raise ToolchainError(f"building the {arch} host program failed: {first}",
                             hint=f"command: {' '.join(cmd)}")
    os.replace(tmp, exe)
    return exe


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    os.replace(tmp, path)
