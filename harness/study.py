"""The study of issue #16 (study v2), in one place: frame sets, pretraining runs, fine-tuning grid, probes, curves,
ablations. ``harness.reproduce`` turns it into ``cpcbench`` commands, stage by stage; nothing else holds its numbers.

The numbers the lead sets after measuring are the constants below (``BUDGET``, ``ARCH``, ``LOW``, ``FT_STEPS``,
``ABLATION_TASKS``, ``SEEDS_LOW``): change them here, and only here (the table specs in ``leaderboards/specs/`` name
``LOW`` as a number too; ``tests/test_reproduce.py`` checks that they agree).

Design (SPEC16): the pretraining people are never the labeled people (frame sets of different seeds); every
pretraining run gets the same FLOP budget and the same architecture options, and keeps snapshots at the same
fractions of its steps, so that learning curves of several methods share one FLOPs axis; the random-init
baseline (``scratch_spec()``) is that same architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import CpcbenchError

# ---------------------------------------------------------------------------------------------- the lead's numbers
#: pretraining compute of every run, FLOPs (``cpcbench pretrain --flops``)
BUDGET: float = 2e14
#: architecture options of every pretraining run (``--set KEY=VALUE`` of the pretraining config); the random-init
#: baseline is built with the same ones (``scratch_spec``)
ARCH: dict[str, int | str] = {"patch_size": 16, "stem": "patch"}
#: the pretraining recipe shared by every run (``--set``): batch 64 (larger products run nearer the matmul rate on
#: the CPU, most of all MAE's 4 visible tokens per image at 64 px / 16; the FLOP budget is what is matched)
RECIPE: tuple[str, ...] = ("loop.batch_size=64",)
#: every pretraining run checkpoints this often (steps), so a stopped stage resumes, losing at most this much; not
#: part of the recipe (it changes no result, and a run made without it is still the study's run)
CHECKPOINT_EVERY: int = 250
#: pretraining compute of each body CPC ablation run, as a share of ``BUDGET`` (a quarter) (four runs at the full budget
#: would cost more than the study's 6 hours); the ablation table compares them with the main recipe at the SAME
#: budget (the ``both`` ablation run), never with the full-budget ``cpc`` run
ABLATION_SHARE: float = 0.25
#: the low-label fraction of the training set (the regime where pretraining should matter: the positive control)
LOW: float = 0.05
#: fine-tuning steps (``cpcbench sweep --steps``) of a cell on the ``LOW`` fraction and on the full training set: a
#: schedule that grows with the labels (at batch 32: 200 steps are ~20 epochs of the 5 % body set, 400 steps ~2
#: epochs of the full one); more steps on the full set would cost the study's 6 hours (a cell is ~2 min per 400 steps)
FT_STEPS: tuple[int, int] = (200, 400)
#: the tasks the body CPC ablations are fine-tuned on (at ``LOW`` only: the regime where pretraining matters, and
#: the full set would double their cells)
ABLATION_TASKS: tuple[str, ...] = ("synth-body-2d", "synth-body-mesh")
#: seeds of every fine-tuning cell on the ``LOW`` fraction (the main grid's and the ablations'); ``SEEDS`` elsewhere.
#: The positive control is tested there, where seeds scatter most (hand PA-MPJPE from random init +-2.2 mm over 3
#: seeds: a minimum detectable difference of 6.5 mm); 5 seeds halve it (t over 4 degrees of freedom, sqrt(5/3)) at
#: ~50 s a cell
SEEDS_LOW: int = 5

# ---------------------------------------------------------------------------------------------- fixed by the design
IMG_SIZE = 64
SEEDS = 3
#: snapshots of every pretraining run, in percent of its steps (0: the random init)
SNAPSHOTS = "0,5%,10%,25%,50%"
ARCH_NAME = "vit_tiny"
RUN_TAG = "study"
#: render processes of a frame set (the data stage's parallelism)
RENDER_WORKERS = 2


@dataclass(frozen=True)
class FrameSet:
    """One rendered frame set (``cpcbench data synth``); ``None`` camera / sequence settings: the domain default."""

    name: str
    domain: str
    frames: int
    seed: int
    role: str  # pretrain | labeled
    cameras: int | None = None
    seq_len: int | None = None
    motions_per_subject: int = 1
    view: str | None = None

    def world(self) -> dict[str, int | str | None]:
        """Overrides of ``humans.world.make_config`` (and the ``data synth`` flags)."""
        return {"cameras": self.cameras, "seq_len": self.seq_len, "motions_per_subject": self.motions_per_subject,
                "view": self.view}

    def path(self, runs: Path) -> Path:
        return runs / "data" / self.name


#: The labeled hands are filmed from the front (``--view front``: palm or back towards the camera, fingers up
#: within 45 deg) and the pretraining hands from every side: with hands at every orientation no backbone learned
#: the hand tasks at the study's schedule (docs/study-v2.md section 7); the unlabeled set stays the broader one.
FRAME_SETS: tuple[FrameSet, ...] = (
    FrameSet("body-pre", "body", 25600, 100, "pretrain", cameras=4, seq_len=8),
    FrameSet("hand-pre", "hand", 25600, 100, "pretrain", cameras=4, seq_len=8),
    FrameSet("objects-pre", "objects", 25600, 100, "pretrain"),
    FrameSet("body-lab", "body", 8192, 11, "labeled", cameras=4, seq_len=2),
    FrameSet("hand-lab", "hand", 8192, 11, "labeled", cameras=4, seq_len=2, view="front"),
)


def frame_set(name: str) -> FrameSet:
    for fs in FRAME_SETS:
        if fs.name == name:
            return fs
    raise CpcbenchError(f"no frame set {name!r} in the study; it has {', '.join(f.name for f in FRAME_SETS)}")


def labeled_set(domain: str) -> FrameSet:
    """The labeled frame set the tasks and probes of ``domain`` read (``--data-root``)."""
    return frame_set(f"{domain}-lab")


#: probes that read another frame set than their domain's labeled one. Cross-pose pairs need a joint to move by more
#: than a 16 px patch between two frames of one camera: body-lab's 2-frame sequences (0.1 s) have no such query, so
#: ``probe-body-xpose`` is scored on body-pre's test split (8-frame sequences; 160 subjects that no pretraining saw:
#: pretraining reads the train split only). ``match`` trains nothing, so no labeled training split is needed.
PROBE_FRAMES: dict[str, str] = {"probe-body-xpose": "body-pre"}


def probe_set(task: str, domain: str) -> FrameSet:
    """The frame set ``task`` (a probe of ``domain``) is scored on."""
    return frame_set(PROBE_FRAMES[task]) if task in PROBE_FRAMES else labeled_set(domain)


#: body CPC ablations: name -> config overrides (the main ``cpc`` run is "both pairs, human-aware masking")
ABLATIONS: dict[str, tuple[str, ...]] = {"both": (), "crossview": ("data.pair_mix=1.0",),
                                         "crosspose": ("data.pair_mix=0.0",), "uniform": ("cpc.mask_strategy=uniform",)}


@dataclass(frozen=True)
class Pretraining:
    """One pretraining run: ``cpcbench pretrain DOMAIN --method METHOD --data <frames>`` under the study's budget,
    architecture and snapshots, plus ``overrides`` (ablations)."""

    domain: str
    method: str
    frames: str  # a FrameSet name
    ablation: str = ""
    overrides: tuple[str, ...] = ()

    def out(self, runs: Path) -> Path:
        """Main runs where ``resolve_backbone(method)`` finds them; ablations apart (reached by path, not by name)."""
        if self.ablation:
            return runs / "ablations" / f"{self.domain}-{self.method}-{self.ablation}"
        return runs / "pretrain" / f"{self.domain}-{self.method}-{ARCH_NAME}-{RUN_TAG}"

    def backbone(self, runs: Path) -> Path:
        return self.out(runs) / "backbone.safetensors"

    @property
    def budget(self) -> float:
        """FLOPs of the run: ``BUDGET``, or ``ABLATION_SHARE`` of it for an ablation."""
        return BUDGET * ABLATION_SHARE if self.ablation else BUDGET

    def settings(self) -> tuple[str, ...]:
        """Every ``--set`` of the run: the study's architecture, then the run's own overrides."""
        return (*arch_overrides(), *RECIPE, *self.overrides)


MAIN_METHODS = ("cpc", "mae", "dino")
PRETRAININGS: dict[str, tuple[Pretraining, ...]] = {
    "body": (*(Pretraining("body", m, "body-pre") for m in MAIN_METHODS),
             Pretraining("body", "supervised", "objects-pre")),  # once: its backbone serves every domain
    "hand": tuple(Pretraining("hand", m, "hand-pre") for m in MAIN_METHODS),
    "ablations": tuple(Pretraining("body", "cpc", "body-pre", name, o) for name, o in ABLATIONS.items()),
}
#: the methods whose every run draws a learning curve (``snapshots:RUN`` on ``CURVE_TASKS``)
CURVE_METHODS = ("cpc", "mae", "dino", "supervised")


def arch_overrides() -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in ARCH.items())


def scratch_spec() -> str:
    """The random-init baseline of the study's architecture: ``scratch,patch=16,stem=conv`` for ``ARCH``."""
    from harness.backbones import SCRATCH_KEYS

    by_field = {name: key for key, (name, _) in SCRATCH_KEYS.items()}
    unknown = [k for k in ARCH if k not in by_field]
    if unknown:
        raise CpcbenchError(f"study ARCH keys {unknown} have no scratch,key=value twin; use {', '.join(by_field)}")
    return ",".join(["scratch", *(f"{by_field[k]}={v}" for k, v in ARCH.items())])


