"""Backbones (ViT on timm layers) and pretraining objectives: cpc, mae, dino, supervised.

Importing this package fills ``core.registry.BACKBONES`` (vit_tiny, vit_small, vit_base, vit_large) and
``METHODS`` (cpc, mae, dino, supervised). ``scratch`` is not a method: it is a random-init backbone that
``harness.backbones.resolve_backbone("scratch")`` builds.
"""

from pretraining import cpc, dino, mae, supervised, vit  # noqa: F401  (registration)
