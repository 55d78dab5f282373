"""Write the fixed result records of the golden-file tests (``tests/golden/records/``).

Run ``python tests/golden/make_records.py`` to rebuild them; the output is deterministic (provenance
fields are fixed after ``harness.results.build_record``), so the committed JSON only changes when this file
or the record schema changes. The set covers what ``cpcbench tables`` must handle: one record with three
seeds and one record per seed (pooled), a seed measured twice (newest wins), a backbone with two seeds (no
significance test), two task versions, the linear protocol, data fractions, CPC ablation checkpoints
(pair mix, masking strategy) and a smoke (--limit) run that must never reach a table.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from harness.results import build_record, write_record  # noqa: E402

HERE = Path(__file__).resolve().parent
TASKS = {
    "synth-body-mesh": ("body", "synth-smpl24-pelvis", {"mpjpe": ("mm", False), "pa_mpjpe": ("mm", False),
                                                        "pve": ("mm", False)}),
    "synth-body-2d": ("body", "", {"pck05": ("%", True), "pck10": ("%", True)}),
    "synth-hand-mesh": ("hand", "synth-mano21-root", {"pa_mpjpe": ("mm", False), "f5": ("", True)}),
}
def pretrain_cfg(method: str, pair_mix: float = 0.5, mask: str = "human",
                 budget: float | None = None) -> dict[str, Any]:
    """The shape of a cpcbench checkpoint's sidecar config (harness.pretrain: the run config under "pretrain")."""
    run: dict[str, Any] = {"method": method, "data": {"pair_mix": pair_mix}, "cpc": {"mask_strategy": mask},
                           "mae": {"mask_strategy": "uniform"}}
    if budget is not None:
        run["flops_budget"] = budget
    return {"method": method, "domain": "body", "arch": "vit_tiny", "steps": 300, "pretrain": run}


PRETRAIN = {"cpc": pretrain_cfg("cpc"), "mae": pretrain_cfg("mae"), "dino": pretrain_cfg("dino"), "scratch": {}}
_counter = [0]


def record(task: str, backbone: str, seeds: list[int], values: dict[str, list[float]], *, version: str = "1",
           protocol: str = "finetune", fraction: float = 1.0, limit: int | None = None, method: str | None = None,
           sha: str | None = None, pretrain: dict[str, Any] | None = None, day: int = 1,
           steps: int = 10) -> dict[str, Any]:
    domain, tproto, metrics = TASKS[task]
    _counter[0] += 1
    n = _counter[0]
    method = method or backbone
    sha = sha if sha is not None else ("" if backbone == "scratch" else method.ljust(64, "0"))
    m = {}
    for name, per_seed in values.items():
        unit, hib = metrics[name]
        mean = sum(per_seed) / len(per_seed)
        std = (sum((v - mean) ** 2 for v in per_seed) / (len(per_seed) - 1)) ** 0.5 if len(per_seed) > 1 else None
        m[name] = {"mean": mean, "std": std, "stderr": 0.5, "per_seed": per_seed, "unit": unit,
                   "higher_is_better": hib}
    rec = build_record(
        task={"name": task, "version": version, "domain": domain, "protocol": tproto},
        backbone={"name": backbone, "arch": "vit_tiny", "weights": f"runs/{backbone}/final.safetensors",
                  "weights_sha256": sha, "pretrain": pretrain if pretrain is not None else PRETRAIN.get(method, {})},
        method=method, protocol=protocol, seeds=seeds, fraction=fraction, limit=limit, metrics=m, n_samples=64,
        config={"steps": steps, "batch_size": 32, "base_lr": 1e-3, "train_stats": "fraction",
                "defaults": {"steps": 10, "batch_size": 32, "base_lr": 1e-3}},
        wall_time_s=1.0, run_id=f"20261124T0{day}0000Z-{n:08d}")
    rec.update(created=f"2026-11-24T0{day}:00:00Z", git_commit="0" * 40, hardware={"cpu": "fixture", "cores": 2},
               versions={"python": "3.11", "cpcbench": "0.1.0"})
    return rec


