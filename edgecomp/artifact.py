"""The artifact directory: written atomically, hashed in ``manifest.json``, reopened for run/bench/eval.

Layout::

    OUT/manifest.json     edgecomp version, source, resolved recipe, target, toolchain, sha256 of every file
    OUT/report.json       per stage: what it did, errors vs references, schedules per function
    OUT/timings.json      wall-clock seconds per stage (the one file not hashed: it varies run to run)
    OUT/model.onnx        the folded ONNX graph that was compiled (and that onnxruntime benchmarks)
    OUT/model.so          the compiled library (Relax VM executable + kernels), for the target's architecture
    OUT/params.bin        weights, apart from the code (tvm.runtime.save_param_dict, p0..pN)
    OUT/example_inputs/   one calibration feed, one .npy per input (defaults for run / bench)

Everything is written into a temporary sibling directory which is renamed to OUT at the end, so a
failed or interrupted build leaves nothing behind, and an existing artifact is only replaced whole.

For a cross target (``manifest["target"]["runner"] == "qemu"``, e.g. arm64) model.so is linked with the
target's cross compiler; it cannot be loaded into this process, so ``load_runner`` runs it under the
emulator instead (``edgecomp.runtime.qemu``). params.bin is the same file either way: the C++ host reads
it with the runtime's own ``runtime.LoadParamsFromFile``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecomp import __version__
from edgecomp.errors import ArtifactError, ConfigError
from edgecomp.specs import TensorSpec

FORMAT = 1
UNHASHED = ("manifest.json", "timings.json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dump(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


@contextlib.contextmanager
def atomic_dir(out: Path, marker: str = "manifest.json", kind: str = "artifact"):
    """Yield a temporary directory beside ``out``; on success it replaces ``out`` in one atomic step.

    Refuses to replace an existing directory that does not hold ``marker`` (is not an edgecomp ``kind``).
    Whenever the process dies (SIGKILL included), ``out`` holds either the complete previous directory or the
    complete new one: a new ``out`` is one rename, an existing one is swapped with the new directory in one
    ``renameat2(RENAME_EXCHANGE)`` (Linux; elsewhere two renames, between which ``out`` is briefly absent).
    A killed build leaves a hidden sibling ``.OUT.tmp-PID-…`` (or ``.OUT.old-PID-…``); it is never read, and
    the next ``atomic_dir`` on the same ``out`` removes those whose process is gone.
    """
    out = Path(out)
    if out.exists() and not (out / marker).exists():
        raise ConfigError(f"{out} exists and is not an edgecomp {kind}", hint="choose a new -o path or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_leftovers(out)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
        if out.exists() and _exchange(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous directory
        else:
            old = None
            if out.exists():
                old = out.parent / f".{out.name}.old-{tag}"
                os.rename(out, old)
            os.rename(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # glibc < 2.28
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _remove_dead_leftovers(out: Path) -> None:
    """Delete ``.OUT.tmp-PID-…`` / ``.OUT.old-PID-…`` siblings of ``out`` whose process no longer runs."""
    for kind in ("tmp", "old"):
        for p in out.parent.glob(f".{glob.escape(out.name)}.{kind}-*"):
            pid = p.name[len(out.name) + 6:].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def toolchain(target=None) -> dict:
    """Versions of everything that shapes the artifact's bytes: Python packages, TVM's LLVM, and the C++
    compiler that links model.so (``target``'s cross compiler, else TVM's default: $CXX or g++)."""
    import onnx
    import onnxruntime
    import tvm
    import tvm_ffi

    versions = {"python": sys.version.split()[0], "numpy": np.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "tvm": tvm.__version__, "tvm_ffi": tvm_ffi.__version__,
                "llvm_major": int(tvm.target.codegen.llvm_version_major())}
    if "torch" in sys.modules:
        versions["torch"] = sys.modules["torch"].__version__
    if target is not None:
        cc = target.cross.cc if target.cross is not None else os.environ.get("CXX", "g++")
        versions["linker"] = _first_line([cc, "--version"])
    return versions


def _first_line(cmd: list[str]) -> str:
    import subprocess

    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{cmd[0]}: unavailable ({type(e).__name__})"
    return (res.stdout.strip().splitlines() or [f"{cmd[0]}: no version"])[0]


def export_model(compiled, target, directory: Path) -> tuple[Path, Path]:
    """Write ``directory/model.so`` (linked for ``target``: its cross compiler, if it has one) and
    ``directory/params.bin``; return both paths."""
    import tvm

    from edgecomp.runtime import cross

    if hasattr(compiled, "export_files"):  # a backend that is no TVM library (edgecomp.asic)
        return compiled.export_files(directory)
    so, params = Path(directory) / "model.so", Path(directory) / "params.bin"
    link = cross.fcompile(target)
    kwargs = {"fcompile": link} if link is not None else {}
    if not target.supports("cuda"):
        # the kernels' DWARF is about half of an unstripped model.so and no runtime reads it; the symbol
        # table stays (profilers name kernels by it)
        kwargs["options"] = ["-Wl,--strip-debug"]
    compiled.executable.export_library(str(so), **kwargs)
    if getattr(compiled, "check_library", None) is not None:  # e.g. CUDA: must hold a fatbin, not source
        compiled.check_library(so)
    tvm.runtime.save_param_dict_to_file({f"p{i}": tvm.runtime.tensor(p) for i, p in enumerate(compiled.params)},
                                        str(params))
    return so, params


def write(model, cfg, target, out: Path, timings: dict) -> Path:
    """Write the compiled ``model`` (form "compiled") as an artifact at ``out``."""
    import onnx

    compiled = model.payload
    with atomic_dir(out) as tmp:
        onnx.save(compiled.onnx, str(tmp / "model.onnx"))
        export_model(compiled, target, tmp)
        (tmp / "example_inputs").mkdir()
        for spec in model.inputs:
            np.save(tmp / "example_inputs" / f"{spec.name}.npy", model.calibration[0][spec.name])
        report = {"model": model.name, "stages": [r.to_dict() for r in model.reports], "notes": list(model.notes)}
        (tmp / "report.json").write_text(_dump(report))
        (tmp / "timings.json").write_text(_dump(timings))
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = path.relative_to(tmp).as_posix()
            if rel not in UNHASHED:
                files[rel] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        manifest = {
            "format": FORMAT, "edgecomp": __version__, "model": model.name, "source": model.source,
            "task": model.task, "target": target.to_dict(), "recipe": cfg.to_dict(), "toolchain": toolchain(target),
            "inputs": [s.to_dict() for s in model.inputs], "outputs": list(model.outputs),
            "params": len(compiled.params),
            "param_specs": [{"dtype": str(p.dtype), "shape": list(p.shape)} for p in compiled.params],
            "files": files, "unhashed": ["timings.json"],
        }
        (tmp / "manifest.json").write_text(_dump(manifest))
    return Path(out)


@dataclass(frozen=True)
class Artifact:
    """A built artifact directory, opened and checked against its manifest."""

    path: Path
    manifest: dict

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> "Artifact":
        path = Path(path)
        mf = path / "manifest.json"
        if not mf.exists():
            raise ArtifactError(f"{path} is not an edgecomp artifact (no manifest.json)",
                                hint="build one with `edgecomp build MODEL --target x86 -o DIR`")
        try:
            manifest = json.loads(mf.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{mf} is not valid JSON: {e}", hint="rebuild the artifact") from None
        if manifest.get("format") != FORMAT:
            raise ArtifactError(f"{path} has artifact format {manifest.get('format')}, expected {FORMAT}",
                                hint="rebuild it with this edgecomp")
        art = cls(path, manifest)
        if verify:
            art.verify()
        return art

    def verify(self) -> None:
        for rel, meta in self.manifest["files"].items():
            p = self.path / rel
            if not p.exists():
                raise ArtifactError(f"{self.path}: {rel} is missing", hint="rebuild the artifact")
            if p.stat().st_size != meta["bytes"] or file_sha256(p) != meta["sha256"]:
                raise ArtifactError(f"{self.path}: {rel} does not match its sha256 in manifest.json",
                                    hint="the file was modified or truncated; rebuild the artifact")

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec.from_dict(d) for d in self.manifest["inputs"])

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.manifest["outputs"])

    @property
    def name(self) -> str:
        return self.manifest["model"]

    def example_inputs(self) -> dict[str, np.ndarray]:
        return {s.name: np.load(self.path / "example_inputs" / f"{s.name}.npy", allow_pickle=False)
                for s in self.inputs}

    def report(self) -> dict:
        return json.loads((self.path / "report.json").read_text())

    @property
    def runner(self) -> str:
        """How this machine runs the artifact: "local" (in-process) or "qemu" (emulated cross target)."""
        return self.manifest["target"].get("runner", "local")

    def load_runner(self):
        """A runner for model.so: ``runner(feeds) -> list[np.ndarray]`` (``VMRunner`` or ``QemuRunner``)."""
        import tvm

        from edgecomp.runtime.vm import VMRunner

        if self.runner == "qemu":
            from edgecomp.runtime.qemu import QemuRunner
            from edgecomp.targets import Cross

            target = self.manifest["target"]
            return QemuRunner(self.path / "model.so", self.path / "params.bin", self.inputs,
                              Cross(**target["cross"]), target["arch"])
        if self.runner == "sim":
            from edgecomp.asic.runtime import SimRunner

            return SimRunner(self.path, self.inputs, self.manifest["target"]["asic"])
        if self.runner == "device":  # e.g. CUDA kernels + aarch64 host: no emulator here runs them
            target = self.manifest["target"]
            raise ArtifactError(f"{self.path} is built for {target['name']} ({target['arch']}) and runs only on "
                                "that device, not on this machine",
                                hint=f"copy the artifact to a {target['name']} device and load model.so there with "
                                     "a TVM runtime built for it (README: 'Jetson Orin (CUDA sm_87)')")
        if self.runner != "local":
            raise ArtifactError(f"{self.path} is for runner {self.runner!r}, which this edgecomp cannot run",
                                hint="run it on its device")
        from edgecomp import params_file

        # NOTE: checked here, not only by the sha256s: a consistent manifest does not make params.bin well-formed,
        # and the runtime's reader trusts the counts and shapes in it (params_file's doc)
        params_file.check(self.path / "params.bin", self.manifest["params"], self.manifest.get("param_specs"))
        lib = tvm.runtime.load_module(str(self.path / "model.so"))
        params_map = tvm.runtime.load_param_dict_from_file(str(self.path / "params.bin"))
        params = [params_map[f"p{i}"].numpy() for i in range(self.manifest["params"])]
        return VMRunner(lib, params, self.inputs)
