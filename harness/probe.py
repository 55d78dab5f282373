"""The frozen-feature protocols, run on cached tokens (``harness.features``), called per seed by
``harness.evaluate.evaluate``.

- ``linear``: the task's own head (``task.build_head``, as the uncached linear protocol) trained with the one loop
  on the cached tokens of the seed's ``fraction`` subset; the task's schedule (``FinetuneDefaults``: steps, batch,
  base LR, weight decay, warmup), no layer decay. Same numbers as ``--feature-cache off`` within noise: the only
  difference is the float16 storage of the tokens.
- ``attentive``: one learnable query cross-attending over all tokens (multi-head attention after a LayerNorm; the
  attentive probe of V-JEPA, Bardes et al. 2024, and AIM, El-Nouby et al. 2024), then ``task.vector_head(dim)``;
  same schedule as ``linear``.
- ``knn``: DINO's weighted k-NN classifier (Caron et al. 2021): cosine similarity of L2-normalised pooled features
  (the CLS token when the backbone has one, else the mean patch token), the ``K`` = 20 nearest training items vote
  with weight ``exp(sim / T)``, T = 0.07; votes are summed per class. Memory bank = the seed's training subset.
- ``match``: no training: ``task.match_scores(features, "test", img_size, limit)`` per seed, chance from
  ``task.match_baseline``.

Items of a token dataset: ``{"tokens": [T, C] float32, <the task's targets>, "image": an empty [0, S, S]
placeholder}`` (tasks read the crop size from ``image.shape[-1]``; there are no pixels).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import CpcbenchError

log = logging.getLogger("cpcbench.eval")
CACHED = ("linear", "attentive", "knn", "match")
KNN_K, KNN_T = 20, 0.07


@dataclass(frozen=True)
class Cell:
    """What every seed of one evaluation shares (built once by ``evaluate``)."""

    cfg: Any  # EvalConfig
    task: Any
    device: Any
    steps: int
    batch_size: int
    base_lr: float
    img_size: int
    train_data: Any  # () -> the training split, built on first call (a warm cache never needs it)
    test_ds: Any
    runs_root: Path
    run_id: str


@dataclass
class SeedRun:
    """One seed's outcome: per-sample ``scores``, the test predictions (None for ``match``), the trivial baseline."""

    scores: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray] | None
    base: dict[str, float] | None
    info: dict[str, Any]
    features: list[str]
    n_train_full: int = 0


def supported(task: Any) -> tuple[str, ...]:
    return tuple(getattr(task, "protocols", ("finetune", "linear")))


def check_protocol(task: Any, protocol: str) -> None:
    """Refuse a protocol the task does not support (one line naming the ones it does)."""
    ok = supported(task)
    if protocol not in ok:
        raise CpcbenchError(f"task {task.name!r} does not support --protocol {protocol}; it supports "
                            f"{', '.join(ok)}")
    if protocol == "attentive" and not hasattr(task, "vector_head"):
        raise CpcbenchError(f"task {task.name!r} has no vector_head for --protocol attentive; it supports "
                            f"{', '.join(p for p in ok if p != 'attentive')}")
    if protocol == "knn" and not getattr(task, "knn_target", ""):
        raise CpcbenchError(f"task {task.name!r} has no knn_target for --protocol knn; it supports "
                            f"{', '.join(p for p in ok if p != 'knn')}")


def uses_cache(cfg: Any) -> bool:
    return cfg.protocol in CACHED and not (cfg.protocol == "linear" and cfg.feature_cache == "off")


# ---------------------------------------------------------------------------------------------- data
class TokenDataset(torch.utils.data.Dataset):
    """Cached tokens + the targets of the same items (``rows``: which rows of ``tokens`` the targets belong to)."""

    def __init__(self, tokens: np.ndarray, targets: Mapping[str, np.ndarray], img_size: int,
                 rows: list[int] | None = None) -> None:
        self.tokens, self.targets, self.img_size = tokens, dict(targets), img_size
        self.rows = list(range(len(tokens))) if rows is None else list(rows)
        if any(len(v) != len(self.rows) for v in self.targets.values()):
            raise CpcbenchError(f"internal: {len(self.rows)} token rows but targets of another length")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"tokens": torch.from_numpy(np.asarray(self.tokens[self.rows[i]], np.float32)),
                "image": torch.empty(0, self.img_size, self.img_size)}
        for k, v in self.targets.items():
            item[k] = torch.as_tensor(np.asarray(v[i])) if v.dtype.kind in "biufc" else v[i]
        return item

    def __getitems__(self, idx: list[int]) -> dict[str, Any]:
        """A whole batch in one slice per array (the DataLoader's batched fetch; ``eval_parts.collate`` passes it
        on): what stacking ``__getitem__`` items gives, without per-item work."""
        idx_arr = np.asarray(idx, dtype=np.int64)
        rows = np.asarray(self.rows, dtype=np.int64)[idx_arr]
        batch: dict[str, Any] = {"tokens": torch.from_numpy(np.asarray(self.tokens[rows], np.float32)),
                                 "image": torch.empty(len(idx), 0, self.img_size, self.img_size)}
        for k, v in self.targets.items():
            batch[k] = torch.as_tensor(np.asarray(v[idx_arr])) if v.dtype.kind in "biufc" else [v[i] for i in idx]
        return batch


