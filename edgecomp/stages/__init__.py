"""Compiler stages. Each module has ``NAME``, ``REQUIRES`` (the form it accepts) and
``run(model, cfg, target) -> Model``; nothing else in a stage module is public."""
