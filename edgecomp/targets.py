"""Targets are data: one TOML file per device under ``targets/``; code branches on capabilities.

``load_target(name)`` finds ``targets/<name>.toml`` (or an alias) and returns a frozen ``Target``.
``Target.tvm_target()`` builds the TVM target, resolving ``mcpu = "host"`` to the build machine's CPU.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgecomp.errors import ConfigError, UnknownTargetError
from edgecomp.resources import data_dir


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    arch: str
    runner: str  # local | qemu | rpc | sim
    schedule: str  # schedule family for untuned PrimFuncs: cpu
    tvm: dict = field(default_factory=dict)  # TVM target JSON; mcpu "host" = this machine's CPU
    tuning_database: str = ""  # kernels/<path> holding MetaSchedule records, "" = none
    capabilities: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
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
        if threads:
            spec["num-cores"] = threads
        return tvm.target.Target(spec)

    def to_dict(self) -> dict:
        return {"name": self.name, "arch": self.arch, "tvm": self.resolved_tvm(),
                "capabilities": list(self.capabilities)}


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


def _parse(path: Path) -> Target:
    try:
        d = tomllib.loads(path.read_text())
        return Target(name=d["name"], description=d["description"], arch=d["arch"], runner=d["runner"],
                      schedule=d["schedule"], tvm=dict(d["tvm"]), tuning_database=d.get("tuning_database", ""),
                      capabilities=tuple(d.get("capabilities", ())), aliases=tuple(d.get("aliases", ())),
                      path=str(path))
    except (KeyError, TypeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"target file {path} is invalid: {e}", hint="see targets/README.md for the fields") from None
