from __future__ import annotations

import pytest

from core.errors import CpcbenchError
from core.registry import Registry, UnknownNameError


def test_register_get_and_list():
    reg: Registry = Registry("widget")

    @reg.register("alpha", "a")
    def alpha() -> int:
        return 1

    reg.register("beta", obj=lambda: 2)
    assert reg.get("alpha") is alpha and reg.get("a") is alpha
    assert reg.names() == ["a", "alpha", "beta"] and "beta" in reg and len(reg) == 3


def test_duplicate_raises():
    reg: Registry = Registry("widget")
    reg.register("x", obj=1)
    with pytest.raises(ValueError, match="duplicate widget name 'x'"):
        reg.register("x", obj=2)


def test_unknown_suggests_close_matches():
    reg: Registry = Registry("task")
    for n in ("synth-body-mesh", "synth-hand-mesh", "3dpw"):
        reg.register(n, obj=n)
    with pytest.raises(UnknownNameError) as e:
        reg.get("synth-bdy-mesh")
    assert isinstance(e.value, CpcbenchError) and isinstance(e.value, KeyError)
    assert "Did you mean: synth-body-mesh" in str(e.value) and "Available: 3dpw" in str(e.value)


def test_lazy_and_base_cls():
    reg: Registry = Registry("thing")
    reg.register_lazy("od", "collections:OrderedDict")
    import collections

    assert reg.get("od") is collections.OrderedDict
    typed: Registry = Registry("thing", base_cls=dict)
    typed.register("od", obj=collections.OrderedDict)
    with pytest.raises(TypeError):
        typed.register("lst", obj=list)
