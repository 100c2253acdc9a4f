"""arm64 bundles (``edgecomp package``): the example cross-built with aarch64-linux-gnu-gcc and run under
qemu-aarch64 against x86 / onnxruntime, the size budget, and bad input through the C API.

Tolerance (conftest.REL_TOL, as in test_qemu.py): ``max |bundle - reference| <= 1e-4 * max(1, max |reference|)``.
The bundle
runs the arm64 artifact's code, which differs from the x86 build or onnxruntime only in the order of fp32
sums (measured: ~1e-6 on vit-fmnist logits, ~2e-7 on MiniLM embeddings); a real fault moves outputs by 1e-2
or more. Each model is built once per session; qemu timings are not measured.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecomp.config import BuildConfig
from edgecomp.runtime import bundle, cross

# Runtime + model code of a bundle, stripped, params excluded. Measured (bench/results/bundle/): vit-fmnist
# 5.45 MB, minilm-l6 5.52 MB (libtvm_runtime 2.95 + libtvm_ffi 2.23 + libedgecomp 0.13 + model.so 0.13 /
# 0.20); vit-fmnist's static program 0.27 MB + the runtime. The headroom is for model code, not the runtime.
SIZE_BUDGET = 6_000_000
CHECKS = Path(__file__).resolve().parent / "capi_checks.c"


@pytest.fixture(scope="session")
def vit_bundle(vit_fmnist_builds, arm64, tmp_path_factory):
    """The vit-fmnist arm64 bundle with static/, both examples built by aarch64-linux-gnu-gcc."""
    out = bundle.package(vit_fmnist_builds[1], arm64, tmp_path_factory.mktemp("bundle") / "vit-fmnist",
                         static=True)
    _make_example(out, arm64, "example", "example-static")
    return out


@pytest.fixture(scope="module")
def minilm(arm64, build_or_skip, tmp_path_factory):
    """(arm64 artifact, its bundle) of minilm-l6; one lowering check feed is enough here."""
    tmp = tmp_path_factory.mktemp("minilm")
    cfg = BuildConfig().with_overrides(["lower.check_samples=1"])
    art = build_or_skip("minilm-l6", arm64, tmp / "arm64", cfg=cfg)
    out = bundle.package(art, arm64, tmp / "bundle")
    _make_example(out, arm64)
    return art, out


def _make_example(path: Path, arm64, *goals: str) -> None:
    gcc = bundle.tool(arm64.cross, "gcc")
    res = subprocess.run(["make", "-C", str(path / "example"), f"CC={gcc}", *goals], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _qemu(arm64, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([arm64.cross.emulator, "-L", arm64.cross.sysroot, *args], capture_output=True, text=True)


def _run_example(path: Path, arm64, feeds: list[np.ndarray], tmp: Path, exe: str = "example") -> list[np.ndarray]:
    """The bundle's example under qemu on ``feeds`` (in input order); outputs shaped by model.txt."""
    files = []
    for k, a in enumerate(feeds):
        files.append(tmp / f"in-{k}.bin")
        np.ascontiguousarray(a).tofile(files[-1])
    res = _qemu(arm64, str(path / "example" / exe), str(path), str(tmp), *map(str, files))
    assert res.returncode == 0, res.stderr
    outs = []
    for line in res.stdout.splitlines():
        _, j, _name, dtype, *_ = line.split()
        sig = _signature(path)["outputs"][int(j)]
        outs.append(np.fromfile(tmp / f"output-{j}.bin", dtype=dtype).reshape(sig[2]))
    return outs


def _signature(path: Path) -> dict:
    words = (path / "model.txt").read_text().split()
    pos, sig = 4, {}
    for section in ("inputs", "outputs"):
        assert words[pos] == section
        count, pos, sig[section] = int(words[pos + 1]), pos + 2, []
        for _ in range(count):
            name, dtype, ndim = words[pos], words[pos + 1], int(words[pos + 2])
            sig[section].append((name, dtype, tuple(int(d) for d in words[pos + 3: pos + 3 + ndim])))
            pos += 3 + ndim + (3 if pos + 3 + ndim < len(words) and words[pos + 3 + ndim] == "range" else 0)
    return sig


