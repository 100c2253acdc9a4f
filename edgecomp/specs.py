"""Tensor signatures shared by the zoo, the stages, the artifact and the runtime."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor with a static shape and a numpy dtype name ('float32', 'int64', ...)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], tuple(int(x) for x in d["shape"]), d["dtype"])

    def check(self, value: np.ndarray) -> np.ndarray:
        """Return ``value`` as this spec's dtype, or raise InputError naming the mismatch."""
        from edgecomp.errors import InputError

        arr = np.asarray(value)
        if tuple(arr.shape) != self.shape:
            raise InputError(f"input {self.name!r} has shape {list(arr.shape)}, the model expects {list(self.shape)}",
                             hint="shapes are static: pad or crop to the compiled shape")
        if arr.dtype != np.dtype(self.dtype):
            kind_ok = np.can_cast(arr.dtype, self.dtype, casting="same_kind")
            if not kind_ok:
                raise InputError(f"input {self.name!r} has dtype {arr.dtype}, the model expects {self.dtype}",
                                 hint=f"save the .npy as {self.dtype}")
            arr = arr.astype(self.dtype)
        return np.require(arr, requirements="C")


Feeds = dict[str, np.ndarray]  # one batch of named inputs
