"""``edgecomp package``: an artifact built for a cross target -> an embeddable bundle with a C API.

Layout of BUNDLE (written into a temporary sibling, then renamed, like an artifact)::

    include/edgecomp.h        the C API (capi/edgecomp.h): open, signatures, set input, run, get output, errors
    lib/libedgecomp.so        that API over tvm-ffi and the Relax VM (capi/edgecomp.cc, built for the target)
    lib/model.so              the artifact's compiled model (code only)
    lib/libtvm_runtime.so     the target's TVM runtime, from the apache-tvm wheel of the compiler's version
    lib/libtvm_ffi.so         likewise from apache-tvm-ffi
    params.bin                the weights (the artifact's, unchanged)
    model.txt                 the model's signature: parameter count, inputs and outputs (name dtype shape)
    example/                  main.c + Makefile: run the model on raw input files (cross: make CC=...-gcc)
    src/edgecomp.cc           the source of libedgecomp.so, to rebuild it with another toolchain
    static/model.o            (--static) the model as a TVM system lib: objects that register at start-up
    static/libedgecomp.a      (--static) the C API as an archive: model.o + it + the app make one program,
                              which needs only lib/libtvm_runtime.so and lib/libtvm_ffi.so beside it
    size.json                 bytes of every file as shipped; the libraries are stripped first

Contract: the bundle runs on the target with nothing else from edgecomp or Python, given the target's
libc, libstdc++ and libm. ``package`` refuses an artifact built for another target, with another TVM
release than the installed one (whose runtime it ships) or for a target file changed since
(``PackageError``), and a target without a cross toolchain; a missing tool raises ``ToolchainError``
naming its Debian package. The static model is lowered again from the artifact's model.onnx with the
artifact's recipe and must give exactly the parameters in params.bin.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path

from edgecomp.errors import EdgecompError
from edgecomp.runtime import cross as cross_tools
from edgecomp.targets import Cross, Target

CAPI_DIR = Path(__file__).resolve().parent / "capi"
LIBS = ("libedgecomp.so", "model.so", "libtvm_runtime.so", "libtvm_ffi.so")  # lib/, all stripped
STATIC = ("model.o", "libedgecomp.a")  # static/, debug sections stripped
SIGNATURE_VERSION = 1


class PackageError(EdgecompError):
    """An artifact cannot be packaged for the requested target."""


def tool(cross: Cross, name: str) -> str:
    """The path of the cross binutil/compiler ``name`` ("gcc", "strip") beside ``cross.cc``.

    ``cross.cc`` is ``<triple>-g++``; its siblings come with the same Debian package's dependencies."""
    prefix = cross.cc[: -len("g++")] if cross.cc.endswith("g++") else cross.cc.rsplit("-", 1)[0] + "-"
    return cross_tools.require_tool(prefix + name, cross.cc_package)


def signature(art) -> str:
    """``model.txt`` for an opened artifact: inputs from its manifest, output shapes from its model.onnx."""
    import onnx

    graph = onnx.load(str(art.path / "model.onnx"), load_external_data=False).graph
    if len(graph.output) != len(art.outputs):
        raise PackageError(f"{art.path}/model.onnx has {len(graph.output)} outputs, the manifest "
                           f"{len(art.outputs)}", hint="rebuild the artifact")
    rows = index_ranges(graph)
    lines = [f"edgecomp-model {SIGNATURE_VERSION}", f"params {art.manifest['params']}", f"inputs {len(art.inputs)}"]
    lines += [_line(s.name, s.dtype, s.shape) + (f" range 0 {rows[s.name]}" if s.name in rows else "")
              for s in art.inputs]
    lines.append(f"outputs {len(art.outputs)}")
    for name, out in zip(art.outputs, graph.output, strict=True):
        t = out.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if any(d < 0 for d in dims):
            raise PackageError(f"output {name!r} has a dynamic shape {dims}", hint="the C API needs static shapes")
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
        lines.append(_line(name, dtype, dims))
    return "\n".join(lines) + "\n"


GATHERS = {("", "Gather"): "axis", ("com.microsoft", "GatherBlockQuantized"): "gather_axis"}


def index_ranges(graph) -> dict[str, int]:
    """Graph input -> rows of the constant table it indexes (Gather / GatherBlockQuantized along axis 0).

    The compiled lookup reads out of bounds on an index outside [0, rows), so the C API refuses such values;
    an input that reaches a table only through other ops is not covered."""
    from onnx import helper

    inits = {t.name: t for t in graph.initializer}
    names = {i.name for i in graph.input}
    rows: dict[str, int] = {}
    for node in graph.node:
        axis_attr = GATHERS.get((node.domain, node.op_type))
        if axis_attr is None or len(node.input) < 2 or node.input[1] not in names or node.input[0] not in inits:
            continue
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == axis_attr), 0)
        if axis == 0:
            n = int(inits[node.input[0]].dims[0])
            rows[node.input[1]] = min(n, rows.get(node.input[1], n))
    return rows


