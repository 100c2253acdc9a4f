"""Build files: the DRAM image is written byte-identically on every build (no zip timestamps)."""

from __future__ import annotations

import time

import numpy as np


def test_dram_image_bytes_are_reproducible(tmp_path):
    from edgecomp.asic.build import _write_npz

    arrays = {"L0_1": np.arange(6, dtype=np.uint8).reshape(2, 3), "L3_2": np.ones(3, np.float32)}
    _write_npz(tmp_path / "a.npz", arrays)
    time.sleep(2.1)  # zip timestamps have 2 s resolution
    _write_npz(tmp_path / "b.npz", arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as z:
        assert sorted(z.files) == ["L0_1", "L3_2"] and np.array_equal(z["L0_1"], arrays["L0_1"])
