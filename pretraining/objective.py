"""What a pretraining objective declares beside its code, so that the harness only looks it up by name.

Every class registered in ``METHODS`` declares:

- ``config_cls``: its frozen config dataclass. The pretraining config holds one section per method, named by
  the method and parsed/validated by this class (``cpc.mask_ratio=0.75`` reaches ``CPCConfig``).
- ``data_kind``: what an item is (``"pairs"``, ``"images"``, ``"multicrop"``, ``"labelled"``).
- ``batch_needs``: a ``BatchNeeds``: the data set that makes its items, which frames it reads (the run's
  domain, or a fixed synthetic domain such as ``objects`` for supervised classification), whether an
  ImageFolder root may stand in for a frame set, and the collation of its batches.

Optional hooks: ``presets`` (a named preset's values for its own section, e.g. DINO's paper-sized head),
``validate_config(cfg)`` (raises ValueError before any data is read), ``part_counts(batch)`` (items behind
each ``loss_<part>`` output, to weight held-out part means), ``baseline_loss``, ``reconstruct`` and
``export_backbone``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_KINDS = ("pairs", "images", "multicrop", "labelled")


@dataclass(frozen=True)
class DataRequest:
    """What a data set factory is given besides the frames and the seed."""

    data: Any  # pretraining.data.DataConfig
    img_size: int
    patch_size: int  # the backbone's
    objective: Any  # the objective's config (an instance of its config_cls)
    info: Mapping[str, Any]  # facts about the data read so far (frames, num_classes, local_size, ...)


@dataclass(frozen=True)
class BatchNeeds:
    """How an objective's batches are made.

    ``dataset(frames, request, seed) -> Dataset`` builds its items from a frame store (``CachedFrames``);
    ``info(store, request) -> dict`` adds facts the objective is built with (``data_info``: the number of
    classes, the local crop size) before the data sets are made; ``domain``: the synthetic domain its frames come
    from whatever the run's domain (None: the run's own, body or hand); ``image_folder``: a ``--data`` directory
    without ``manifest.csv`` is read as an ImageFolder root (``root/<class>/<image>``); ``collate``: None for
    torch's default collation.
    """

    dataset: Callable[[Any, DataRequest, int], Any]
    info: Callable[[Any, DataRequest], dict[str, Any]] | None = None
    domain: str | None = None
    image_folder: bool = False
    collate: Callable[[list[Any]], Any] | None = None

    def frames_domain(self, run_domain: str) -> str:
        """The synthetic domain whose frames a run for ``run_domain`` renders or reads."""
        return self.domain or run_domain

    @property
    def any_domain(self) -> bool:
        """True when its data do not depend on the run's domain (a backbone of any domain's run will do)."""
        return self.domain is not None


def check_declared(name: str, cls: type) -> None:
    """Raise ``TypeError`` unless ``cls`` declares ``config_cls``, ``data_kind`` and ``batch_needs``."""
    import dataclasses

    cfg = getattr(cls, "config_cls", None)
    if not (isinstance(cfg, type) and dataclasses.is_dataclass(cfg) and cfg.__dataclass_params__.frozen):
        raise TypeError(f"objective {name!r} declares no frozen config dataclass as config_cls")
    if getattr(cls, "data_kind", None) not in DATA_KINDS:
        raise TypeError(f"objective {name!r}: data_kind must be one of {DATA_KINDS}")
    if not isinstance(getattr(cls, "batch_needs", None), BatchNeeds):
        raise TypeError(f"objective {name!r} declares no BatchNeeds as batch_needs")


def build_datasets(needs: BatchNeeds, objective_cfg: Any, data: Any, domain: str, img_size: int, seed: int,
                   patch_size: int) -> tuple[Any, Any, dict[str, Any]]:
    """(train data set, held-out data set or None, data info) that ``needs`` asks for.

    ``data``: the ``DataConfig`` (``data.source``: ``synth``, a frame-set directory or, when the objective reads
    one, an ImageFolder root); ``domain``: the run's domain. The held-out set is the frame set's test split,
    seeded apart (``seed + 12345``) so its crops and masks are fixed for the whole run.
    """
    from pretraining import data as D

    if needs.image_folder and data.source != "synth" and not (Path(data.source) / "manifest.csv").is_file():
        train = D.ImageFolderData(data.source, img_size, data, seed)
        return train, None, {"num_classes": train.num_classes, "source": str(data.source), "kind": "imagefolder"}
    domain = needs.frames_domain(domain) if data.source == "synth" else domain
    store = D.open_frames(data.source, domain, data, img_size)
    info: dict[str, Any] = {"source": str(store.root), "domain": domain, "frames": len(store)}
    if needs.info is not None:
        info.update(needs.info(store, DataRequest(data, img_size, patch_size, objective_cfg, dict(info))))
    request = DataRequest(data, img_size, patch_size, objective_cfg, dict(info))
    train_store, test_store = (D.CachedFrames(store.select(split=s)) for s in ("train", "test"))
    train = needs.dataset(train_store, request, seed)
    held = needs.dataset(test_store, request, seed + 12345) if len(test_store) else None
    return train, held, info

