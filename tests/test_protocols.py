"""Protocols as data: joint sets, index maps, roots, units, and ``Protocol.prepare`` / ``evaluate_joints``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.errors import CpcbenchError
from tasks import metrics as M
from tasks import protocols as P


def test_joint_set_sizes_and_unique_names():
    sizes = {"smpl24": 24, "h36m17": 17, "lsp14": 14, "spin24": 24, "coco17": 17, "mpi_inf_3dhp17": 17,
             "mano16": 16, "mano21": 21, "freihand21": 21}
    for name, n in sizes.items():
        names = P.JOINT_SETS[name]
        assert len(names) == n and len(set(names)) == n, name


def test_h36m_to_lsp14_names_match():
    mapped = [P.H36M_17[i] for i in P.H36M_TO_J14]
    # the H36M thorax plays LSP's neck; every other name is identical
    assert [("neck" if n == "thorax" else n) for n in mapped] == list(P.LSP_14)
    assert P.H36M_TO_J14 == (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
    assert [P.SPIN_GT_24[i] for i in P.J24_TO_J14][:12] == list(P.LSP_14[:12])
    assert P.SPIN_GT_24[P.J24_TO_J14[13]] == "head_h36m"
    # LSP hips are 2 (right) and 3 (left)
    assert P.LSP_14[2] == "right_hip" and P.LSP_14[3] == "left_hip"


def test_mano_to_freihand_order():
    assert [P.MANO_21[i] for i in P.MANO_TO_FREIHAND] == list(P.FREIHAND_21)
    assert sorted(P.MANO_TO_FREIHAND) == list(range(21))
    assert P.FREIHAND_21[:5] == ("wrist", "thumb1", "thumb2", "thumb3", "thumb4")
    j16 = np.arange(16 * 3, dtype=float).reshape(1, 16, 3)
    verts = np.zeros((1, 778, 3))
    for k, v in enumerate(P.MANO_TIP_VERTS):
        verts[0, v] = 1000 + k  # tip k = thumb, index, middle, ring, pinky
    j21 = P.mano_to_freihand(j16, verts)
    assert j21.shape == (1, 21, 3)
    assert j21[0, 4, 0] == 1000 and j21[0, 8, 0] == 1001 and j21[0, 20, 0] == 1004  # fingertips
    np.testing.assert_array_equal(j21[0, 1], j16[0, 13])  # thumb1 = MANO joint 13
    np.testing.assert_array_equal(j21[0, 5], j16[0, 1])  # index1 = MANO joint 1
    j21t = P.mano_to_freihand(torch.from_numpy(j16), torch.from_numpy(verts))
    np.testing.assert_array_equal(j21t.numpy(), j21)


def test_every_protocol_is_sourced_and_serialisable():
    required = {"3dpw-lsp14-h36m-pelvis", "3dpw-challenge-smpl24-root", "emdb-smpl24-hipmid", "h36m-p1",
                "h36m-p2", "freihand", "ho3d", "synth-smpl24-pelvis", "synth-mano21-root"}
    assert required <= set(P.PROTOCOLS)
    for name, proto in P.PROTOCOLS.items():
        assert proto.name == name and proto.source
        d = json.loads(json.dumps(proto.to_dict()))
        assert d["name"] == name
        assert proto.scale == 1000.0
    assert P.PROTOCOLS["freihand"].allow_reflection and not P.PROTOCOLS["emdb-smpl24-hipmid"].allow_reflection
    assert P.PROTOCOLS["emdb-smpl24-hipmid"].root_indices() == (1, 2)
    assert P.PROTOCOLS["3dpw-challenge-smpl24-root"].root_indices() == (0,)
    assert P.PROTOCOLS["3dpw-lsp14-h36m-pelvis"].root_indices() == (0,)
    assert P.PROTOCOLS["freihand"].root_indices() is None


def test_invalid_protocols_raise():
    with pytest.raises(CpcbenchError, match="joint set"):
        P.Protocol(name="x", joint_set="smpl25", root=None, procrustes=None)
    with pytest.raises(CpcbenchError, match="procrustes"):
        P.Protocol(name="x", joint_set="smpl24", root=None, procrustes="mirror")  # type: ignore[arg-type]
    with pytest.raises(CpcbenchError, match="root"):
        P.Protocol(name="x", joint_set="smpl24", root="h36m-pelvis", procrustes=None)
    with pytest.raises(CpcbenchError, match="out of range"):
        P.Protocol(name="x", joint_set="smpl24", root=(24,), procrustes=None)
    with pytest.raises(CpcbenchError, match="unit"):
        P.Protocol(name="x", joint_set="smpl24", root=None, procrustes=None, units_out="inch")
    with pytest.raises(CpcbenchError, match="Did you mean"):
        P.get_protocol("h36m-p3")


def test_prepare_roots_before_selecting():
    """SPIN: the H36M pelvis (joint 0) is subtracted on all 17 joints, then 14 are kept; metres -> mm."""
    rng = np.random.default_rng(0)
    proto = P.PROTOCOLS["3dpw-lsp14-h36m-pelvis"]
    gt = rng.normal(size=(3, 17, 3))
    pred = gt + rng.normal(size=(3, 1, 3))  # translated only
    p, g = proto.prepare(pred, gt)
    assert p.shape == (3, 14, 3)
    np.testing.assert_allclose(p, g, atol=1e-9)
    np.testing.assert_allclose(g, 1000 * (gt - gt[:, :1])[:, list(P.H36M_TO_J14)])
    pt, gtt = proto.prepare(torch.from_numpy(pred), torch.from_numpy(gt))
    np.testing.assert_allclose(gtt.numpy(), g)
    with pytest.raises(CpcbenchError, match="h36m17"):
        proto.prepare(gt[:, :14], gt[:, :14])


def test_hip_midpoint_root_and_evaluate_joints():
    rng = np.random.default_rng(1)
    proto = P.PROTOCOLS["emdb-smpl24-hipmid"]
    gt = rng.normal(size=(4, 24, 3))
    pred = gt + 0.01 * rng.normal(size=gt.shape)
    out = proto.evaluate_joints(pred, gt)
    np.testing.assert_allclose(out["mpjpe"], 1000 * M.mpjpe(pred, gt, root=[1, 2]))
    np.testing.assert_allclose(out["pa_mpjpe"], 1000 * M.pa_mpjpe(pred, gt))
    assert P.unit_scale("m", "cm") == pytest.approx(100.0)
    assert P.joint_index("smpl24", "left_hip") == 1
