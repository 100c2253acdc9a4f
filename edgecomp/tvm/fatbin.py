"""What GPU code a compiled library really holds: the CUDA fatbins inside it, and any raw CUDA source.

A TVM library for a CUDA target carries its kernels either as a fatbin that nvcc built (machine code the
driver loads as it is) or, when the build host could not load the CUDA runtime, as raw CUDA C++ that only a
Python process with nvcc or NVRTC can compile on the device (notes/tvm-0.27.md §3, trap 1). The two
builds succeed alike; ``check_library`` tells them apart from the bytes of the exported ``.so``.

Fatbin layout (NVIDIA does not document it): a 16-byte header ``<u32 magic 0xBA55ED50, u16 version, u16
header size, u64 payload size>``, then entries, each a header ``<u16 kind (1 PTX, 2 ELF cubin), u16, u32
header size, u32 padded payload size, 4 x u32 (sizes, version), u32 sm arch (87 for sm_87), u32 bit width,
u32, u64 flags (0x2000: compressed), ...>`` and its payload (an ELF with ``e_machine`` 190, EM_CUDA, when
uncompressed). The offsets follow the struct that open-source fatbin decompressors reconstruct; kind, sizes
and sm were checked here against ``nvcc --fatbin`` output (nvcc 13.0, sm_87 and sm_90). The compressed flag
was not exercised: nvcc did not compress these small fatbins.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from edgecomp.errors import EdgecompError

MAGIC = struct.pack("<I", 0xBA55ED50)
KINDS = {1: "ptx", 2: "elf"}
EM_CUDA = 190
# Markers of CUDA C++ source as TVM's codegen writes it: each kernel is `extern "C" __global__ ...`.
SOURCE_MARKERS = (b"__global__", b'extern "C" __device__')


class DeviceCodeError(EdgecompError):
    """A CUDA build would ship without device code that the device can load (no fatbin, or raw source)."""


@dataclass(frozen=True)
class Entry:
    """One fatbin entry: ``kind`` ptx | elf, the SM it is for (87 for sm_87), payload bytes, compressed."""

    kind: str
    sm: int
    bytes: int
    compressed: bool
    cuda_elf: bool  # an uncompressed payload that is an ELF for EM_CUDA


def entries(data: bytes) -> list[Entry]:
    """Every entry of every fatbin found in ``data`` (empty when there is none). Stops at a malformed one."""
    found: list[Entry] = []
    start = data.find(MAGIC)
    while start != -1:
        if start + 16 > len(data):
            break
        _, _, header, size = struct.unpack_from("<IHHQ", data, start)
        off, end = start + header, min(start + header + size, len(data))
        while off + 48 <= end:
            kind, _, ehead, padded = struct.unpack_from("<HHII", data, off)
            sm = struct.unpack_from("<I", data, off + 28)[0]
            compressed = struct.unpack_from("<Q", data, off + 40)[0] & 0x2000
            if ehead < 48 or off + ehead + padded > end:
                break
            payload = data[off + ehead: off + ehead + min(padded, 64)]
            machine = struct.unpack_from("<H", payload, 18)[0] if len(payload) >= 20 else None
            elf = payload[:4] == b"\x7fELF" and machine == EM_CUDA
            found.append(Entry(KINDS.get(kind, f"kind{kind}"), sm, padded, compressed != 0, elf))
            off += ehead + padded
        start = data.find(MAGIC, max(end, start + 4))
    return found


def check_library(path: str | Path, arch: str) -> dict:
    """Check that the library at ``path`` holds ``arch`` (``"sm_87"``) device code and no CUDA source.

    Returns ``{"fatbins", "entries": [...], "source_markers": 0, "bytes"}``. Raises ``DeviceCodeError``
    when no fatbin entry is compiled code (ELF) for ``arch`` or when CUDA source text is present: that
    library would need nvcc/NVRTC and Python on the device (module doc)."""
    data = Path(path).read_bytes()
    sm = int(arch.removeprefix("sm_"))
    found = entries(data)
    markers = sum(data.count(m) for m in SOURCE_MARKERS)
    report = {"bytes": len(data), "fatbins": data.count(MAGIC), "arch": arch,
              "entries": [asdict(e) for e in found], "source_markers": markers}
    if markers:
        raise DeviceCodeError(f"{Path(path).name} holds raw CUDA source ({markers} `__global__` markers), not "
                              f"{arch} machine code: TVM could not load its CUDA runtime at build time",
                              hint="edgecomp.tvm.cuda loads it through a libcuda stub; report this with "
                                   "`TVM_BACKTRACE=1` output")
    if not any(e.kind == "elf" and e.sm == sm for e in found):
        have = ", ".join(f"{e.kind} sm_{e.sm}" for e in found) or "no fatbin at all"
        raise DeviceCodeError(f"{Path(path).name} has no compiled {arch} kernels ({have})",
                              hint="check the target's [tvm] arch and the nvcc version (`nvcc --list-gpu-code`)")
    return report
