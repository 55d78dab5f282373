"""Pieces of an evaluation shared by the image path (``harness.evaluate``) and the frozen-feature path
(``harness.probe``, ``harness.features``): what a head needs to know of a backbone, batching and concatenating
predictions over a split, checking scores, the trivial baseline."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import CpcbenchError


def backbone_info(backbone: Any, info: Mapping[str, Any]) -> dict[str, Any]:
    """The facts a head needs, read from the backbone module (the contract of ``harness.backbones``)."""
    img = getattr(backbone, "img_size", info.get("img_size"))
    img = int(img if isinstance(img, int) else img[0])
    patch = backbone.patch_size
    patch = int(patch if isinstance(patch, int) else patch[0])
    grid = getattr(backbone, "grid_size", (img // patch, img // patch))
    return {"embed_dim": int(backbone.embed_dim), "num_prefix_tokens": int(backbone.num_prefix_tokens),
            "grid_size": tuple(int(g) for g in grid), "patch_size": patch, "img_size": img}


def collate(data: Any) -> Any:
    """``default_collate``, except for a batch the dataset fetched whole (its ``__getitems__`` returned one dict of
    batched arrays, as the cached-token datasets do): passed on as it is, no per-item work."""
    from torch.utils.data import default_collate

    return data if isinstance(data, Mapping) else default_collate(data)


def split_loader(ds: Any, batch_size: int, num_workers: int) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)


def concat_arrays(chunks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    import numpy as np

    if not chunks:
        raise CpcbenchError("nothing to concatenate: the split is empty")
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def ground_truth_split(task: Any, ds: Any, batch_size: int) -> dict[str, Any] | None:
    """``task.ground_truth`` over a split (None when the task does not expose ground truth separately)."""
    if not hasattr(task, "ground_truth"):
        return None
    chunks = []
    for batch in split_loader(ds, batch_size, 0):
        gt = task.ground_truth(batch)
        if gt is None:
            return None
        chunks.append(gt)
    return concat_arrays(chunks)


def check_scores(task: Any, scores: Mapping[str, Any], n: int) -> dict[str, Any]:
    import numpy as np

    expected = [] if getattr(task, "hidden_test_labels", False) else [m.name for m in task.metrics]
    if sorted(scores) != sorted(expected):
        raise CpcbenchError(f"task {task.name!r} scored {sorted(scores)}, but declares metrics {expected}")
    out = {}
    for k, v in scores.items():
        a = np.asarray(v, dtype=np.float64)
        if a.shape != (n,):
            raise CpcbenchError(f"task {task.name!r}: metric {k!r} gave shape {a.shape}, expected one value per "
                                f"sample ({n},)")
        out[k] = a
    return out


def mean_baseline(task: Any, train_ds: Any, preds: Mapping[str, Any], n_test: int,
                  batch_size: int) -> dict[str, float] | None:
    """Mean (over the test samples) of each metric for the trivial predictor of ``task.baseline_predictions`` (the
    ``aligned`` metrics: of ``task.aligned_baseline_predictions``, the Procrustes mean pose)."""
    import numpy as np

    if train_ds is None or not hasattr(task, "baseline_predictions") or getattr(task, "hidden_test_labels", False):
        return None
    train_gt = ground_truth_split(task, train_ds, batch_size)
    if train_gt is None:
        return None
    test_gt = {k: v for k, v in preds.items() if k.startswith("gt/")}
    test_pred = {k: v for k, v in preds.items() if k.startswith("pred/")}
    base = task.baseline_predictions(train_gt, test_pred)
    if base is None:
        return None
    scores = check_scores(task, task.score_arrays({**test_pred, **base, **test_gt}), n_test)
    aligned = aligned_metrics(task)
    if aligned:  # the metrics scored after a similarity alignment: against the Procrustes mean pose
        pa = task.aligned_baseline_predictions(train_gt, test_pred)
        if pa is None:
            raise CpcbenchError(f"task {task.name!r} declares aligned metrics {aligned} but gives no Procrustes-mean "
                                f"baseline (no ground truth or prediction of {task.aligned_on!r}, its aligned_on)")
        pa_scores = check_scores(task, task.score_arrays({**test_pred, **pa, **test_gt}), n_test)
        scores = {k: (pa_scores[k] if k in aligned else v) for k, v in scores.items()}
    return {k: float(np.mean(v)) for k, v in scores.items()}


def aligned_metrics(task: Any) -> list[str]:
    """The task's metrics scored after a similarity alignment (``MetricSpec.aligned``), in declaration order."""
    return [m.name for m in getattr(task, "metrics", ()) if getattr(m, "aligned", False)]


def safe_name(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def fraction_subset(n: int, fraction: float, seed: int) -> list[int]:
    """A deterministic ``fraction`` of ``range(n)`` (at least one item), drawn from ``seed``, in sorted order."""
    import numpy as np

    k = max(1, int(math.floor(n * fraction + 1e-9)))
    if k >= n:
        return list(range(n))
    return sorted(np.random.default_rng([seed, 7919]).choice(n, size=k, replace=False).tolist())
