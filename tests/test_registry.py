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


def test_base_cls():
    import collections

    typed: Registry = Registry("thing", base_cls=dict)
    typed.register("od", obj=collections.OrderedDict)
    assert typed.get("od") is collections.OrderedDict
    with pytest.raises(TypeError):
        typed.register("lst", obj=list)


def test_core_registries_import_nothing_above_core():
    """Registration is by explicit import: reading ``core.registry`` imports neither pretraining nor tasks
    (it used to import them by string on first use); ``harness.registries`` imports both and lists everything."""
    import subprocess
    import sys

    code = ("import sys; from core.registry import TASKS, METHODS; "
            "print(TASKS.names(), METHODS.names(), [m for m in ('tasks', 'pretraining') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] [] []"
    from harness.registries import BACKBONES, METHODS, TASKS

    assert {"cpc", "mae", "dino", "supervised"} <= set(METHODS.names()) and "vit_tiny" in BACKBONES
    assert "synth-body-mesh" in TASKS and "3dpw" in TASKS


def test_empty_registry_says_what_fills_it():
    with pytest.raises(UnknownNameError, match="no task is registered yet .*harness.registries"):
        Registry("task").get("3dpw")
