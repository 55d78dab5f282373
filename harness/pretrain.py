"""Pretraining runs: config -> data -> objective -> ``harness.train.train`` -> exported backbone + pictures.

A run directory ``<runs>/pretrain/<domain>-<method>-<arch>-<run_id>/`` (``<runs>`` = ``$CPCBENCH_RUNS`` or
``./runs``) ends up holding:

    backbone.safetensors (+ .json)  the encoder to fine-tune (what ``resolve_backbone("<method>", domain)`` finds)
    config.yaml                     the resolved PretrainConfig
    log.jsonl                       the loop's log: train loss and parts, lr, img/s, GFLOP/s; held-out evals
    curve.png                       train loss, held-out loss and the predict-the-patch-mean baseline
    reconstruction.png              (cpc, mae) masked input | reference | reconstruction | target
    checkpoints/                    resumable training state
    snapshots/step-000100.safetensors  (--snapshot-every / --snapshots) the backbone at those steps, each with
                                    pretrain.step / pretrain.flops in its sidecar (``harness.snapshots``)

Compute-matched runs: ``flops_budget`` (``--flops 2e14``) sets the steps to ``ceil(budget / flops_per_step)``, the
FLOPs of one global batch counted on the run's first batch before the schedule is built (``harness.flops``); the
budget is in config.yaml, ``flops_per_step`` in the sidecars and the summary, and a resumed run keeps the steps.

Held-out evaluation (every ``eval_every`` steps and at the end): the objective's loss on ``data.eval_items``
fixed items of the test split (fixed pairs, crops and masks), and for cpc/mae the loss of predicting each
hidden patch's mean, i.e. 0 in normalised-pixel units, whose value is ``((D-1)/D) * var/(var+1e-6)`` per
patch (D = 768): 0.9987 on textured patches and 0 on flat ones (``pretraining.patches``).

Default schedule (``PretrainConfig``): ViT-Tiny/16 at 128 px, batch 32, 300 steps. One CPC step (forward +
backward of 32 pairs) takes about 0.7-1 s on 2 CPU cores, so the run takes about 4-6 minutes plus data
generation; the LR is scaled up from the paper's 1.5e-4 per 256 (CroCo, MAE) to 1.5e-3 per 256 because a
300-step run needs larger steps than a 400-epoch one (``--preset paper`` restores the paper's values).
"""

from __future__ import annotations

import logging
import math
import time
import typing
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any

from core.config import to_dict, with_overrides
from core.errors import CpcbenchError
from harness.fast import uncompile
from harness.registries import METHODS
from harness.snapshots import Snapshotter, snapshot_steps
from harness.train import LoopConfig, OptimConfig
from pretraining import DEFAULT_METHOD
from pretraining.data import DataConfig

log = logging.getLogger("cpcbench.pretrain")
DOMAINS = ("body", "hand")


@dataclass(frozen=True)
class _RunFields:
    """One pretraining run. Defaults: the CPU run of ``cpcbench pretrain body`` (see module docstring).

    After ``data`` comes one section per registered method, named by it and parsed by its objective's
    ``config_cls`` (``cpc.mask_ratio``, ``dino.out_dim``, ...); ``objective_config()`` is the running method's.
    """

    domain: str = "body"
    method: str = DEFAULT_METHOD
    arch: str = "vit_tiny"
    img_size: int = 128
    pos_embed: str = "rope"  # rope (CroCo v2) | sincos (CroCo v1, MAE) | learned
    class_token: bool = True
    drop_path_rate: float = 0.0
    patch_size: int = 16
    stem: str = "patch"  # patch (ViT's linear patch projection) | conv (a convolutional stem, ViT_C)
    epochs: float = 0.0  # > 0: loop.steps = ceil(epochs * items / batch_size)
    warmup_epochs: float = 0.0  # > 0 (with epochs or flops_budget): optim.warmup_steps from epochs
    flops_budget: float = 0.0  # > 0: loop.steps = ceil(flops_budget / FLOPs of one step) (--flops; harness.flops)
    eval_every: int = 50
    run_id: str = ""  # "" = UTC time stamp
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(base_lr=1.5e-3, warmup_steps=30))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=300, batch_size=32, log_every=10))

    def objective_config(self) -> Any:
        """The section of the running method (an instance of its objective's ``config_cls``)."""
        METHODS.get(self.method)  # an unknown method names the registered ones
        return getattr(self, self.method)


