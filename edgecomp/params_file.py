"""Check a params.bin (``tvm.runtime.save_param_dict_to_file``) before the TVM runtime reads it.

The runtime's reader trusts the counts and sizes in the file: fuzzing found it raising internal check
failures on a damaged header, and it allocates whatever shape a tensor header claims before reading the
data. ``check(path, count)`` walks the whole file with bounds checks and raises ``ArtifactError`` naming the
first inconsistency, so only a well-formed file with tensors p0..p{count-1} reaches the runtime.

Layout (little-endian; TVM 0.27 ``runtime.SaveParams``)::

    u64 0xF7E58D4F05049CB7 (list magic)   u64 reserved
    u64 n, then n x (u64 length, name bytes)             the names
    u64 n, then n tensors:
        u64 0xDD5E40F096B4A13F (tensor magic)   u64 reserved
        i32 device_type, i32 device_id, i32 ndim, u8 code, u8 bits, u16 lanes, i64 shape[ndim]
        i64 data bytes, then the data
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from edgecomp.errors import ArtifactError

LIST_MAGIC = 0xF7E58D4F05049CB7
TENSOR_MAGIC = 0xDD5E40F096B4A13F
MAX_NDIM = 16
DTYPE_CODES = {0: "int", 1: "uint", 2: "float", 4: "bfloat", 6: "bool"}


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            self.fail(f"ends inside {what} (offset {self.pos})")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def skip(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            self.fail(f"{what} claims {n:,d} bytes at offset {self.pos}, the file has {len(self.data) - self.pos:,d}")
        chunk = self.data[self.pos: self.pos + n]
        self.pos += n
        return chunk

    def fail(self, why: str):
        raise ArtifactError(f"{self.path} is not a valid params file: {why}",
                            hint="the file is damaged or truncated; rebuild the artifact")


def check(path: str | Path, count: int, specs: list[dict] | None = None) -> None:
    """Raise ArtifactError unless ``path`` holds exactly the tensors p0..p{count-1}, each well-formed and, given
    ``specs`` (manifest ``param_specs``: ``{"dtype", "shape"}`` per tensor), of that dtype and shape (the
    compiled main checks its arguments' dtypes only when called, with a TypeError)."""
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    if r.take("<Q", "the magic number") != LIST_MAGIC:
        r.fail("wrong magic number")
    r.take("<Q", "the header")
    n = r.take("<Q", "the name count")
    if n != count:
        r.fail(f"it names {n:,d} tensors, the model takes {count}")
    names = [r.skip(r.take("<Q", "a name length"), "a name") for _ in range(n)]
    if names != [f"p{i}".encode() for i in range(count)]:
        r.fail("its tensors are not named p0..pN in order")
    if r.take("<Q", "the tensor count") != n:
        r.fail("the tensor count differs from the name count")
    for i in range(n):
        if r.take("<Q", f"tensor p{i}") != TENSOR_MAGIC:
            r.fail(f"tensor p{i} has a wrong magic number")
        r.take("<Q", f"tensor p{i}")
        device, _dev_id, ndim, code, bits, lanes = r.take("<iiiBBH", f"tensor p{i}'s header")
        if device != 1 or not 0 <= ndim <= MAX_NDIM or code not in DTYPE_CODES or bits not in (1, 8, 16, 32, 64) \
                or lanes != 1:
            r.fail(f"tensor p{i} has device {device}, rank {ndim}, dtype code {code} bits {bits} lanes {lanes}")
        shape = r.take(f"<{ndim}q", f"tensor p{i}'s shape") if ndim else ()
        shape = (shape,) if isinstance(shape, int) else shape
        if any(d < 0 for d in shape):
            r.fail(f"tensor p{i} has shape {list(shape)}")
        size = r.take("<q", f"tensor p{i}'s byte count")
        dtype = "bool" if code == 6 else f"{DTYPE_CODES[code]}{bits}"
        if size != math.prod(shape) * ((bits + 7) // 8):
            r.fail(f"tensor p{i} has shape {list(shape)} of {dtype} but {size:,d} data bytes")
        if specs is not None and (dtype != specs[i]["dtype"] or list(shape) != list(specs[i]["shape"])):
            r.fail(f"tensor p{i} is {dtype}{list(shape)}, the model takes {specs[i]['dtype']}{list(specs[i]['shape'])}")
        r.skip(size, f"tensor p{i}'s data")
    if r.pos != len(r.data):
        r.fail(f"{len(r.data) - r.pos:,d} bytes follow the last tensor")
