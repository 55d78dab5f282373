"""One module per benchmark: dataset adapter, head, losses, metrics and protocol metadata.

Importing this package fills ``core.registry.TASKS``: the embedded synthetic tasks (``tasks.synthetic`` and its
mesh tasks, ``tasks.synth_mesh``), the probes of frozen features (``tasks.probes``, ``tasks.probe_depth``,
``tasks.probe_match``: ``probe-*``) and the real benchmarks (``tasks.real``: 3DPW, EMDB, H36M p1/p2, FreiHAND, HO3D,
ImageFolder).
"""

# importing registers the tasks
from tasks import probe_depth, probe_match, probes, real, synth_mesh, synthetic  # noqa: F401