def test_layout_and_signature(vit_bundle, vit_fmnist_builds):
    arm = vit_fmnist_builds[1]
    for rel in ("include/edgecomp.h", "params.bin", "model.txt", "example/main.c", "example/Makefile",
                "src/edgecomp.cc", *(f"lib/{n}" for n in bundle.LIBS), *(f"static/{n}" for n in bundle.STATIC)):
        assert (vit_bundle / rel).is_file(), rel
    assert (vit_bundle / "params.bin").read_bytes() == (arm.path / "params.bin").read_bytes()
    sig = _signature(vit_bundle)
    assert sig == {"inputs": [("pixels", "float32", (1, 1, 28, 28))], "outputs": [("logits", "float32", (1, 10))]}
    size = json.loads((vit_bundle / "size.json").read_text())
    shipped = {p.relative_to(vit_bundle).as_posix(): p.stat().st_size for p in vit_bundle.rglob("*")
               if p.is_file() and p.parent.name != "example" and p.name != "size.json"}
    assert {k: v for k, v in size["files"].items() if not k.startswith("example/")} == shipped
    assert all(size["files"][k] <= size["unstripped"][k] for k in size["unstripped"])
    # the runtime libraries are the wheels' of the installed compiler's versions, for aarch64
    for lib in ("libtvm_runtime.so", "libtvm_ffi.so", "libedgecomp.so", "model.so"):
        head = (vit_bundle / "lib" / lib).read_bytes()[:20]
        assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183, lib  # EM_AARCH64


def test_vit_fmnist_example_matches_x86(vit_bundle, vit_fmnist_builds, arm64, tmp_path, assert_outputs_close):
    x86, arm = vit_fmnist_builds
    rng = np.random.default_rng(5)
    for i, feeds in enumerate([arm.example_inputs(), {"pixels": rng.standard_normal((1, 1, 28, 28), np.float32)}]):
        (tmp_path / str(i)).mkdir()
        got = _run_example(vit_bundle, arm64, [feeds[s.name] for s in arm.inputs], tmp_path / str(i))
        assert_outputs_close(got, x86.load_runner()(feeds), arm.outputs, "bundle - reference")
        # the static program runs the same model lowered again as a system lib: the same code, the same bits
        static = _run_example(vit_bundle, arm64, [feeds[s.name] for s in arm.inputs], tmp_path / str(i),
                              "example-static")
        assert all(np.array_equal(a, b) for a, b in zip(static, got, strict=True))


def test_minilm_example_matches_onnxruntime(minilm, arm64, tmp_path, assert_outputs_close):
    """Two int64 inputs; the reference is onnxruntime on the artifact's own model.onnx (the graph it compiled)."""
    from edgecomp import onnx_tools

    art, path = minilm
    feeds = art.example_inputs()
    got = _run_example(path, arm64, [feeds[s.name] for s in art.inputs], tmp_path)
    ref = onnx_tools.run(onnx_tools.session(str(art.path / "model.onnx")), feeds)
    assert_outputs_close(got, ref, art.outputs, "bundle - reference")


def test_token_ids_outside_the_vocabulary_are_refused(minilm, arm64, tmp_path):
    """The compiled embedding lookup does not check bounds (an id of 1e9 segfaults it): the C API does."""
    path = minilm[1]
    assert _signature_lines(path)["input_ids"].endswith(" range 0 30522")
    assert "range" not in _signature_lines(path)["attention_mask"]
    res = _qemu(arm64, str(_build_checks(path, arm64, tmp_path)), str(path), "ids")
    assert res.returncode == 0 and res.stdout.endswith("done\n"), res.stdout + res.stderr
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines()[:-1])
    assert [lines[c].split(" ", 1)[0] for c in ("ids_zero", "ids_too_large", "ids_negative")] == ["0", "8", "8"]
    assert "element 1 is 1000000000, outside [0, 30522)" in lines["ids_too_large"]


def _signature_lines(path: Path) -> dict[str, str]:
    return {line.split()[0]: line for line in (path / "model.txt").read_text().splitlines()[3:]}


