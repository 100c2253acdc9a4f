"""The error hierarchy every user-facing failure goes through.

Each error carries a one-line cause and a hint. The CLI prints ``error: <cause>`` and ``hint: <hint>``
and exits with code 2; the traceback is shown only with ``--debug``.
"""

from __future__ import annotations


class EdgecompError(Exception):
    """Base class: ``message`` is one line saying what is wrong, ``hint`` one line saying what to do."""

    exit_code = 2

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = " ".join(str(message).split())  # one line, whatever the cause text held
        self.hint = " ".join(str(hint).split())

    def __str__(self) -> str:
        return self.message


class ConfigError(EdgecompError):
    """A recipe, an override or an option value is invalid."""


class UnknownTargetError(EdgecompError):
    """The target name matches no file in targets/."""


class UnknownModelError(EdgecompError):
    """The model argument is no zoo name, ONNX file, Hugging Face directory or artifact."""


class MalformedModelError(EdgecompError):
    """A model file exists but cannot be parsed or checked."""


class UnsupportedOpError(EdgecompError):
    """An operator has no lowering on the chosen path; the message names the op and the node."""


class NumericsError(EdgecompError):
    """A stage's output differs from its reference by more than the stated tolerance."""


class MissingDataError(EdgecompError):
    """A data set or weight package the command needs is not installed."""


class ArtifactError(EdgecompError):
    """An artifact directory is incomplete, tampered with or from another version."""


class InputError(EdgecompError):
    """Inputs given to run/bench do not match the model's input names, shapes or dtypes."""


class DeviceError(EdgecompError):
    """A remote device, its RPC tracker or a local farm cannot be reached, leased or started."""
