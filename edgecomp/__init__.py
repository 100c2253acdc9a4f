"""edgecomp: compile compressed, quantized neural networks for edge devices.

Importing ``edgecomp`` is cheap (no torch, onnx or tvm); the public API is loaded on first use:
``edgecomp.build``, ``edgecomp.BuildConfig``, ``edgecomp.load_target``, ``edgecomp.Artifact``.
"""

__version__ = "0.1.0"

_LAZY = {"build": ("edgecomp.api", "build"), "run": ("edgecomp.api", "run"),
         "BuildConfig": ("edgecomp.config", "BuildConfig"), "load_target": ("edgecomp.targets", "load_target"),
         "Artifact": ("edgecomp.artifact", "Artifact"), "TensorSpec": ("edgecomp.specs", "TensorSpec"),
         "EdgecompError": ("edgecomp.errors", "EdgecompError")}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'edgecomp' has no attribute {name!r}")
