"""Backbones (ViT on timm layers) and pretraining objectives: cpc, mae, dino, supervised.

Importing this package fills ``harness.registry.BACKBONES`` and ``METHODS``.
"""