def _line(name: str, dtype: str, shape) -> str:
    if not name or any(c.isspace() for c in name):
        raise PackageError(f"tensor name {name!r} is empty or holds whitespace",
                           hint="rename the model's inputs/outputs (model.txt is whitespace-separated)")
    return f"{name} {dtype} {len(shape)} {' '.join(str(int(d)) for d in shape)}".rstrip()


def capi_library(cross: Cross, arch: str, static: bool = False) -> Path:
    """``libedgecomp.so`` (or, ``static``, ``libedgecomp.a``) for the target, beside the cached runtime
    libraries; built once per source and compiler (the file name carries a hash of both, as
    ``cross.host_program`` does)."""
    cc = cross_tools.require_tool(cross.cc, cross.cc_package)
    libs = cross_tools.runtime_dir(cross, arch)
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    src = (CAPI_DIR / "edgecomp.cc").read_bytes() + (CAPI_DIR / "edgecomp.h").read_bytes()
    key = hashlib.sha256(src + "\n".join(version).encode()).hexdigest()[:12]
    out = libs / (f"libedgecomp-{key}.a" if static else f"libedgecomp-{key}.so")
    if out.exists():
        return out
    import tvm_ffi.libinfo

    tmp = libs / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    flags = [cc, "-O2", "-std=c++17", "-fPIC", "-fvisibility=hidden", f"-I{CAPI_DIR}",
             f"-I{tvm_ffi.libinfo.find_include_path()}", f"-I{tvm_ffi.libinfo.find_dlpack_include_path()}",
             str(CAPI_DIR / "edgecomp.cc")]
    try:
        if static:
            obj = tmp.with_suffix(".o")
            _run([*flags, "-c", "-o", str(obj)], f"compiling the C API for {arch}")
            _run([tool(cross, "ar"), "rcs", str(tmp), str(obj)], "archiving libedgecomp.a")
            obj.unlink()
        else:
            # --no-as-needed: libtvm_runtime must load with libedgecomp (it registers the VM loader and
            # runtime.LoadParamsFromFile) though no symbol of it is referenced directly.
            _run([*flags, "-shared", "-o", str(tmp), f"-L{libs}", "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi",
                  "-Wl,-rpath,$ORIGIN", "-Wl,-soname,libedgecomp.so"], f"building libedgecomp.so for {arch}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".o").unlink(missing_ok=True)
    return out


def static_model(art, target: Target, out: Path) -> Path:
    """``out`` (model.o): the artifact's model.onnx lowered again for ``target`` as a system lib, one
    relocatable object. PackageError unless its parameters equal params.bin."""
    import numpy as np
    import onnx
    import tvm

    from edgecomp.tvm import frontend
    from edgecomp.tvm.compile import compile_relax

    lower = art.manifest["recipe"]["lower"]
    mod, params, _ = frontend.to_relax(onnx.load(str(art.path / "model.onnx")), art.inputs, target.tvm_target(),
                                       lower["kernels"])
    compiled = compile_relax(mod, params, target, use_database=lower["tuning"] == "database", system_lib=True)
    shipped = tvm.runtime.load_param_dict_from_file(str(art.path / "params.bin"))
    if len(params) != len(shipped) or any(not np.array_equal(p, shipped[f"p{i}"].numpy())
                                          for i, p in enumerate(params)):
        raise PackageError("lowering model.onnx again gave other parameters than the artifact's params.bin",
                           hint="rebuild the artifact with this edgecomp, then package it")
    with tempfile.TemporaryDirectory(prefix="edgecomp-static-") as tmp:
        compiled.executable.export_library(str(Path(tmp) / "model.tar"))  # lib0.o (kernels, VM code), devc.o
        with tarfile.open(Path(tmp) / "model.tar") as tar:
            objs = sorted(n for n in tar.getnames() if n.endswith(".o"))
            tar.extractall(tmp, members=[tar.getmember(n) for n in objs], filter="data")
        # one relocatable object: an archive would let the linker drop the start-up registration
        _run([tool(target.cross, "gcc"), "-r", "-nostdlib", *(str(Path(tmp) / n) for n in objs), "-o", str(out)],
             "linking static/model.o")
    return out


def check_target(art, target: Target) -> None:
    """PackageError unless ``art`` was built for ``target`` (as it is now), ``target`` is a cross target and
    the artifact's TVM release is the installed one (the bundle ships the installed release's runtime)."""
    built_for = art.manifest["target"]["name"]
    rebuild = f"rebuild it: edgecomp build {art.name} --target {target.name} -o DIR"
    if built_for != target.name:
        raise PackageError(f"{art.path} was built for target {built_for!r}, not {target.name!r}", hint=rebuild)
    if target.cross is None:
        raise PackageError(f"target {target.name!r} has no [cross] table; bundles are built for cross targets",
                           hint="package an artifact built with --target arm64")
    if target.supports("cuda") or not target.cross.wheel_platform:  # the C API runs the VM on the CPU, from wheels
        why = "CUDA kernels (the C API runs models on the CPU)" if target.supports("cuda") else \
            "no TVM runtime on PyPI (no wheel_platform)"
        raise PackageError(f"target {target.name!r} has {why}; bundles are made for arm64",
                           hint="copy the artifact to the device and load model.so with a TVM runtime built for it "
                                "(README: Jetson Orin, Android)")
    if art.manifest["target"]["tvm"] != target.resolved_tvm():
        raise PackageError(f"targets/{target.name}.toml changed since {art.path} was built", hint=rebuild)
    built = art.manifest["toolchain"]
    for dist, key in (("apache-tvm", "tvm"), ("apache-tvm-ffi", "tvm_ffi")):
        if built.get(key) != importlib.metadata.version(dist):
            raise PackageError(f"{art.path} was built with {dist} {built.get(key)}, this edgecomp has "
                               f"{importlib.metadata.version(dist)} (whose runtime the bundle would ship)",
                               hint=rebuild)


def package(artifact, target: Target, out: str | Path, static: bool = False) -> Path:
    """Write the bundle of ``artifact`` (a path or an opened ``Artifact``) for ``target`` at ``out``;
    ``static`` adds static/ (the model and the C API to link into one program)."""
    from edgecomp.artifact import Artifact, atomic_dir

    art = artifact if isinstance(artifact, Artifact) else Artifact.open(artifact)
    check_target(art, target)
    cross = target.cross
    cross_tools.require_tool(cross.cc, cross.cc_package)  # the compiler first: its package brings the rest
    strip = tool(cross, "strip")
    sources = {"libedgecomp.so": capi_library(cross, target.arch), "model.so": art.path / "model.so"}
    runtime = cross_tools.runtime_dir(cross, target.arch)
    sources.update({name: runtime / name for name in ("libtvm_runtime.so", "libtvm_ffi.so")})
    text = signature(art)
    with atomic_dir(Path(out), marker="size.json", kind="bundle") as tmp:
        for sub in ("include", "lib", "example", "src"):
            (tmp / sub).mkdir()
        shutil.copyfile(CAPI_DIR / "edgecomp.h", tmp / "include" / "edgecomp.h")
        shutil.copyfile(CAPI_DIR / "edgecomp.cc", tmp / "src" / "edgecomp.cc")
        for name in ("main.c", "Makefile"):
            shutil.copyfile(CAPI_DIR / "example" / name, tmp / "example" / name)
        unstripped = {}
        for name in LIBS:
            dst = tmp / "lib" / name
            unstripped[f"lib/{name}"] = sources[name].stat().st_size
            _run([strip, "--strip-unneeded", "-o", str(dst), str(sources[name])], f"stripping {name}")
        if static:
            (tmp / "static").mkdir()
            objs = {"model.o": static_model(art, target, tmp / "model.o"),
                    "libedgecomp.a": capi_library(cross, target.arch, static=True)}
            for name in STATIC:
                unstripped[f"static/{name}"] = objs[name].stat().st_size
                _run([strip, "--strip-debug", "-o", str(tmp / "static" / name), str(objs[name])],
                     f"stripping {name}")
            (tmp / "model.o").unlink()
        shutil.copyfile(art.path / "params.bin", tmp / "params.bin")
        (tmp / "model.txt").write_text(text)
        (tmp / "size.json").write_text(json.dumps(sizes(tmp, unstripped, art, target, strip), indent=2) + "\n")
    return Path(out)


def sizes(root: Path, unstripped: dict[str, int], art, target: Target, strip: str) -> dict:
    """size.json: bytes of every file under ``root`` as shipped, and the runtime + model code total."""
    files = {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}
    code = sum(files[f"lib/{name}"] for name in LIBS)
    return {"model": art.name, "target": target.name, "arch": target.arch, "files": files,
            "unstripped": unstripped, "stripped_with": f"{Path(strip).name} --strip-unneeded (static/: --strip-debug)",
            "runtime_and_code_bytes": code, "params_bytes": files["params.bin"], "total_bytes": sum(files.values())}


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        first = (res.stderr.strip().splitlines() or ["no output"])[0]
        raise cross_tools.ToolchainError(f"{what} failed: {first}", hint=f"command: {' '.join(cmd)}")
