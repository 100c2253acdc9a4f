"""Where the data directories shipped beside the package live (``kernels/``, ``targets/``).

In a source checkout (editable install) they sit at the repository root; in a wheel they are
installed as ``edgecomp/_kernels`` and ``edgecomp/_targets``.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """``data_dir("targets")`` -> the directory holding the target TOML files."""
    installed = _PKG / f"_{name}"
    return installed if installed.is_dir() else _PKG.parent / name
