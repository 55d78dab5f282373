"""One module per benchmark: dataset adapter, head, losses, metrics and protocol metadata.

Importing this package fills ``harness.registry.TASKS``: the embedded synthetic tasks (``tasks.synthetic``) and
the real benchmarks (``tasks.real``).
"""

from tasks import synthetic  # noqa: F401  (registers the synth-* tasks)
