"""The project's registries, filled: importing this module imports ``pretraining`` (backbones, methods) and
``tasks`` (benchmarks), whose modules register into ``core.registry`` as they load.

Registration is by explicit import, from the top: the registries in ``core`` never import a higher layer.
Harness code reads the registries from here, inside the functions that need them, so ``cpcbench --help``
imports neither torch nor the packages that register.

    from harness.registries import TASKS
    TASKS.get("synth-body-mesh")
"""

from __future__ import annotations

import pretraining  # noqa: F401  (registers BACKBONES and METHODS)
import tasks  # noqa: F401  (registers TASKS)
from core.registry import BACKBONES, METHODS, TASKS

__all__ = ["BACKBONES", "METHODS", "TASKS"]