def _with_sections(base: type) -> type:
    """``base``'s fields with one section per registered method after ``data``, typed and defaulted by the
    method's ``config_cls``: the sections a run's config.yaml holds."""
    hints = typing.get_type_hints(base)
    own = [(f.name, hints[f.name], field(default=f.default) if f.default is not MISSING
            else field(default_factory=f.default_factory)) for f in fields(base)]
    at = [name for name, *_ in own].index("data") + 1
    sections = [(name, cls.config_cls, field(default_factory=cls.config_cls)) for name, cls in METHODS.items()]
    return make_dataclass("PretrainConfig", [*own[:at], *sections, *own[at:]], frozen=True,
                          namespace={"__doc__": base.__doc__, "__module__": __name__,
                                     "objective_config": base.objective_config})


PretrainConfig = _with_sections(_RunFields)


def _presets() -> dict[str, dict[str, Any]]:
    """Named presets: dotted overrides applied before the user's --set/flags. An objective's own values for a
    preset (its ``presets``) join it under its section."""
    presets: dict[str, dict[str, Any]] = {
        "body": {"domain": "body"},
        "hand": {"domain": "hand", "data.max_gap": 6},
        # paper scale (CroCo / CroCo v2 recipe; protocols-and-formats D3): ViT-B/16 at 224 px, batch 512 (64 x 8
        # GPUs), 400 epochs with 40 warmup, blr 1.5e-4 (+ each objective's paper values). For GPUs.
        "paper": {"arch": "vit_base", "img_size": 224, "epochs": 400, "warmup_epochs": 40, "loop.batch_size": 512,
                  "loop.ckpt_every": 1000, "loop.num_workers": 8, "optim.base_lr": 1.5e-4,
                  "data.synth_frames": 200_000, "eval_every": 1000, "data.eval_items": 512},
    }
    for method, cls in METHODS.items():
        for preset, values in getattr(cls, "presets", {}).items():
            presets.setdefault(preset, {}).update({f"{method}.{k}": v for k, v in values.items()})
    return presets


PRESETS = _presets()


def build_config(domain: str = "body", presets: list[str] | tuple[str, ...] = (), overrides: list[str] = (),
                 **flags: Any) -> PretrainConfig:
    """Defaults, then the domain preset, then named presets, then ``key=value`` overrides, then CLI flags.

    What the command line gives beats what a preset implies: ``loop.steps`` or a ``flops_budget`` given there
    drops a preset's ``epochs`` (and ``warmup_epochs``, unless given too), ``optim.warmup_steps`` drops its
    ``warmup_epochs``; giving two of steps, epochs and a FLOP budget is refused. ``flops_budget`` may carry a unit
    (``--set flops_budget=200T``, ``harness.flops.parse_flops``).
    """
    from core.config import parse_override
    from harness.flops import parse_flops

    if domain not in DOMAINS:
        raise CpcbenchError(f"unknown pretraining domain {domain!r}; choose body or hand")
    cfg = with_overrides(PretrainConfig(), PRESETS[domain])
    for name in presets:
        if name not in PRESETS:
            raise CpcbenchError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        cfg = with_overrides(cfg, PRESETS[name])
    parsed = [(".".join(key), value) for key, value in map(parse_override, overrides)]
    overrides = [f"flops_budget={parse_flops(v, 'flops_budget')!r}" if k == "flops_budget" and isinstance(v, str)
                 else o for o, (k, v) in zip(overrides, parsed, strict=True)]
    cfg = with_overrides(cfg, list(overrides))
    flags = {k: v for k, v in flags.items() if v is not None}
    cfg = with_overrides(cfg, flags)
    given = {k for k, _ in parsed} | set(flags)
    if {"loop.steps", "epochs"} <= given and cfg.epochs > 0:
        raise CpcbenchError("give --steps or --epochs, not both: epochs set the number of steps")
    budget = "flops_budget" in given and cfg.flops_budget > 0
    if budget and {"loop.steps", "epochs"} & given:
        raise CpcbenchError("give --flops or --steps/--epochs, not both: a FLOP budget sets the number of steps")
    implied: dict[str, Any] = {}
    if ("loop.steps" in given or budget) and "epochs" not in given:
        implied["epochs"] = 0.0
    if (({"loop.steps", "optim.warmup_steps"} & given) or budget) and "warmup_epochs" not in given:
        implied["warmup_epochs"] = 0.0
    return with_overrides(cfg, implied) if implied else cfg


