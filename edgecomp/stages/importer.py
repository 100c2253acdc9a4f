"""Turn what the user named into a ``Model``: a zoo name, an ONNX file, a Hugging Face model
directory, or (Python API) a torch module with its input specs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecomp import onnx_tools
from edgecomp.artifact import file_sha256
from edgecomp.errors import ConfigError, MalformedModelError, UnknownModelError
from edgecomp.model import Model
from edgecomp.specs import Feeds, TensorSpec

HF_SEQ_LEN = 128  # static sequence length for Hugging Face directories


def load(source, calib_samples: int, seed: int, inputs: tuple[TensorSpec, ...] | None = None,
         calibration: list[Feeds] | None = None, trust_remote_code: bool = False) -> Model:
    """The ``Model`` for ``source``. A Hugging Face directory whose config.json needs code of its own
    (``auto_map``) is refused unless ``trust_remote_code``; weights load through transformers with
    safetensors first and ``torch.load(weights_only=True)`` for .bin files (no pickled objects)."""
    if hasattr(source, "forward") and hasattr(source, "parameters"):
        return _from_module(source, inputs, calibration, calib_samples, seed)
    text = str(source)
    path = Path(text)
    if path.is_file() and path.suffix == ".onnx":
        return _from_onnx(path, calib_samples, seed)
    if path.is_dir() and (path / "config.json").exists():
        return _from_hf_dir(path, calib_samples, seed, trust_remote_code)
    if path.is_dir() and (path / "manifest.json").exists():
        raise UnknownModelError(f"{path} is an edgecomp artifact, not a model source",
                                hint="build from the zoo name, ONNX file or model directory it came from")
    from edgecomp import zoo

    if text in zoo.names():
        return _from_zoo(zoo.get(text), calib_samples, seed)
    if path.exists():
        raise UnknownModelError(f"{path} is neither an .onnx file nor a Hugging Face model directory",
                                hint="pass a .onnx file, a directory with config.json, or a zoo name")
    zoo.get(text)  # raises UnknownModelError with "did you mean"
    raise AssertionError("unreachable")


def _from_zoo(entry, calib_samples: int, seed: int) -> Model:
    module = entry.load()
    feeds = tuple(entry.calibration(calib_samples, seed))
    calib_doc = " ".join((entry.calibration.__doc__ or "zoo calibration feeds").split())
    source = {"kind": "zoo", "ref": entry.name, "weights": entry.weights, "calibration": calib_doc,
              "calibration_samples": calib_samples}
    return Model(name=entry.name, source=source,
                 form="torch", payload=module, inputs=entry.inputs, outputs=entry.outputs, calibration=feeds,
                 task=entry.task, export_tolerance=entry.export_tolerance,
                 held_out=_held_out(lambda n: entry.calibration(n, seed + 1), feeds))


def _from_module(module, inputs, calibration, calib_samples: int, seed: int) -> Model:
    if not inputs:
        raise ConfigError("a torch module needs its input specs", hint="pass inputs=[TensorSpec(name, shape, dtype)]")
    notes, held_out = (), None  # feeds the caller gave: there are no others to hold out
    if calibration is None:
        calibration = _synthetic(tuple(inputs), calib_samples, seed)
        held_out = _held_out(lambda n: _synthetic(tuple(inputs), n, seed + 1), calibration)
        notes = ("calibration: synthetic N(0,1) / ones inputs (no data was given with the module)",)
    module.eval()
    return Model(name=type(module).__name__, source={"kind": "torch", "ref": type(module).__qualname__,
                                                     "sha256": _state_sha(module)},
                 form="torch", payload=module, inputs=tuple(inputs), outputs=("output",),
                 calibration=tuple(calibration), notes=notes, held_out=held_out)


def _from_onnx(path: Path, calib_samples: int, seed: int) -> Model:
    model = onnx_tools.load(path)
    inputs = onnx_tools.input_specs(model)
    outputs = tuple(o.name for o in model.graph.output)
    calibration = _synthetic(inputs, calib_samples, seed)
    return Model(name=path.stem, source={"kind": "onnx", "ref": str(path), "sha256": file_sha256(path)},
                 form="onnx", payload=model, inputs=inputs, outputs=outputs, calibration=calibration,
                 held_out=_held_out(lambda n: _synthetic(inputs, n, seed + 1), calibration),
                 notes=("calibration: synthetic N(0,1) / ones inputs (an ONNX file carries no data)",))


def _from_hf_dir(path: Path, calib_samples: int, seed: int, trust_remote_code: bool = False) -> Model:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        config = json.loads((path / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MalformedModelError(f"{path}/config.json is not valid JSON: {e}", hint="check the model directory") \
            from None
    if not isinstance(config, dict):
        raise MalformedModelError(f"{path}/config.json is not a JSON object", hint="check the model directory")
    if "auto_map" in config and not trust_remote_code:
        raise UnknownModelError(f"{path} needs trust_remote_code (its config.json has auto_map: the model ships "
                                f"Python code that loading it would run)",
                                hint="read that code first; then pass --trust-remote-code, or export it to ONNX")
    import torch
    import transformers

    from edgecomp.adapters.hf import CausalLMLogits, EncoderHidden

    causal = any(a.endswith("ForCausalLM") for a in config.get("architectures", []))
    try:
        cls = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
        hf = cls.from_pretrained(str(path), attn_implementation="eager", dtype=torch.float32,
                                 trust_remote_code=trust_remote_code).eval()
    except (OSError, ValueError, KeyError) as e:
        raise MalformedModelError(f"cannot load Hugging Face model from {path}: {str(e).splitlines()[0]}",
                                  hint="the directory needs config.json and weights (safetensors preferred)") from None
    vocab = int(config.get("vocab_size", 2))
    ids = TensorSpec("input_ids", (1, HF_SEQ_LEN), "int64")
    rng = np.random.default_rng(seed)
    if causal:
        module, inputs, outputs = CausalLMLogits(hf), (ids,), ("logits",)
    else:
        module, inputs, outputs = EncoderHidden(hf), (ids, TensorSpec("attention_mask", (1, HF_SEQ_LEN), "int64")), (
            "last_hidden_state",)

    def random_ids(n: int, rng) -> tuple:
        return tuple({"input_ids": rng.integers(0, vocab, (1, HF_SEQ_LEN), dtype=np.int64),
                      **({} if causal else {"attention_mask": np.ones((1, HF_SEQ_LEN), np.int64)})}
                     for _ in range(n))

    feeds = random_ids(calib_samples, rng)
    return Model(name=path.name, source={"kind": "hf", "ref": str(path), "sha256": _dir_sha(path)}, form="torch",
                 payload=module, inputs=inputs, outputs=outputs, calibration=feeds, export_tolerance=5e-4,
                 held_out=_held_out(lambda n: random_ids(n, np.random.default_rng(seed + 1)), feeds),
                 notes=("calibration: random token ids (a model directory carries no data)",))


def _held_out(draw, calibration) -> Callable[[int], tuple[Feeds, ...]]:
    """n -> up to n feeds from ``draw(n + 8)`` (the calibration source under another seed) that equal no
    calibration feed: a sample pool may give the same sentence or image to both draws. Nothing is drawn or
    compared until a stage asks (only quantization does)."""

    def key(feed: Feeds) -> tuple:
        return tuple((name, np.asarray(a).tobytes()) for name, a in sorted(feed.items()))

    def held_out(n: int) -> tuple[Feeds, ...]:
        taken = {key(f) for f in calibration}
        fresh = [f for f in draw(n + 8) if key(f) not in taken]
        return tuple(fresh[:n])

    return held_out


def _synthetic(inputs: tuple[TensorSpec, ...], n: int, seed: int) -> tuple[Feeds, ...]:
    rng = np.random.default_rng(seed)
    return tuple({s.name: (rng.standard_normal(s.shape).astype(s.dtype) if s.dtype.startswith("float")
                           else np.ones(s.shape, s.dtype)) for s in inputs} for _ in range(n))


def _state_sha(module) -> str:
    """sha256 over the module's state dict (names, dtypes, shapes, bytes) in name order: its weights' identity."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        arr = t.detach().cpu().contiguous()
        h.update(f"{name}:{arr.dtype}:{list(arr.shape)}".encode())
        h.update(arr.reshape(-1).view(torch.uint8).numpy().tobytes() if arr.numel() else b"")
    return h.hexdigest()


def _dir_sha(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(p.relative_to(path).as_posix().encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()
