"""pyproject.toml lists its packages explicitly (kernels/ is mapped to edgecomp._kernels), so a new
subpackage must be added there or a wheel silently ships without it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edgecomp").rglob("__init__.py")}
    found |= {".".join(("edgecomp._kernels", *p.parent.relative_to(ROOT / "kernels").parts)).rstrip(".")
              for p in (ROOT / "kernels").rglob("__init__.py")}
    assert found == listed
    assert cfg["package-dir"]["edgecomp._kernels"] == "kernels"


def test_runtime_sources_are_package_data():
    """The C++ host and the C API sources (compiled at run time for the target) ship in the wheel."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    runtime = ROOT / "edgecomp" / "runtime"
    sources = {p for p in runtime.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}
    covered = {p for pattern in data["edgecomp.runtime"] for p in runtime.glob(pattern) if p.is_file()}
    assert sources == covered