def validate(cfg: PretrainConfig) -> None:
    """Refuse a schedule that trains nothing or cannot be run, before anything is built, rendered or written."""
    from harness.train import check_loop

    check_loop(cfg.loop)
    checks = [(cfg.epochs >= 0, f"epochs must be >= 0 (0: loop.steps sets the schedule), got {cfg.epochs}"),
              (cfg.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {cfg.warmup_epochs}"),
              (cfg.warmup_epochs == 0 or cfg.epochs > 0 or cfg.flops_budget > 0,
               "warmup_epochs needs epochs > 0 or a FLOP budget; with --steps set optim.warmup_steps instead"),
              (math.isfinite(cfg.flops_budget) and cfg.flops_budget >= 0,
               f"flops_budget must be >= 0 (0: loop.steps sets the schedule), got {cfg.flops_budget}"),
              (cfg.flops_budget == 0 or cfg.epochs == 0,
               "give a FLOP budget (--flops) or epochs, not both: each sets the number of steps"),
              (cfg.optim.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {cfg.optim.warmup_steps}"),
              (cfg.img_size > 0, f"image size must be positive, got {cfg.img_size}"),
              (cfg.eval_every >= 0, f"eval_every must be >= 0 (0: no held-out evaluation), got {cfg.eval_every}"),
              (cfg.data.eval_items >= 0, f"data.eval_items must be >= 0, got {cfg.data.eval_items}"),
              (cfg.data.synth_frames >= 1, f"data.synth_frames must be positive, got {cfg.data.synth_frames}")]
    for ok, message in checks:
        if not ok:
            raise CpcbenchError(message)


def check_render(cfg: PretrainConfig, confirmed: bool) -> str | None:
    """When the run must first render its synthetic frames: refuse a large render that no explicit frame count
    (``--frames``) confirmed, or one the disk cannot hold; else a line that states the render's estimate."""
    from humans.frames import check_disk, estimate_render
    from humans.world import default_dir, is_complete, make_config

    dc = cfg.data
    if dc.source != "synth":
        return None
    domain = METHODS.get(cfg.method).batch_needs.frames_domain(cfg.domain)
    world = make_config(domain, dc.synth_frames, cfg.img_size, dc.synth_seed)
    root = default_dir(domain, cfg.img_size, dc.synth_seed)
    if is_complete(root, world):
        return None
    est = estimate_render(domain, dc.synth_frames, cfg.img_size, dc.synth_workers)
    if est.large and not confirmed:
        raise CpcbenchError(f"this run would first render {est.describe()} into {root}. Train on frames you "
                            f"have with --data DIR, or confirm the render with --frames {dc.synth_frames} "
                            "(or fewer frames)")
    check_disk(est, root)
    return f"rendering {est.describe()} into {root} first"


# --- data ----------------------------------------------------------------------------------------------------
def build_datasets(cfg: PretrainConfig, patch_size: int) -> tuple[Any, Any, dict[str, Any]]:
    """(train dataset, held-out dataset or None, data info) as the running method's ``batch_needs`` ask, for a
    backbone of ``patch_size``."""
    from pretraining.objective import build_datasets as build

    return build(METHODS.get(cfg.method).batch_needs, cfg.objective_config(), cfg.data, cfg.domain, cfg.img_size,
                 cfg.loop.seed, patch_size)


def eval_batches(dataset: Any, n_items: int, batch_size: int, collate: Any = None) -> list[dict[str, Any]]:
    """Fixed held-out batches: the first items of epoch 0 (their crops, pairs and mask draws are fixed by the
    data set's seed), so every evaluation of a run sees the same pairs and masks. ``collate``: None for torch's
    default collation."""
    from torch.utils.data import default_collate

    collate = collate or default_collate
    n = min(n_items, len(dataset))
    return [collate([dataset[i] for i in range(s, min(n, s + batch_size))]) for s in range(0, n, batch_size)]


def make_eval_fn(batches: list[dict[str, Any]]) -> Any:
    """``eval_fn(model, step)`` of the loop: mean held-out loss (+ the patch-mean baseline, + the mean of each
    ``loss_<part>`` output over the items the objective's ``part_counts(batch)`` says it averages)."""
    import torch

    def eval_fn(model: Any, step: int) -> dict[str, float]:
        dev = next(model.parameters()).device
        tot, base, n = 0.0, 0.0, 0
        kinds: dict[str, list[float]] = {}
        for batch in batches:
            b = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            out = model(b)
            m = len(next(v for v in b.values() if isinstance(v, torch.Tensor)))
            tot += float(out["loss"]) * m
            n += m
            if hasattr(model, "baseline_loss"):
                base += float(model.baseline_loss(b).sum())
            counts = model.part_counts(b) if hasattr(model, "part_counts") else {}
            for name, count in counts.items():
                if f"loss_{name}" in out:
                    kinds.setdefault(name, []).extend([float(out[f"loss_{name}"])] * count)
        res = {"heldout_loss": tot / max(n, 1)}
        if hasattr(model, "baseline_loss"):
            res["heldout_baseline"] = base / max(n, 1)
        for name, vals in kinds.items():
            res[f"heldout_loss_{name}"] = sum(vals) / len(vals)
        return res

    return eval_fn


# --- run -----------------------------------------------------------------------------------------------------
def run_dir_for(cfg: PretrainConfig, out: str | Path | None, resume: bool) -> Path:
    from harness.backbones import runs_root

    if out:
        return Path(out)
    base = runs_root().absolute() / "pretrain"
    prefix = f"{cfg.domain}-{cfg.method}-{cfg.arch}-"
    if resume:
        unfinished = [p for p in base.glob(prefix + "*") if (p / "checkpoints" / "latest.json").is_file()
                      and not (p / "backbone.safetensors").is_file()]
        if not unfinished:
            raise CpcbenchError(f"--resume: no unfinished {prefix}* run under {base}; pass --out RUN_DIR")
        return max(unfinished, key=lambda p: p.stat().st_mtime)
    return base / (prefix + (cfg.run_id or time.strftime("%Y%m%d-%H%M%S", time.gmtime())))


def pretrain(cfg: PretrainConfig, out: str | Path | None = None, resume: bool = False,
             confirm_frames: bool = False, snapshot_every: int = 0,
             snapshots: Sequence[int] = ()) -> dict[str, Any]:
    """Run one pretraining job; returns a summary (run_dir, backbone path, losses, throughput).

    The run is a function of ``cfg`` (and its ``loop.seed``) on the CPU: the backbone and the objective's own
    modules (decoder, heads, DINO's teacher) are drawn from the seed, data order and augmentation are keyed by
    it. Settings that would train nothing are refused before anything is written; ``resume`` needs a
    checkpoint; the backbone is exported only after at least one step. ``confirm_frames``: the synthetic frame
    count was given explicitly, so a large render may start. ``snapshot_every`` / ``snapshots``: keep the backbone
    every N steps / at these steps in ``<run>/snapshots/`` (``harness.snapshots``; pass them again on resume).
    Under ``torchrun`` rank 0 renders, logs and writes; every rank returns the summary; call
    ``harness.distributed.destroy()`` when done.
    """
    from core.checkpoints import latest_train_state, save_weights
    from core.config import save_yaml
    from harness.distributed import all_gather_object, barrier, init_distributed
    from harness.flops import budget_schedule
    from harness.registries import BACKBONES
    from harness.runtime import get_device, seed_everything
    from harness.train import preserved_rng, train

    validate(cfg)
    if cfg.epochs == 0 and cfg.flops_budget == 0:  # else the steps are known once the data (a step's FLOPs) are
        snapshot_steps(snapshot_every, snapshots, cfg.loop.steps)
    if resume and out is not None and latest_train_state(out) is None:
        raise CpcbenchError(f"--resume: {out} holds no training checkpoint, so there is nothing to resume; drop "
                            "--resume to start a new run there")
    method_cls = METHODS.get(cfg.method)
    needs = method_cls.batch_needs
    if hasattr(method_cls, "validate_config"):  # fail before generating or reading any data
        try:
            method_cls.validate_config(cfg.objective_config())
        except ValueError as e:
            raise CpcbenchError(f"bad {cfg.method} settings: {e}") from None
    render_note = check_render(cfg, confirm_frames)
    try:
        dist = init_distributed(get_device(cfg.loop.device).type)
    except (RuntimeError, ValueError) as e:
        raise CpcbenchError(str(e)) from None
    main = dist.is_main
    seed_everything(cfg.loop.seed)  # every rank draws the same initial weights
    try:
        backbone = BACKBONES.get(cfg.arch)(img_size=cfg.img_size, pos_embed=cfg.pos_embed,
                                           class_token=cfg.class_token, drop_path_rate=cfg.drop_path_rate,
                                           patch_size=cfg.patch_size, stem=cfg.stem)
    except ValueError as e:
        raise CpcbenchError(f"cannot build the {cfg.arch} backbone: {e}") from None
    with preserved_rng():  # rendering or reading data moves no RNG the objective's initial weights come from
        if main and render_note:
            log.info(render_note)
        if not main:
            barrier()  # rank 0 renders the synthetic frames (if they are missing) while the others wait
        train_ds, held_ds, data_info = build_datasets(cfg, backbone.patch_size)
        if main:
            barrier()
    try:
        model = method_cls(backbone, cfg.objective_config(), data_info=data_info)
    except ValueError as e:
        raise CpcbenchError(f"cannot build the {cfg.method} objective: {e}") from None
    over = {}
    if cfg.epochs > 0:
        over["loop.steps"] = max(1, math.ceil(cfg.epochs * len(train_ds) / cfg.loop.batch_size))
    if cfg.warmup_epochs > 0:
        over["optim.warmup_steps"] = math.ceil(cfg.warmup_epochs * len(train_ds) / cfg.loop.batch_size)
    cfg = with_overrides(cfg, over) if over else cfg
    run_dir = Path(all_gather_object(str(run_dir_for(cfg, out, resume)))[0])  # rank 0's time stamp names it
    budget = {}
    if cfg.flops_budget > 0:  # the steps from the FLOPs of one step, before the schedule (train) is built
        cfg, per_step = budget_schedule(cfg, model, train_ds, needs.collate, run_dir, resume, dist)  # harness.flops
        budget = {"flops_per_step": per_step}
    snap_steps = snapshot_steps(snapshot_every, snapshots, cfg.loop.steps)
    sidecar = {"method": cfg.method, "domain": cfg.domain, "arch": cfg.arch, "img_size": cfg.img_size,
               "pos_embed": cfg.pos_embed, "steps": cfg.loop.steps, **budget, "data": data_info,
               "backbone": backbone.config_dict(), "pretrain": to_dict(cfg)}
    batches = (eval_batches(held_ds, cfg.data.eval_items, cfg.loop.batch_size, needs.collate)
               if held_ds is not None and main else [])
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / "config.yaml")
        log.info("pretraining %s on %s (%d items) for %d steps -> %s", cfg.method, data_info.get("source"),
                 len(train_ds), cfg.loop.steps, run_dir)
    snaps = (Snapshotter(run_dir, snap_steps, _backbone_state, sidecar, dist.rank, method=cfg.method,
                         domain=cfg.domain, arch=cfg.arch) if snap_steps else None)
    result = train(model, train_ds, cfg.loop, cfg.optim, run_dir, resume=resume, config=sidecar,
                   collate_fn=needs.collate, desc=f"pretrain {cfg.domain} {cfg.method}",
                   eval_fn=make_eval_fn(batches) if batches else None, eval_every=cfg.eval_every, snapshots=snaps,
                   flops_per_step=budget.get("flops_per_step", 0.0))
    if result.steps < 1 or not math.isfinite(result.final_loss):
        raise CpcbenchError(f"the run in {run_dir} trained no step (final loss {result.final_loss}): no backbone "
                            "exported")
    model = uncompile(model).cpu().eval()  # pictures and export: eager (other shapes would compile anew)
    exported = model.export_backbone() if hasattr(model, "export_backbone") else model.backbone
    last_eval = result.evals[-1] if result.evals else {}
    speeds = [h["img_per_s"] for h in result.history[1:]] or [h["img_per_s"] for h in result.history]
    summary = {"run_dir": str(run_dir), "backbone": str(run_dir / "backbone.safetensors"), "method": cfg.method,
               "domain": cfg.domain, "arch": cfg.arch, "steps": result.steps, "final_loss": result.final_loss,
               "wall_time_s": result.wall_time_s, "img_per_s": sum(speeds) / max(len(speeds), 1),
               "flops_per_step": result.flops_per_step, **last_eval}
    flops = result.flops_per_step * result.steps if result.flops_per_step > 0 else None
    if cfg.flops_budget > 0:
        summary.update(flops_budget=cfg.flops_budget, flops=flops)
    if result.compile:
        summary["compile"] = result.compile
    if main:
        save_weights(run_dir / "backbone.safetensors", exported.state_dict(),
                     {**sidecar, "step": result.steps, "flops": flops, "run": run_dir.name},
                     **{k: v for k, v in summary.items() if k not in ("backbone", "run_dir")})
        write_curve(result.history, run_dir / "curve.png", f"{cfg.domain} {cfg.method} {cfg.arch}")
        if hasattr(model, "reconstruct") and batches:
            write_reconstruction(model, batches[0], run_dir / "reconstruction.png")
    barrier()  # the backbone is on disk before any rank returns
    return summary


def _backbone_state(model: Any) -> dict[str, Any]:
    """The state dict of the encoder a run exports (``export_backbone()``, e.g. DINO's teacher, else ``.backbone``)."""
    return (model.export_backbone() if hasattr(model, "export_backbone") else model.backbone).state_dict()


# --- pictures ------------------------------------------------------------------------------------------------
def _to_rgb(img: Any) -> Any:
    """[3, H, W] ImageNet-normalised tensor -> [H, W, 3] numpy in [0, 1]."""
    import torch

    from humans.frames import IMAGENET_MEAN, IMAGENET_STD

    x = img.float().cpu() * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def write_reconstruction(model: Any, batch: dict[str, Any], path: Path, rows: int = 4) -> None:
    """A grid: one row per item; columns = the objective's pictures (masked input, reference, reconstruction,
    target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.io import atomic_write

    small = {k: v[:rows] for k, v in batch.items()}
    pics = model.reconstruct(small)
    n = len(next(iter(pics.values())))
    fig, axes = plt.subplots(n, len(pics), figsize=(2.2 * len(pics), 2.2 * n), squeeze=False)
    for r in range(n):
        for c, (name, imgs) in enumerate(pics.items()):
            ax = axes[r][c]
            ax.imshow(_to_rgb(imgs[r]))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=80, format="png"))
    plt.close(fig)


def write_curve(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Train loss, held-out loss and the patch-mean baseline against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.io import atomic_write

    if not history:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train loss")
    ev = [h for h in history if "eval" in h]
    if ev:
        ax.plot([h["step"] for h in ev], [h["eval"]["heldout_loss"] for h in ev], "o-", label="held-out loss")
        if "heldout_baseline" in ev[0]["eval"]:
            ax.plot([h["step"] for h in ev], [h["eval"]["heldout_baseline"] for h in ev], "--",
                    label="predict patch mean")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=90, format="png"))
    plt.close(fig)