# ---------------------------------------------------------------------------------------------- evaluation
MAIN_TASKS: dict[str, tuple[str, ...]] = {"body": ("synth-body-mesh", "synth-body-2d"),
                                          "hand": ("synth-hand-mesh", "synth-hand-gesture")}


def fractions() -> tuple[float, ...]:
    """The training-set fractions of the main fine-tuning grid: the low-label regime and the full set."""
    return (LOW, 1.0)


def schedule() -> tuple[tuple[float, int], ...]:
    """(fraction, fine-tuning steps) of the main grid, in ``fractions()`` order (``FT_STEPS``)."""
    return tuple(zip(fractions(), FT_STEPS, strict=True))


def seeds(fraction: float) -> int:
    """Seeds of a fine-tuning cell on ``fraction`` of the training set: ``SEEDS_LOW`` on ``LOW``, else ``SEEDS``."""
    return SEEDS_LOW if fraction == LOW else SEEDS


def ablation_schedule() -> tuple[tuple[float, int], ...]:
    """(fraction, steps) of the ablation cells: the low-label fraction only."""
    return schedule()[:1]


def main_backbones() -> tuple[str, ...]:
    """The backbones of the main grid and the probes (method names: the study's runs under ``<runs>/pretrain``)."""
    return (*CURVE_METHODS, scratch_spec())


#: frozen-feature probes (issue 15): task -> protocols, per domain; every main backbone, ``SEEDS`` seeds
PROBES: dict[str, dict[str, tuple[str, ...]]] = {
    "body": {"probe-body-facing": ("linear", "attentive", "knn"), "probe-body-depth": ("linear",),
             "probe-body-xview": ("match",), "probe-body-xpose": ("match",)},
    "hand": {"probe-hand-orient": ("linear", "attentive"), "probe-hand-artic": ("linear", "attentive")}}
#: the ablation runs' frozen features on the correspondence probes (what cross-view / cross-pose pairs should teach)
ABLATION_PROBES: dict[str, str] = {"probe-body-xview": "match", "probe-body-xpose": "match"}
#: learning curves: every snapshot of the body runs of ``CURVE_METHODS``, probed on these (task -> protocol)
CURVE_TASKS: dict[str, str] = {"probe-body-facing": "linear", "probe-body-xview": "match",
                               "probe-body-depth": "linear"}


def curve_runs() -> tuple[Pretraining, ...]:
    """The pretraining runs drawn as learning curves: the body (and supervised) runs of ``CURVE_METHODS``."""
    return tuple(p for p in PRETRAININGS["body"] if p.method in CURVE_METHODS)