def test_size_budget(vit_bundle, minilm, arm64, tmp_path):
    for path in (vit_bundle, minilm[1]):
        size = json.loads((path / "size.json").read_text())
        code = size["runtime_and_code_bytes"]
        assert code == sum(size["files"][f"lib/{n}"] for n in bundle.LIBS)
        assert code <= SIZE_BUDGET, f"{size['model']}: runtime + model code {code:,d} bytes > {SIZE_BUDGET:,d}"
    # the static variant: the example program with the model and the API linked in (stripped) + the runtime
    program = tmp_path / "example-static"
    res = subprocess.run([bundle.tool(arm64.cross, "strip"), "--strip-unneeded", "-o", str(program),
                          str(vit_bundle / "example" / "example-static")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    static = program.stat().st_size + sum((vit_bundle / "lib" / n).stat().st_size
                                          for n in ("libtvm_runtime.so", "libtvm_ffi.so"))
    assert static <= SIZE_BUDGET, f"static program + runtime {static:,d} bytes > {SIZE_BUDGET:,d}"


def _build_checks(path: Path, arm64, tmp: Path) -> Path:
    exe, lib = tmp / "capi_checks", path / "lib"
    res = subprocess.run([bundle.tool(arm64.cross, "gcc"), "-O1", "-std=c99", "-Wall", "-Werror",
                          f"-I{path / 'include'}", str(CHECKS), "-o", str(exe), f"-L{lib}", "-ledgecomp",
                          f"-Wl,-rpath-link,{lib}", f"-Wl,-rpath,{lib}"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return exe


def test_bad_input_through_the_c_api(vit_bundle, arm64, tmp_path):
    """Wrong shapes, dtypes, byte counts, indices, null pointers and files: a status and a message each."""
    exe = _build_checks(vit_bundle, arm64, tmp_path)
    res = _qemu(arm64, str(exe), str(vit_bundle))
    assert res.returncode == 0 and res.stdout.endswith("done\n"), res.stdout + res.stderr
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines()[:-1])
    status = {case: int(rest.split(" ", 1)[0]) for case, rest in lines.items()}
    expected = {"open_missing_dir": 5, "open_null_dir": 1, "open_null_out": 1, "open_params_as_signature": 5,
                "open_signature_as_params": 5, "open_params_as_library": 6, "open_static_without_model": 6,
                "input_info_out_of_range": 1,
                "output_info_negative": 1, "input_info_null_info": 1, "input_index_unknown": 1,
                "set_input_wrong_shape": 2, "set_input_wrong_rank": 2, "set_input_wrong_dtype": 3,
                "set_input_unknown_dtype": 3, "set_input_wrong_nbytes": 4, "set_input_null_data": 1,
                "set_input_null_shape": 1, "set_input_bad_index": 1, "get_output_before_run": 7, "run_null": 1,
                "set_input_ok": 0, "run_ok": 0, "get_output_wrong_nbytes": 4, "get_output_ok": 0}
    assert {k: status.get(k) for k in expected} == expected
    assert lines["handle_after_failure"] == "1" and lines["num_inputs_null"] == "-1"
    assert "has shape [1, 1, 28, 28], got [1, 1, 28, 27]" in lines["set_input_wrong_shape"]
    assert "no model is linked into this program" in lines["open_static_without_model"]
    assert all(lines[case].split(" ", 1)[1].startswith("edgecomp_") for case, s in expected.items() if s != 0)


def test_example_rejects_a_short_input_file(vit_bundle, arm64, tmp_path):
    (tmp_path / "short.bin").write_bytes(b"\0" * 100)
    res = _qemu(arm64, str(vit_bundle / "example" / "example"), str(vit_bundle), str(tmp_path),
                str(tmp_path / "short.bin"))
    assert res.returncode == 2 and "is not 3136 bytes" in res.stderr


def test_artifact_for_another_target_is_refused(tiny_artifact, tmp_path):
    out = tmp_path / "bundle"
    res = subprocess.run([sys.executable, "-m", "edgecomp", "package", str(tiny_artifact), "--target", "arm64",
                          "-o", str(out)], capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert "was built for target 'x86', not 'arm64'" in res.stderr and "--target arm64" in res.stderr
    assert not out.exists() and "Traceback" not in res.stderr
    with pytest.raises(bundle.PackageError, match="no \\[cross\\] table"):
        from edgecomp.targets import load_target

        bundle.package(tiny_artifact, load_target("x86"), out)


def test_missing_toolchain_names_the_package(vit_fmnist_builds, arm64, tmp_path):
    broken = dataclasses.replace(arm64, cross=dataclasses.replace(arm64.cross, cc="edgecomp-no-such-g++"))
    with pytest.raises(cross.ToolchainError, match="edgecomp-no-such-g\\+\\+ is not installed") as e:
        bundle.package(vit_fmnist_builds[1], broken, tmp_path / "bundle")
    assert "apt-get install g++-aarch64-linux-gnu" in e.value.hint
    assert not (tmp_path / "bundle").exists()


def test_cli_package_replaces_only_bundles(vit_fmnist_builds, tmp_path):
    arm = vit_fmnist_builds[1]
    (tmp_path / "taken").mkdir()
    cmd = [sys.executable, "-m", "edgecomp", "package", str(arm.path), "-t", "arm64", "-o"]
    res = subprocess.run([*cmd, str(tmp_path / "taken")], capture_output=True, text=True)
    assert res.returncode == 2 and "is not an edgecomp bundle" in res.stderr
    for _ in range(2):  # the second run replaces the first bundle whole
        res = subprocess.run([*cmd, str(tmp_path / "b")], capture_output=True, text=True)
        assert res.returncode == 0 and "runtime + model code" in res.stdout, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "taken"]


def test_artifact_from_another_tvm_or_target_file_is_refused(vit_fmnist_builds, arm64, tmp_path):
    """The bundle ships the installed TVM's runtime: an artifact compiled by another release would not load."""
    from edgecomp.artifact import Artifact

    arm = vit_fmnist_builds[1]
    old_tvm = Artifact(arm.path, {**arm.manifest, "toolchain": {**arm.manifest["toolchain"], "tvm": "0.26.0"}})
    with pytest.raises(bundle.PackageError, match="built with apache-tvm 0.26.0"):
        bundle.package(old_tvm, arm64, tmp_path / "b")
    other = {**arm.manifest["target"], "tvm": {**arm.manifest["target"]["tvm"], "mattr": ["+neon"]}}
    with pytest.raises(bundle.PackageError, match="arm64.toml changed since"):
        bundle.package(Artifact(arm.path, {**arm.manifest, "target": other}), arm64, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_readme_program_classifies_like_x86(vit_bundle, vit_fmnist_builds, arm64, tmp_path):
    """The complete C program in the README compiles against the bundle and gives x86's class."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### A complete program"):]
    source = section[section.index("```c\n") + 5: section.index("```\n", section.index("```c\n") + 5)]
    (tmp_path / "classify.c").write_text(source)
    lib = vit_bundle / "lib"
    res = subprocess.run([bundle.tool(arm64.cross, "gcc"), "-std=c99", "-Wall", "-Werror",
                          f"-I{vit_bundle / 'include'}", str(tmp_path / "classify.c"), "-o", str(tmp_path / "classify"),
                          f"-L{lib}", "-ledgecomp", f"-Wl,-rpath-link,{lib}", f"-Wl,-rpath,{lib}"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    x86, arm = vit_fmnist_builds
    feeds = arm.example_inputs()
    feeds["pixels"].astype(np.float32).tofile(tmp_path / "image.bin")
    res = _qemu(arm64, str(tmp_path / "classify"), str(vit_bundle), str(tmp_path / "image.bin"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"class {int(np.argmax(x86.load_runner()(feeds)[0]))} ")


@pytest.mark.parametrize("name, why", [("jetson-orin", "has CUDA kernels"),
                                       ("android-arm64", "no TVM runtime on PyPI")])
def test_device_only_targets_get_no_bundle(name, why):
    from types import SimpleNamespace

    from edgecomp.targets import load_target

    target = load_target(name)
    art = SimpleNamespace(name="m", path=Path("A"), manifest={"target": {"name": name}})
    with pytest.raises(bundle.PackageError, match=why) as e:
        bundle.check_target(art, target)
    assert "README" in e.value.hint and e.value.exit_code == 2
