"""The evaluation protocol runner behind ``cpcbench eval``: fine-tune or linear-probe a backbone on a task, score,
write a result record and per-sample predictions.

Protocols (the same for every backbone, so numbers are comparable; VTAB / MAE fine-tuning recipes):

- ``finetune``: all weights train, with layer-wise learning-rate decay (BEiT; MAE fine-tuning) from the task's
  ``FinetuneDefaults`` (steps, batch, base LR per 256 samples, weight decay, warmup).
- ``linear``: the backbone is frozen (eval mode, no gradients) and only the task head trains. For the
  structured-output tasks the "probe" is the task's standard head on frozen tokens (as in dense linear probing
  of DINOv2/MAE), not a single linear layer. It trains on the backbone's cached tokens (``harness.features``;
  ``--feature-cache off``: the backbone runs at every step, the same numbers within float16 noise).
- ``attentive`` / ``knn`` / ``match``: frozen-feature probes on the cached tokens (``harness.probe``): a
  cross-attention query + the task's vector head, DINO's weighted k-NN, correspondence from similarity alone. A
  task lists the protocols it supports (``Task.protocols``); any other is refused.

Per seed: the backbone is rebuilt from its spec, the head initialised with the seed, the training set reduced to
``fraction`` (a subset drawn deterministically from the seed), trained with the one loop (``harness.train``),
then the test split is predicted and scored per sample by ``task.score_arrays``. ``harness.results.summarize``
aggregates over seeds; the record also carries the score of a trivial predictor (training mean / majority class)
as ``baseline_mean`` so every number can be read against "no image information".

Every statistic of the training data that a run uses (the head's starting point of ``head_from_data`` tasks, the
trivial baseline) comes from the seed's ``fraction`` subset alone; records say so with ``config.train_stats =
"fraction"`` (``harness.results.TRAIN_STATS``). Records without it were made before that rule and, at fractions
below 1, never share a table cell or a sweep cell with records that have it (``harness.tables.eval_setting``).

``limit`` makes a smoke run: at most ``limit`` training and test samples and ``limit`` steps; the record is marked
``smoke`` and never enters a paper table. The options (``EvalConfig``) are defined in ``harness.eval_options``.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from core.errors import CpcbenchError
from harness.backbones import pinned_spec
from harness.eval_options import EvalConfig
from harness.eval_parts import (
    aligned_metrics,
    backbone_info,
    check_scores,
    concat_arrays,
    fraction_subset,
    mean_baseline,
    safe_name,
    split_loader,
)
from harness.fast import uncompile

log = logging.getLogger("cpcbench.eval")
GROUPS = ("body", "hand")


def resolve_tasks(spec: str) -> list[str]:
    """``synth-body-mesh``, a comma list, or a group: ``body`` / ``hand`` = the synthetic tasks of that domain.

    Groups hold only the embedded synthetic benchmarks, so ``--task body`` means the same thing on every machine; real
    benchmarks and the frozen-feature probes (``probe-*``) are named explicitly (``--task 3dpw,emdb``).
    """
    from harness.registries import TASKS

    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part in GROUPS:
            group = [n for n in TASKS.names() if getattr(TASKS.get(n), "synthetic", False)
                     and TASKS.get(n).domain == part and not n.startswith("probe-")]
            names += [n for n in group if n not in names]
        else:
            TASKS.get(part)  # unknown names raise with suggestions
            if part not in names:
                names.append(part)
    if not names:
        raise CpcbenchError(f"no task selected by {spec!r}; see `cpcbench ls tasks`")
    return names


# ---------------------------------------------------------------------------------------------- model
class TaskModel(nn.Module):
    """backbone + task head; ``forward(batch) -> task.loss(...)``, ``predict(image) -> pred dict``.

    With ``frozen=True`` (linear protocol) the backbone has no gradients and stays in eval mode. ``input_norm``
    (the backbone info's mean/std) converts the ImageNet-normalised images of the datasets to what the weights expect.
    """

    def __init__(self, backbone: Any, head: Any, task: Any, frozen: bool,
                 input_norm: Mapping[str, Any] | None = None) -> None:
        from pretraining.load import Renormalize

        super().__init__()
        self.backbone, self.head, self.frozen = backbone, head, frozen
        self.renorm = Renormalize(input_norm)
        self._task = task  # plain attribute: not a module
        if frozen:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> TaskModel:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def predict(self, image: Any) -> dict[str, Any]:
        import torch

        image = self.renorm(image)
        if self.frozen:
            with torch.no_grad():
                tokens = self.backbone.forward_features(image)
        else:
            tokens = self.backbone.forward_features(image)
        return self.head(tokens)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        pred = self.predict(batch["image"])
        return self._task.loss(pred, batch)


def _resolve_backbone(spec: str, domain: str, img_size: int | None) -> tuple[Any, dict[str, Any]]:
    """``harness.backbones.resolve_backbone`` (one indirection, so tests can substitute a tiny backbone)."""
    from harness.backbones import resolve_backbone

    return resolve_backbone(spec, domain, img_size)




def layer_decay(cfg: EvalConfig, d: Any, backbone: Any = None) -> float | None:
    """The layer-wise LR decay of a fine-tuning run (``--layer-decay`` or the task's default); None when frozen.

    None too for a ``backbone`` without transformer ``blocks`` (a reference CNN, ``cnn:NAME``): there are no layers
    to decay over, so it trains with one learning rate and its record says ``layer_decay: null``; asking for a
    decay other than 1 (= none) there is an error rather than a setting that silently does nothing."""
    if cfg.protocol != "finetune":
        return None
    if backbone is not None and not hasattr(backbone, "blocks"):
        if cfg.layer_decay is not None and cfg.layer_decay != 1:
            raise CpcbenchError(f"--layer-decay {cfg.layer_decay:g}: backbone {cfg.backbone!r} has no transformer "
                                "blocks to decay over; leave --layer-decay unset (or 1) for it")
        return None
    return cfg.layer_decay if cfg.layer_decay is not None else d.layer_decay


def predict_split(model: Any, task: Any, ds: Any, device: Any, batch_size: int, num_workers: int) -> dict[str, Any]:
    """Run ``model`` over ``ds``; ``task.predictions`` arrays concatenated over the split (first axis = sample)."""
    import torch

    from harness.train_step import to_device

    model.eval()
    chunks = []
    with torch.no_grad():
        for batch in split_loader(ds, batch_size, num_workers):
            batch = to_device(batch, device)
            chunks.append(task.predictions(model.predict(batch["image"]), batch))
    return concat_arrays(chunks)



# ---------------------------------------------------------------------------------------------- the protocol
def evaluate(cfg: EvalConfig, results_root: str | Path = "results", runs_root: str | Path | None = None,
             visualize: bool = False) -> dict[str, Any]:
    """Fine-tune/probe, score and write the record + predictions for one task. Returns the record (with
    ``_path``)."""
    import numpy as np
    import torch

    from harness.probe import Cell, check_protocol, run_seed, uses_cache
    from harness.registries import TASKS
    from harness.results import TRAIN_STATS, build_record, new_run_id, record_path, summarize_metric, write_record
    from harness.runtime import get_device, seed_everything

    cfg.check()
    t0 = time.perf_counter()
    task = TASKS.get(cfg.task)(cfg.data_root)
    check_protocol(task, cfg.protocol)
    d = task.defaults
    steps = cfg.steps or d.steps
    if cfg.limit is not None:
        steps = min(steps, cfg.limit)
    batch_size = cfg.batch_size or d.batch_size
    base_lr = cfg.base_lr or d.base_lr
    run_id = new_run_id()
    runs_root = Path(runs_root or os.environ.get("CPCBENCH_RUNS", "runs"))
    try:
        device = get_device(cfg.device)
    except (RuntimeError, ValueError) as e:
        raise CpcbenchError(str(e)) from None

    if task.data_status().get("data") == "missing":  # say what to download before anything else is built
        task.build_dataset("test", cfg.img_size or d.img_size, limit=1)
    from harness.results import portable_path

    probe_backbone, binfo = _resolve_backbone(cfg.backbone, task.domain, cfg.img_size)
    spec = pinned_spec(cfg.backbone, binfo)  # a method name -> the file found now, for every seed
    img_size = backbone_info(probe_backbone, binfo)["img_size"]
    decay = layer_decay(cfg, d, probe_backbone)  # before any data is built: a decay it cannot take is an error now
    del probe_backbone
    test_ds = task.build_dataset("test", img_size, cfg.limit)
    n_test = len(test_ds)
    if n_test == 0:
        raise CpcbenchError(f"task {task.name!r}: empty test split")

    @functools.cache
    def train_data() -> Any:  # built when first needed: a warm feature cache never loads the training images
        ds = task.build_dataset("train", img_size, cfg.limit)
        if len(ds) == 0:
            raise CpcbenchError(f"task {task.name!r}: empty train split")
        return ds

    if not uses_cache(cfg):
        train_data()
    cell = Cell(cfg, task, device, steps, batch_size, base_lr, img_size, train_data, test_ds, runs_root, run_id)

    per_seed: dict[str, list[Any]] = {}
    submission = None
    bb_name = portable_path(str(binfo.get("name") or cfg.backbone))  # no machine path in a record or its location
    record_dir = Path(results_root) / safe_name(task.name) / safe_name(bb_name)
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    preds_out: dict[str, Any] = {}
    seed_info = []
    baselines: list[dict[str, float]] = []
    feature_keys: list[list[str]] = []
    for k, seed in enumerate(seeds):
        seed_everything(seed)
        backbone, seed_binfo = _resolve_backbone(spec, task.domain, img_size)
        if seed_binfo.get("weights_sha256") != binfo.get("weights_sha256"):
            raise CpcbenchError(f"the weights of {cfg.backbone!r} changed during the run ({binfo.get('weights')}, "
                                f"sha256 {binfo.get('weights_sha256')} -> {seed_binfo.get('weights_sha256')}): "
                                "seeds would not share weights; run again")
        info = backbone_info(backbone, seed_binfo)
        if uses_cache(cfg):
            out = run_seed(cell, seed, backbone, seed_binfo, info)
            feature_keys.append(out.features)
        else:
            out = _train_seed(cell, seed, backbone, seed_binfo, info)
        arrays, scores = out.arrays, out.scores
        n_test = len(next(iter(scores.values()))) if scores else n_test  # match: one value per query
        for name, v in scores.items():
            per_seed.setdefault(name, []).append(v)
        seed_info.append(out.info)
        out_n_train = out.n_train_full
        for key, v in (arrays or {}).items():
            if key.startswith("gt/"):
                if k == 0:
                    preds_out[key] = v
            else:
                preds_out[key if k == 0 else f"seed{seed}/{key}"] = v
        for name, v in scores.items():
            preds_out[f"score/{name}" if k == 0 else f"seed{seed}/score/{name}"] = v.astype(np.float32)
        if out.base:
            baselines.append(out.base)
        if k == 0 and arrays is not None:
            sub_dir = record_dir / f"{run_id}.submission"
            sub = task.write_submission(arrays, sub_dir)
            if sub is not None:
                submission = str(Path(sub).relative_to(record_dir))
                log.info("wrote the benchmark's submission file %s", sub)
        if visualize and k == 0 and arrays is not None and cfg.protocol in ("finetune", "linear"):
            from harness.visualize import render_predictions

            png = record_dir / f"{run_id}.png"
            render_predictions(task, test_ds, arrays, png)
            log.info("wrote %s", png)
        del backbone, out
        if device.type == "cuda":
            torch.cuda.empty_cache()

    metrics = {}
    for spec in task.metrics:
        if spec.name not in per_seed:  # hidden test labels: the benchmark's server scores the submission
            continue
        metrics[spec.name] = summarize_metric(spec, per_seed[spec.name])
    extra: dict[str, Any] = {"per_seed": seed_info, "predictions": f"{run_id}.predictions.npz",
                             "data": task.data_info()}
    if baselines:  # the trivial predictor of each seed's own training subset, averaged over seeds
        extra["baseline_mean"] = {m: float(np.mean([b[m] for b in baselines])) for m in baselines[0]}
        aligned = aligned_metrics(task)
        if aligned:  # their baseline is the Procrustes mean pose (``mean_baseline``): the tables say so
            extra["baseline_aligned"] = aligned
    if submission is not None:
        extra["submission"] = submission
        if getattr(task, "submission_note", ""):
            extra["submission_note"] = task.submission_note
    config = {**asdict(cfg), "steps": steps, "batch_size": batch_size, "base_lr": base_lr, "img_size": img_size,
              "defaults": d.to_dict(), "weight_decay": d.weight_decay,
              "layer_decay": decay,
              "warmup_steps": min(d.warmup_steps, steps // 5), "n_train_full": out_n_train,
              "train_stats": TRAIN_STATS, "feature_cache": "on" if uses_cache(cfg) else "off",
              "features": feature_keys}
    bb = {**{k: v for k, v in binfo.items() if k != "pretrain"}, "spec": cfg.backbone,
          "pretrain": binfo.get("pretrain", {})}
    bb["name"] = bb_name
    rec = build_record(task=task.info(), backbone=bb, method=str(binfo.get("method", cfg.backbone)),
                       protocol=cfg.protocol, seeds=seeds, fraction=cfg.fraction, limit=cfg.limit, metrics=metrics,
                       n_samples=n_test, config=config, wall_time_s=time.perf_counter() - t0, run_id=run_id, **extra)
    path = record_path(rec, results_root)
    if path.parent != record_dir:
        raise CpcbenchError(f"internal: record goes to {path.parent}, its files to {record_dir}")
    _write_predictions(path.with_name(f"{run_id}.predictions.npz"), preds_out)
    out = write_record(rec, results_root)
    return {**rec, "_path": str(out)}


def _train_seed(cell: Any, seed: int, backbone: Any, binfo: Mapping[str, Any], info: Mapping[str, Any]) -> Any:
    """One seed of ``finetune`` (or uncached ``linear``): backbone + head trained on images, test split scored."""
    from torch.utils.data import Subset

    from harness.probe import SeedRun
    from harness.train import LoopConfig, OptimConfig, train

    cfg, task, d, steps = cell.cfg, cell.task, cell.task.defaults, cell.steps
    train_full, n_test = cell.train_data(), len(cell.test_ds)
    idx = fraction_subset(len(train_full), cfg.fraction, seed)
    train_subset = Subset(train_full, idx) if len(idx) < len(train_full) else train_full
    # statistics only from the samples this seed trains on (never the full split when --fraction < 1)
    head = (task.build_head(info, train=train_subset) if getattr(task, "head_from_data", False)
            else task.build_head(info))
    model = TaskModel(backbone, head, task, frozen=cfg.protocol == "linear", input_norm=binfo.get("input_norm"))
    loop = LoopConfig(steps=steps, batch_size=min(cell.batch_size, len(train_subset)), num_workers=cfg.num_workers,
                      log_every=max(1, steps // 10), seed=seed, device=str(cell.device), count_flops=False,
                      compile=cfg.compile)
    optim = OptimConfig(base_lr=cell.base_lr, weight_decay=d.weight_decay, warmup_steps=min(d.warmup_steps, steps // 5),
                        layer_decay=layer_decay(cfg, d, backbone))
    run_dir = cell.runs_root / "eval" / task.name / safe_name(cfg.backbone) / cell.run_id / f"seed{seed}"
    log.info("%s on %s (%s, seed %d): %d train / %d test samples, %d steps", cfg.backbone, task.name,
             cfg.protocol, seed, len(train_subset), n_test, steps)
    res = train(model, train_subset, loop, optim, run_dir, config={"eval": asdict(cfg)},
                desc=f"{task.name} seed {seed}")
    uncompile(model)  # predictions come in other batch shapes: eager, not a second compile
    arrays = predict_split(model, task, cell.test_ds, cell.device, cfg.eval_batch_size, cfg.num_workers)
    scores = check_scores(task, task.score_arrays(arrays), n_test)
    base = mean_baseline(task, train_subset, arrays, n_test, cfg.eval_batch_size)
    return SeedRun(scores, arrays, base, {"seed": seed, "final_loss": res.final_loss,
                                          "train_wall_time_s": res.wall_time_s, "n_train": len(train_subset),
                                          "run_dir": str(run_dir), **({"compile": res.compile} if res.compile
                                                                      else {})}, [], len(train_full))



def _write_predictions(path: Path, arrays: Mapping[str, Any]) -> Path:
    """Compressed npz; vertex arrays as float16 (about 0.1 mm at body scale) to keep records small."""
    import numpy as np

    from core.io import atomic_write

    arrays = {k: (v.astype(np.float16) if k.endswith("/verts") and v.dtype.kind == "f" else v)
              for k, v in arrays.items()}

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return atomic_write(path, write)


