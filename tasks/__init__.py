"""One module per benchmark: dataset adapter, head, losses, metrics and protocol metadata.

Importing this package fills ``core.registry.TASKS``: the embedded synthetic tasks (``tasks.synthetic`` and its
mesh tasks, ``tasks.synth_mesh``) and the real benchmarks (``tasks.real``: 3DPW, EMDB, H36M p1/p2, FreiHAND,
HO3D, ImageFolder).
"""

from tasks import real, synth_mesh, synthetic  # noqa: F401  (importing registers the tasks)
