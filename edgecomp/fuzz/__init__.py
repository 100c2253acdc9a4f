"""Adversarial inputs for edgecomp's front doors, run in a worker process that may crash or hang.

Targets (``targets.TARGETS``): ``onnx`` (ONNX files built to x86 end to end: checker, onnxruntime fold,
TVM import and compile), ``recipe`` (TOML recipes and ``--set`` overrides, then a build), ``cli`` (random
argv through ``edgecomp.cli.main``), ``npy`` (input files for ``edgecomp run``) and ``params`` (a corrupt
params.bin reaching the TVM runtime's loader). ``strategies`` generates the cases with hypothesis,
``sandbox`` runs each in a worker process and classifies it, ``campaign`` counts outcomes.

The contract under test: every case ends ``ok`` or ``error`` (an ``EdgecompError`` with a one-line message;
exit 2 on the CLI), never ``traceback`` (any other exception), ``crash`` (the worker died: a segfault or an
abort in native code) or ``hang`` (no answer within the time bound).
"""
