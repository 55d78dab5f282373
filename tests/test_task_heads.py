"""The task heads (``tasks.heads``): rotation conversions, the mean rotation, soft-argmax and coarse upsampling,
and the mesh heads' start at the mean of the samples they train on."""

from __future__ import annotations

import math

import numpy as np
import torch
from task_kit import SIZE, info_of, tiny_backbone

from harness.registries import TASKS


def test_rotation_conversions_round_trip():
    from scipy.spatial.transform import Rotation

    from tasks.heads import rot6d_to_rotmat, rotmat_to_rot6d

    aa = torch.randn(200, 3, dtype=torch.float64) * 1.2
    aa[:3] = 0
    aa[3:6] = torch.nn.functional.normalize(torch.randn(3, 3, dtype=torch.float64), dim=-1) * math.pi
    r = torch.from_numpy(Rotation.from_rotvec(aa.numpy()).as_matrix())
    assert torch.allclose(rot6d_to_rotmat(rotmat_to_rot6d(r)), r, atol=1e-10)
    # any 6D vector maps to a proper rotation
    q = rot6d_to_rotmat(torch.randn(50, 6, dtype=torch.float64))
    assert torch.allclose(torch.det(q), torch.ones(50, dtype=q.dtype), atol=1e-10)


def test_mean_rotation():
    from scipy.spatial.transform import Rotation

    from tasks.heads import mean_rotation

    r0 = torch.from_numpy(Rotation.from_rotvec([0.3, -1.0, 2.0]).as_matrix())
    assert torch.allclose(mean_rotation(r0.expand(5, 3, 3)), r0, atol=1e-10)
    d = torch.from_numpy(Rotation.from_rotvec([[0, 0, 0.2], [0, 0, -0.2]]).as_matrix())
    assert torch.allclose(mean_rotation(r0 @ d), r0, atol=1e-10)  # symmetric perturbations average out


def test_soft_argmax_and_upsampling():
    from tasks.heads import coarse_upsampling, soft_argmax

    hm = torch.full((1, 2, 8, 8), -1e4)
    hm[0, 0, 2, 5] = 0  # row 2, column 5 -> x = (5 + 0.5) / 8 * 2 - 1
    hm[0, 1, 7, 0] = 0
    xy = soft_argmax(hm)[0]
    assert torch.allclose(xy, torch.tensor([[0.375, -0.375], [-0.875, 0.875]]), atol=1e-6)
    template = torch.rand(300, 3)
    ids, up = coarse_upsampling(template, 40)
    assert ids.unique().numel() == 40 and torch.allclose(up.sum(1), torch.ones(300))
    assert (up @ template[ids] - template).norm(dim=1).mean() < 0.15  # a smooth start near the template


def test_mesh_head_starts_at_mean_of_its_training_samples(frame_sets):
    """The model-based head's first estimate is the mean parameters of the samples it trains on (HMR's mean-pose
    start): with ``--fraction`` the subset's mean, never the full split's (that would leak unseen labels)."""
    from torch.utils.data import Subset

    from harness.evaluate import fraction_subset
    from tasks.heads import mean_rotation

    task = TASKS.get("synth-body-mesh")(frame_sets["body"])
    full = task.build_dataset("train", SIZE)
    a = task.arrays("train", SIZE)
    idx = fraction_subset(len(full), 0.25, seed=0)
    bb = tiny_backbone()
    for train, rows in ((full, slice(None)), (Subset(full, idx), idx)):
        head = task.build_head(info_of(bb), train=train)
        with torch.no_grad():
            head.head.out.weight.zero_()
            pred = head(bb.forward_features(torch.zeros(1, 3, SIZE, SIZE)))
        assert torch.allclose(pred["rotmat"][0], mean_rotation(torch.from_numpy(a["rotmat"][rows])), atol=1e-5)
        assert torch.allclose(pred["betas"][0], torch.from_numpy(a["betas"][rows].mean(0)), atol=1e-5)
    assert not np.allclose(a["betas"][idx].mean(0), a["betas"].mean(0), atol=1e-5)  # the subset tells them apart


def test_meshfree_head_starts_at_mean_mesh_of_its_training_samples(frame_sets):
    from torch.utils.data import Subset

    from harness.evaluate import fraction_subset

    task = TASKS.get("synth-body-meshfree")(frame_sets["body"])
    full = task.build_dataset("train", SIZE)
    idx = fraction_subset(len(full), 0.25, seed=1)
    verts = task.arrays("train", SIZE)["verts"]
    start = task.mean_mesh(None, Subset(full, idx))
    np.testing.assert_allclose(start.numpy(), verts[idx].mean(0), atol=1e-6)
    assert not np.allclose(start.numpy(), verts.mean(0), atol=1e-5)
