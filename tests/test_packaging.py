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
