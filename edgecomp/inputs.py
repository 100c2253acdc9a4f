"""Arrays users hand to ``edgecomp run``: ``NAME=FILE.npy`` items read without trusting the file.

``load_npy(path) -> np.ndarray`` reads the header first and refuses, with ``InputError``, what ``np.load``
would turn into a traceback, a pickle or a huge allocation: object (pickled) and structured dtypes, more
than ``MAX_ELEMENTS`` elements, a shape the file has too few bytes for, headers numpy cannot parse (its
parser raises ValueError, SyntaxError or tokenize.TokenError on garbage), and an empty file (numpy's
EOFError, which click would report as "interrupted"). Never ``allow_pickle``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgecomp.errors import InputError

MAX_ELEMENTS = 1 << 28  # as onnx_tools.MAX_INPUT_ELEMENTS: no model input is larger
_KINDS = "biuf"  # bool, signed, unsigned, float (complex, strings, objects, records: no model takes them)


def load_npy(path: str | Path) -> np.ndarray:
    """The array in ``path`` (a .npy file), or InputError saying why it is refused."""
    path = Path(path)
    hint = "save arrays with numpy.save (numeric dtype, no pickles)"
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _fortran, dtype = read[version](f, max_header_size=10_000)
            offset = f.tell()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}", hint="check the path") from None
    except Exception as e:  # ValueError, EOFError, SyntaxError, tokenize.TokenError from numpy's header parser
        raise InputError(f"{path} is not a .npy file: {type(e).__name__}: {' '.join(str(e).split())[:200]}",
                         hint=hint) from None
    if dtype.hasobject or dtype.kind not in _KINDS or dtype.fields is not None:
        raise InputError(f"{path} holds dtype {dtype}, not a numeric array", hint=hint)
    if any(d < 0 for d in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise InputError(f"{path} declares shape {list(shape)}", hint=f"at most {MAX_ELEMENTS:,d} elements")
    need = math.prod(shape) * dtype.itemsize
    if path.stat().st_size - offset < need:
        raise InputError(f"{path} is truncated: shape {list(shape)} {dtype} needs {need:,d} bytes of data, "
                         f"the file has {path.stat().st_size - offset:,d}", hint=hint)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # the header was checked; this is a last line of defence, not an expected path
        raise InputError(f"cannot read {path} as .npy: {type(e).__name__}: {' '.join(str(e).split())[:200]}",
                         hint=hint) from None


def parse_items(items) -> dict[str, np.ndarray]:
    """``["NAME=FILE.npy", ...]`` -> {NAME: array}; InputError for an item without ``=`` or a bad file."""
    feeds = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep:
            raise InputError(f"--input {item!r} is not NAME=FILE.npy", hint="e.g. -i pixels=x.npy")
        feeds[name] = load_npy(file)
    return feeds
