"""One module per benchmark: dataset adapter, head, losses, metrics and protocol metadata.

Importing this package fills ``harness.registry.TASKS``.
"""