def build() -> list[dict[str, Any]]:
    recs = [
        # body mesh: cpc one record with 3 seeds; mae one record per seed + seed 0 measured twice (newest wins)
        record("synth-body-mesh", "cpc", [0, 1, 2], {"mpjpe": [80.0, 81.0, 79.5], "pa_mpjpe": [50.0, 50.5, 49.8],
                                                     "pve": [95.0, 97.0, 93.0]}),
        record("synth-body-mesh", "mae", [0], {"mpjpe": [99.0], "pa_mpjpe": [60.0], "pve": [90.0]}, day=1),
        record("synth-body-mesh", "mae", [0], {"mpjpe": [88.0], "pa_mpjpe": [55.0], "pve": [96.0]}, day=2),
        record("synth-body-mesh", "mae", [1], {"mpjpe": [89.0], "pa_mpjpe": [56.1], "pve": [94.0]}),
        record("synth-body-mesh", "mae", [2], {"mpjpe": [87.5], "pa_mpjpe": [54.6], "pve": [99.0]}),
        record("synth-body-mesh", "dino", [0, 1], {"mpjpe": [85.0, 86.0], "pa_mpjpe": [53.0, 54.0],
                                                   "pve": [100.0, 101.0]}),
        record("synth-body-mesh", "scratch", [0, 1, 2], {"mpjpe": [120.0, 118.0, 125.0],
                                                         "pa_mpjpe": [70.0, 71.0, 69.0], "pve": [140.0, 138.0, 141.0]}),
        # body 2d: two task versions never share a column
        record("synth-body-2d", "cpc", [0, 1, 2], {"pck05": [61.0, 62.0, 60.5], "pck10": [80.0, 81.0, 79.0]}),
        record("synth-body-2d", "mae", [0, 1, 2], {"pck05": [58.0, 59.5, 57.0], "pck10": [80.5, 79.0, 81.5]}),
        record("synth-body-2d", "cpc", [0, 1, 2], {"pck05": [63.0, 64.0, 62.0], "pck10": [82.0, 83.0, 81.0]},
               version="2"),
        # linear protocol: its own main table
        record("synth-body-mesh", "mae", [0, 1, 2], {"mpjpe": [130.0, 131.0, 129.0], "pa_mpjpe": [80.0, 81.0, 79.0],
                                                     "pve": [150.0, 151.0, 149.0]}, protocol="linear"),
        # hand
        record("synth-hand-mesh", "cpc", [0, 1, 2], {"pa_mpjpe": [12.0, 12.5, 11.8], "f5": [0.41, 0.43, 0.40]}),
        record("synth-hand-mesh", "mae", [0, 1, 2], {"pa_mpjpe": [13.5, 13.9, 13.1], "f5": [0.38, 0.37, 0.39]}),
        record("synth-hand-mesh", "scratch", [0, 1, 2], {"pa_mpjpe": [20.0, 21.0, 19.5], "f5": [0.2, 0.21, 0.19]}),
        # another fine-tuning schedule: its own column, never pooled with the default schedule
        record("synth-hand-mesh", "mae", [0, 1, 2], {"pa_mpjpe": [12.9, 13.0, 12.8], "f5": [0.40, 0.41, 0.40]},
               steps=50),
        # smoke run: never in a table
        record("synth-hand-mesh", "cpc", [0], {"pa_mpjpe": [1.0], "f5": [0.99]}, limit=8),
        # data efficiency
        record("synth-body-mesh", "cpc", [0, 1, 2], {"mpjpe": [95.0, 96.0, 94.0], "pa_mpjpe": [58.0, 58.5, 57.5],
                                                     "pve": [110.0, 111.0, 109.0]}, fraction=0.5),
        record("synth-body-mesh", "cpc", [0, 1, 2], {"mpjpe": [120.0, 122.0, 119.0], "pa_mpjpe": [66.0, 67.0, 65.0],
                                                     "pve": [130.0, 133.0, 128.0]}, fraction=0.1),
        record("synth-body-mesh", "mae", [0, 1, 2], {"mpjpe": [101.0, 103.0, 100.0], "pa_mpjpe": [61.0, 62.0, 60.5],
                                                     "pve": [115.0, 117.0, 114.0]}, fraction=0.5),
        record("synth-body-mesh", "mae", [0, 1, 2], {"mpjpe": [135.0, 131.0, 133.0], "pa_mpjpe": [72.0, 71.0, 73.0],
                                                     "pve": [150.0, 149.0, 151.0]}, fraction=0.1),
    ]
    # CPC ablations: checkpoints evaluated by path, told apart by their pretraining config, all at the study's
    # ablation budget (the main recipe among them) and its low-label fraction
    for i, (mix, mask, vals) in enumerate([(1.0, "human", [84.0, 85.0, 83.5]), (0.0, "human", [86.0, 85.5, 87.0]),
                                           (0.5, "uniform", [82.0, 83.0, 81.0]), (0.5, "human", [81.0, 80.0, 81.5])]):
        recs.append(record("synth-body-mesh", f"runs/cpc-ablation-{i}/final.safetensors", [0, 1, 2],
                           {"mpjpe": vals, "pa_mpjpe": [v - 30 for v in vals], "pve": [v + 15 for v in vals]},
                           method="cpc", sha=f"abl{i}".ljust(64, "f"), fraction=0.05,
                           pretrain=pretrain_cfg("cpc", mix, mask, budget=5e13)))
    return recs


def main() -> None:
    out = HERE / "records"
    shutil.rmtree(out, ignore_errors=True)
    for rec in build():
        write_record(rec, out)
    print(f"wrote the records under {out}")


if __name__ == "__main__":
    main()
