"""Pose baselines: what a constant prediction scores on a mesh task's metrics, for two choices of the constant.

The tables' trivial baseline (``Task.baseline_predictions``) predicts the element-wise mean of the training
ground truth in camera coordinates. For MPJPE and PVE (root joint subtracted, rotation kept) that is the right
constant. PA-MPJPE aligns every prediction to its ground truth by a similarity transform first, so the rotation no
longer matters, and averaging bodies or hands that face every way gives a shrunken, blurred shape: a constant made
for PA-MPJPE is the *Procrustes mean* of the training joints (generalised Procrustes analysis: align every training
pose to the running mean by a similarity transform, average, repeat; ``tasks.procrustes.procrustes_mean``, which
the harness's baseline of those metrics uses). This script scores both constants with the
task's own protocol and metric functions on the test split of a labeled frame set.

    .venv/bin/python docs/diagnostics/pose_baseline.py runs/study/data/body-lab
    .venv/bin/python docs/diagnostics/pose_baseline.py runs/study/data/hand-lab

The domain is read from the frame set (body: ``synth-body-mesh``'s 24 SMPL joints, pelvis subtracted; hand:
``synth-hand-mesh``'s 21 MANO joints, root subtracted, aligned with reflections allowed as FreiHAND's script does).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

PROTOCOL = {"body": "synth-smpl24-pelvis", "hand": "synth-mano21-root"}
REFLECTION = {"body": False, "hand": True}  # as the tasks align: synth-body-mesh without, FreiHAND's metrics with


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("frames", type=Path, help="a labeled frame set (cpcbench data synth ...)")
    a = ap.parse_args(argv)
    from humans.frames import FrameStore
    from tasks import metrics
    from tasks.procrustes import procrustes_mean
    from tasks.protocols import PROTOCOLS

    domain = json.loads((a.frames / "meta.json").read_text())["domain"]
    protocol = PROTOCOLS[PROTOCOL[domain]]
    store = FrameStore(a.frames)

    def joints(split: str) -> np.ndarray:
        return np.stack([store.load(int(i))["joints3d"] for i in store.indices(split)]).astype(np.float64)

    train, test = joints("train"), joints("test")
    out = {}
    for name, const in (("camera-frame mean (the tables' baseline)", train.mean(0)),
                        ("Procrustes mean", procrustes_mean(train)[0])):
        pred, gt = protocol.prepare(np.broadcast_to(const, test.shape).copy(), test)
        out[name] = {"mpjpe": float(np.mean(metrics.mpjpe(pred, gt))),
                     "pa_mpjpe": float(np.mean(metrics.pa_mpjpe(pred, gt, allow_reflection=REFLECTION[domain])))}
    print(f"{a.frames} ({domain}; {len(train)} training frames, {len(test)} test frames), mm:")
    for name, m in out.items():
        print(f"  {name:<42} MPJPE {m['mpjpe']:7.1f}   PA-MPJPE {m['pa_mpjpe']:7.1f}")
    return out


if __name__ == "__main__":
    main()