def token_dataset(feats: Any, idx: list[int] | None = None) -> TokenDataset:
    """The token dataset of a split (``feats``: its tokens and targets), restricted to items ``idx``."""
    targets = dict(feats.targets or {})
    if idx is not None:
        targets = {k: v[idx] for k, v in targets.items()}
    return TokenDataset(feats.tokens, targets, feats.img_size, idx)


# ---------------------------------------------------------------------------------------------- models
class HeadOnTokens(nn.Module):
    """``forward(batch) = task.loss(head(tokens), batch)``; ``predict(tokens) = head(tokens)``."""

    def __init__(self, head: nn.Module, task: Any) -> None:
        super().__init__()
        self.head = head
        self._task = task

    def predict(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(tokens.float())

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._task.loss(self.predict(batch["tokens"]), batch)


class AttentivePool(nn.Module):
    """One learnable query cross-attending over all tokens, then ``head``.

    tokens: [B, T, C] -> head(pooled [B, C]) (the task's pred dict).
    """

    def __init__(self, dim: int, head: nn.Module, num_heads: int | None = None) -> None:
        super().__init__()
        h = num_heads or max(1, dim // 64)
        while dim % h:
            h -= 1
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.attn = nn.MultiheadAttention(dim, h, batch_first=True)
        self.head = head

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        kv = self.norm(tokens)
        out, _ = self.attn(self.query.expand(len(tokens), -1, -1), kv, kv, need_weights=False)
        return self.head(out[:, 0])


def knn_scores(bank: np.ndarray, bank_labels: np.ndarray, queries: np.ndarray, n_classes: int,
               k: int = KNN_K, temperature: float = KNN_T, chunk: int = 1024) -> np.ndarray:
    """DINO's weighted k-NN votes. bank: [M, C], bank_labels: [M] int, queries: [Q, C] -> scores [Q, n_classes]
    (per class, the sum of ``exp(cos_sim / temperature)`` over the ``k`` nearest bank items)."""
    b = torch.nn.functional.normalize(torch.as_tensor(bank, dtype=torch.float32), dim=1)
    labels = torch.as_tensor(bank_labels, dtype=torch.int64)
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise CpcbenchError(f"k-NN labels must be in [0, {n_classes}), got {int(labels.min())}..{int(labels.max())}")
    k = min(k, len(b))
    out = []
    for s in range(0, len(queries), chunk):
        q = torch.nn.functional.normalize(torch.as_tensor(queries[s:s + chunk], dtype=torch.float32), dim=1)
        sim, nn_idx = (q @ b.T).topk(k, dim=1)
        votes = torch.zeros(len(q), n_classes).scatter_add_(1, labels[nn_idx], (sim / temperature).exp())
        out.append(votes)
    return torch.cat(out).numpy() if out else np.zeros((0, n_classes), np.float32)


def _n_classes(task: Any, labels: np.ndarray) -> int:
    n = getattr(task, "n_classes", None)
    n = n() if callable(n) else n
    return int(n) if n is not None else int(labels.max()) + 1


# ---------------------------------------------------------------------------------------------- runners
def run_seed(cell: Cell, seed: int, backbone: Any, binfo: dict[str, Any], info: dict[str, Any]) -> SeedRun:
    """One seed of a cached protocol: extract (or reuse) the features, then probe, predict and score."""
    from harness.eval_parts import check_scores, fraction_subset, mean_baseline
    from harness.features import extract_features

    cfg, task = cell.cfg, cell.task

    def feats(split: str, ds: Any) -> Any:
        return extract_features(backbone, binfo, task, split, cell.img_size, limit=cfg.limit,
                                cache_root=cell.runs_root / "features", device=cell.device, dataset=ds,
                                compile=cfg.compile)

    t0 = time.perf_counter()
    if cfg.protocol == "match":
        test = feats("test", cell.test_ds)
        scores = {k: np.asarray(v, np.float64) for k, v in
                  task.match_scores(test, "test", cell.img_size, cfg.limit).items()}
        base = {k: float(v) for k, v in task.match_baseline("test", cell.img_size, cfg.limit,
                                                                   patch_size=test.patch_size).items()}
        return SeedRun(scores, None, base, {"seed": seed, "wall_time_s": time.perf_counter() - t0}, [test.key])
    train_f, test_f = feats("train", cell.train_data), feats("test", cell.test_ds)
    extract_s = time.perf_counter() - t0
    idx = fraction_subset(len(train_f), cfg.fraction, seed)
    train_tok = token_dataset(train_f, idx)
    test_tok = token_dataset(test_f)
    if cfg.protocol == "knn":
        out = _knn(task, train_f, train_tok, test_f, test_tok, cfg.eval_batch_size)
        info_out = {"seed": seed, "n_train": len(train_tok), "k": KNN_K, "temperature": KNN_T}
    else:
        out, info_out = _trained(cell, seed, info, train_tok, test_tok)
    info_out["features_s"] = extract_s
    scores = check_scores(task, task.score_arrays(out), len(test_tok))
    base = mean_baseline(task, train_tok, out, len(test_tok), cfg.eval_batch_size)
    return SeedRun(scores, out, base, info_out, [train_f.key, test_f.key], len(train_f))


def _trained(cell: Cell, seed: int, info: dict[str, Any], train_tok: TokenDataset,
             test_tok: TokenDataset) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``linear`` / ``attentive``: train the probe on the tokens with the one loop, predict the test split."""
    from harness.eval_parts import collate, safe_name
    from harness.train import LoopConfig, OptimConfig, train

    cfg, task, d = cell.cfg, cell.task, cell.task.defaults
    if cfg.protocol == "linear":  # a head_from_data task reads its statistics from the subset's targets
        head = (task.build_head(info, train=train_tok) if getattr(task, "head_from_data", False)
                else task.build_head(info))
    else:
        dim = int(info["embed_dim"])
        head = AttentivePool(dim, task.vector_head(dim))
    model = HeadOnTokens(head, task)
    loop = LoopConfig(steps=cell.steps, batch_size=min(cell.batch_size, len(train_tok)), num_workers=0,
                      log_every=max(1, cell.steps // 10), seed=seed, device=str(cell.device), count_flops=False)
    optim = OptimConfig(base_lr=cell.base_lr, weight_decay=d.weight_decay,
                        warmup_steps=min(d.warmup_steps, cell.steps // 5), layer_decay=None)
    run_dir = cell.runs_root / "eval" / task.name / safe_name(cfg.backbone) / cell.run_id / f"seed{seed}"
    log.info("%s on %s (%s on cached features, seed %d): %d train / %d test samples, %d steps", cfg.backbone,
             task.name, cfg.protocol, seed, len(train_tok), len(test_tok), cell.steps)
    from dataclasses import asdict

    res = train(model, train_tok, loop, optim, run_dir, config={"eval": asdict(cfg)}, desc=f"{task.name} seed {seed}",
                collate_fn=collate)
    arrays = predict_tokens(model, task, test_tok, cell.device, cfg.eval_batch_size)
    return arrays, {"seed": seed, "final_loss": res.final_loss, "train_wall_time_s": res.wall_time_s,
                    "n_train": len(train_tok), "run_dir": str(run_dir)}


def predict_tokens(model: HeadOnTokens, task: Any, ds: TokenDataset, device: Any,
                   batch_size: int) -> dict[str, np.ndarray]:
    """``task.predictions`` of ``model`` over a token dataset, concatenated (first axis = sample)."""
    from harness.eval_parts import concat_arrays, split_loader
    from harness.train_step import to_device

    model.eval()
    chunks = []
    with torch.no_grad():
        for batch in split_loader(ds, batch_size, 0):
            batch = to_device(batch, device)
            chunks.append(task.predictions(model.predict(batch["tokens"]), batch))
    return concat_arrays(chunks)


def _knn(task: Any, train_f: Any, train_tok: TokenDataset, test_f: Any, test_tok: TokenDataset,
         batch_size: int) -> dict[str, np.ndarray]:
    """DINO k-NN: votes of the training subset's pooled features for each test item, as the task's predictions."""
    from harness.eval_parts import concat_arrays, split_loader

    kind = "cls" if train_f.num_prefix > 0 else "mean"
    bank = train_f.pooled(kind)[train_tok.rows]
    labels = np.asarray(train_tok.targets[task.knn_target], np.int64)
    scores = torch.from_numpy(knn_scores(bank, labels, test_f.pooled(kind), _n_classes(task, labels)))
    chunks = []
    for s, batch in zip(range(0, len(test_tok), batch_size), split_loader(test_tok, batch_size, 0), strict=True):
        chunks.append(task.predictions(task.knn_pred(scores[s:s + batch_size]), batch))
    return concat_arrays(chunks)
