"""Targets are data: one TOML file per device under ``targets/``; code branches on capabilities.

``load_target(name)`` finds ``targets/<name>.toml`` (or an alias) and returns a frozen ``Target``.
``Target.tvm_target()`` builds the TVM target, resolving ``mcpu = "host"`` to the build machine's CPU.
A target whose code does not run on the build machine has a ``[cross]`` table (``Cross``): the cross
compiler, the emulator and where the target's TVM runtime comes from; ``runner = "qemu"`` requires it.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecomp.errors import ConfigError, UnknownTargetError
from edgecomp.resources import data_dir


@dataclass(frozen=True)
class Cross:
    """How the build machine builds and runs code for another architecture (a target's ``[cross]`` table)."""

    cc: str  # C++ cross compiler: links model.so and the C++ host program; $VARS are expanded when used
    cc_package: str  # what provides cc (a Debian package, or e.g. the Android NDK), named in the error
    emulator: str = ""  # user-mode emulator the qemu runner executes the host program with ("" = none)
    emulator_package: str = ""  # Debian package providing it
    sysroot: str = ""  # the target's libc/libstdc++ root, passed to the emulator as -L
    wheel_platform: str = ""  # pip --platform tag of the target's apache-tvm / apache-tvm-ffi wheels (runtime .so)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    arch: str
    runner: str  # local | qemu | sim | device (built here, runs only on the device itself)
    schedule: str  # schedule family for untuned PrimFuncs: cpu | gpu | asic
    tvm: dict = field(default_factory=dict)  # TVM target JSON; mcpu "host" = this machine's CPU
    tuning_database: str = ""  # kernels/<path> holding MetaSchedule records, "" = none
    capabilities: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    cross: Cross | None = None  # set when the build machine cannot run the code natively
    asic: dict = field(default_factory=dict)  # the simulated accelerator's [asic] table (runner "sim")
    path: str = ""

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def resolved_tvm(self) -> dict:
        """The TVM target JSON with ``mcpu = "host"`` replaced by the real CPU name."""
        spec = dict(self.tvm)
        if spec.get("mcpu") == "host":
            spec["mcpu"] = host_cpu()
        return spec

    def tvm_target(self, threads: int | None = None):
        import tvm

        spec = self.resolved_tvm()
        if threads and spec.get("kind") == "llvm":  # a CPU attribute: a GPU target has no num-cores
            spec["num-cores"] = threads
        return tvm.target.Target(spec)

    def to_dict(self) -> dict:
        d = {"name": self.name, "arch": self.arch, "runner": self.runner, "tvm": self.resolved_tvm(),
             "capabilities": list(self.capabilities)}
        if self.cross is not None:
            d["cross"] = self.cross.to_dict()
        if self.asic:
            d["asic"] = self.asic
        return d


@functools.cache
def host_cpu() -> str:
    """LLVM's name for this machine's CPU (e.g. 'sapphirerapids', 'znver5')."""
    import tvm

    return str(tvm.get_global_func("target.llvm_get_system_cpu")())


def _targets_dir() -> Path:
    return data_dir("targets")


def available() -> list[Target]:
    return [_parse(p) for p in sorted(_targets_dir().glob("*.toml"))]


def load_target(name: str) -> Target:
    for t in available():
        if name == t.name or name in t.aliases:
            return t
    names = ", ".join(t.name for t in available())
    raise UnknownTargetError(f"unknown target {name!r}", hint=f"known targets: {names} (see `edgecomp targets`)")


# runners this version implements (rpc: not yet); sim: edgecomp.asic; device: `edgecomp run` refuses the artifact
RUNNERS = ("local", "qemu", "sim", "device")


def _parse(path: Path) -> Target:
    try:
        d = tomllib.loads(path.read_text())
        cross = Cross(**d["cross"]) if "cross" in d else None
        t = Target(name=d["name"], description=d["description"], arch=d["arch"], runner=d["runner"],
                   schedule=d["schedule"], tvm=dict(d["tvm"]), tuning_database=d.get("tuning_database", ""),
                   capabilities=tuple(d.get("capabilities", ())), aliases=tuple(d.get("aliases", ())),
                   cross=cross, asic=dict(d.get("asic", {})), path=str(path))
    except (KeyError, TypeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"target file {path} is invalid: {e}", hint="see targets/README.md for the fields") from None
    if t.runner not in RUNNERS:
        raise ConfigError(f"target file {path}: runner {t.runner!r} is not one of {', '.join(RUNNERS)}",
                          hint="local runs in-process; qemu needs a [cross] table")
    if t.runner == "qemu" and (t.cross is None or not t.cross.emulator):
        raise ConfigError(f"target file {path}: runner 'qemu' needs a [cross] table with an emulator",
                          hint="give cc, cc_package, emulator, emulator_package, sysroot and wheel_platform")
    if t.runner == "sim" and not t.asic:
        raise ConfigError(f"target file {path}: runner 'sim' needs an [asic] table", hint="see targets/asic-sim.toml")
    return t
