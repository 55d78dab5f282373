"""Backbones (ViT on timm layers) and pretraining objectives: cpc, mae, dino, supervised.

Importing this package fills ``core.registry.BACKBONES`` (vit_tiny, vit_small, vit_base, vit_large) and
``METHODS`` (cpc, mae, dino, supervised). ``scratch`` is not a method: it is a random-init backbone that
``harness.backbones.resolve_backbone("scratch")`` builds. What each method declares beside its code (config
class, data kind, batch needs) is described in ``pretraining.objective``.
"""

from pretraining import cpc, dino, mae, supervised, vit  # noqa: F401  (registration)

DEFAULT_METHOD = "cpc"  # what `cpcbench pretrain` trains unless --method says otherwise
