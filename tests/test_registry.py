from __future__ import annotations

import pytest

from edgecomp.errors import ConfigError, UnknownModelError
from edgecomp.registry import Registry


def test_lookup_and_did_you_mean():
    reg: Registry[int] = Registry("widget")
    reg.add("alpha", 1)
    reg.register("beta")(2)
    assert reg.get("beta") == 2 and list(reg) == ["alpha", "beta"]
    with pytest.raises(ConfigError, match="unknown widget 'alpah'") as e:
        reg.get("alpah")
    assert "did you mean 'alpha'" in e.value.hint
    with pytest.raises(ValueError):
        reg.add("alpha", 3)


def test_zoo_and_tasks_register_consistently():
    from edgecomp import zoo
    from edgecomp.eval import get_task

    assert {"vit-fmnist", "vit-s16", "minilm-l6", "efficientnet-lite0", "smollm2-135m"} <= set(zoo.names())
    for name in zoo.names():
        entry = zoo.get(name)
        assert entry.name == name and entry.inputs and entry.outputs
        get_task(entry.task)  # every model's task exists
    with pytest.raises(UnknownModelError):
        zoo.get("vit-fminst")
