"""cpcbench harness: CLI, registries, configs, the one training loop, checkpoints, result records, tables."""

__version__ = "0.1.0"
