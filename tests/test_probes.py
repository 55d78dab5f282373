"""The trained probes of tasks/probes.py and tasks/probe_depth.py: labels of hand-made cases, heads trained on
constructed features that encode the answer (~0 error) or nothing (chance / the mean), baselines, and labels that vary
on a tiny rendered frame set. The correspondence probes: test_probe_match.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from harness.registries import TASKS
from tasks.metrics import angle_diff, facing_yaw
from tasks.probe_depth import depth_order, patch_depth, relative_depth
from tasks.probes import finger_curl, geodesic_deg, yaw_bin
from tasks.synth_data import depth_map

FACE_CAMERA = Rotation.from_rotvec([np.pi, 0, 0])  # SMPL (y up, front +z) seen upright by an OpenCV camera
UP = np.array([0.0, -1.0, 0.0])  # the camera's up axis (its y axis points down)


def turned(deg: float) -> np.ndarray:
    """Root rotation of an upright body facing the camera, then turned by ``deg`` about the camera's up axis."""
    return (Rotation.from_rotvec(np.radians(deg) * UP) * FACE_CAMERA).as_matrix()


# ---------------------------------------------------------------------------------------------- labels
@pytest.mark.parametrize("deg", [0.0, 30.0, 90.0, -90.0, 135.0, 180.0, -170.0])
def test_facing_yaw_of_turned_bodies(deg: float) -> None:
    assert angle_diff(facing_yaw(turned(deg)), deg) < 1e-6
    f = turned(deg)[:, 2]  # the chest's direction in the camera frame
    if deg == 0.0:
        np.testing.assert_allclose(f, [0, 0, -1], atol=1e-9)  # towards the camera
    if deg == 90.0:
        np.testing.assert_allclose(f, [1, 0, 0], atol=1e-9)  # towards the image's right


def test_facing_yaw_ignores_tilt_and_matches_the_joints(synth_body: Path) -> None:
    tilt = Rotation.from_rotvec([0.3, 0, 0]).as_matrix()  # a camera looking down 17 deg: the elevation is dropped
    for deg in (0.0, 90.0, 180.0, -90.0):
        assert angle_diff(facing_yaw(tilt @ turned(deg)), deg) < 1e-6
    assert angle_diff(facing_yaw(tilt @ turned(60.0)), 60.0) < 2
    # rendered frames: the root-orientation yaw agrees with the normal of the hips-neck plane of the 3D joints
    task = TASKS.get("probe-body-facing")(synth_body)
    raw = task.arrays("train", 64)
    from tasks.synth_data import load_frames

    j = load_frames(synth_body, "train", 64, ("joints3d",))["joints3d"]
    front = np.cross(j[:, 1] - j[:, 2], j[:, 12] - j[:, 0])
    from_joints = np.degrees(np.arctan2(front[:, 0], -front[:, 2]))
    from_label = np.degrees(np.arctan2(raw["facing"][:, 1], raw["facing"][:, 0]))
    assert np.median(angle_diff(from_joints, from_label)) < 10


def test_body_mesh_scores_the_facing_of_its_root_rotation(synth_body: Path) -> None:
    """synth-body-mesh v2: facing_err = the wrapped yaw difference of the root rotations, facing45 = % within 45 deg
    (above 50 <=> median below 45); predictions without the root rotations are refused, not scored as 0."""
    from core.errors import DataError
    from tasks.metrics import facing_error

    gt = np.stack([turned(d) for d in (0.0, 90.0, 170.0, -60.0)])
    pred = np.stack([turned(d) for d in (30.0, 180.0, -170.0, 120.0)])
    np.testing.assert_allclose(facing_error(pred, gt), [30.0, 90.0, 20.0, 180.0], atol=1e-6)
    task = TASKS.get("synth-body-mesh")(synth_body)
    j, v = np.zeros((4, 24, 3)), np.zeros((4, 50, 3))
    a = {"pred/joints3d": j, "gt/joints3d": j, "pred/verts": v, "gt/verts": v}
    s = task.score_arrays({**a, "pred/root_rot": pred, "gt/root_rot": gt})
    np.testing.assert_allclose(s["facing_err"], [30.0, 90.0, 20.0, 180.0], atol=1e-6)
    np.testing.assert_array_equal(s["facing45"], [100.0, 0.0, 100.0, 0.0])
    with pytest.raises(DataError, match="root_rot"):
        task.score_arrays(a)


@pytest.mark.parametrize("deg, b", [(0, 0), (22.4, 0), (22.6, 1), (90, 2), (-90, 6), (180, 4), (-180, 4),
                                    (-22.6, 7), (-22.4, 0), (157.6, 4)])
def test_yaw_bins(deg: float, b: int) -> None:
    assert yaw_bin(np.array([deg]))[0] == b


def test_angle_wrap_and_geodesic() -> None:
    assert angle_diff(170.0, -170.0) == pytest.approx(20.0) and angle_diff(-90, 90) == pytest.approx(180.0)
    r = Rotation.from_rotvec([0, 0, np.radians(30)]).as_matrix()
    assert geodesic_deg(r, np.eye(3)) == pytest.approx(30.0)
    assert geodesic_deg(np.eye(3), Rotation.from_rotvec([np.pi, 0, 0]).as_matrix()) == pytest.approx(180.0)
    assert geodesic_deg(2.0 * r, r) == pytest.approx(0.0, abs=1e-6)  # projected onto SO(3) first


def test_finger_curl_of_a_hand_made_pose() -> None:
    rot = np.tile(np.eye(3), (16, 1, 1))
    for j, deg in ((1, 20), (2, 30), (3, 10), (13, 45), (8, -40)):  # index 1-3, thumb 13, pinky 8
        rot[j] = Rotation.from_rotvec([0, 0, np.radians(deg)]).as_matrix()
    np.testing.assert_allclose(finger_curl(rot), [45, 60, 0, 0, 40], atol=1e-6)  # thumb index middle ring pinky


def test_depth_map_is_a_z_buffer() -> None:
    k = np.array([[10.0, 0, 2.0], [0, 10.0, 2.0], [0, 0, 1]])
    verts = np.array([[0, 0, 2.0], [0, 0, 3.0], [0.1, 0, 1.0], [5.0, 0, 1.0]])  # pixels (2, 2) twice, (3, 2), out
    d = depth_map(verts, k, 4)
    assert d[2, 2] == 2.0 and d[2, 3] == 1.0 and (d > 0).sum() == 2


def test_patch_depth_and_ordering_of_hand_made_maps() -> None:
    depth = np.zeros((1, 8, 8), np.float32)
    mask = np.zeros((1, 8, 8), np.uint8)
    depth[0, :4, :4], mask[0, :4, :4] = 3.0, 1  # patch (0, 0): all person, 3 m ...
    depth[0, 1, 1] = 2.5  # ... whose nearest pixel is 2.5 m
    depth[0, :4, 4:], mask[0, :4, 4:] = 2.0, 1
    depth[0, 4, 4], mask[0, 4, 4] = 2.02, 1  # 1 of 16 pixels: under the 10 % cover, not a person patch
    depth[0, 4:, :4], mask[0, 4:, :4] = 4.0, 1
    z, valid = patch_depth(torch.from_numpy(depth), torch.from_numpy(mask), (2, 2))
    np.testing.assert_allclose(z[0].numpy(), [[2.5, 2.0], [4.0, 0.0]])
    assert valid[0].tolist() == [[True, True], [True, False]]
    np.testing.assert_allclose(relative_depth(z, valid)[0].numpy(), [[0.0, -0.5], [1.5, 0.0]])
    zn, vn = z.numpy(), valid.numpy()
    assert depth_order(zn, zn, vn)[0] == 100.0 and depth_order(-zn, zn, vn)[0] == 0.0
    assert depth_order(np.zeros_like(zn), zn, vn)[0] == 50.0  # ties count half
    near = np.array([[[2.0, 2.03], [0.0, 0.0]]])  # 3 cm apart: no pair to order -> 50
    assert depth_order(-near, near, np.array([[[True, True], [False, False]]]))[0] == 50.0


# ---------------------------------------------------------------------------------------------- constructed features
def encode(v: np.ndarray, width: int = 32, rng: np.random.Generator | None = None) -> np.ndarray:
    """[..., k] values -> [..., width] features that hold them linearly after a LayerNorm: (v, r, -v, -r, 0...) with
    r = sqrt(M - |v|^2), so every vector has mean 0 and the same norm; tiny noise."""
    m = float((v ** 2).sum(-1).max()) + 1.0
    r = np.sqrt(m - (v ** 2).sum(-1, keepdims=True))
    f = np.concatenate([v, r, -v, -r], -1)
    out = np.zeros((*v.shape[:-1], width))
    out[..., :f.shape[-1]] = f
    if rng is not None:
        out += rng.normal(0, 1e-3, out.shape)
    return out.astype(np.float32)


def train_head(head: torch.nn.Module, task, x: torch.Tensor, batch: dict, steps: int = 300, lr: float = 3e-2):
    torch.manual_seed(0)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        loss = task.loss(head(x), batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    return head


def scores_of(task, head, x, batch) -> dict[str, float]:
    with torch.no_grad():
        arrays = task.predictions(head(x), batch)
    return {k: float(np.mean(v)) for k, v in task.score_arrays(arrays).items()}


def tokens_of(pooled: np.ndarray, n_patches: int = 4) -> torch.Tensor:
    """[N, C] -> [N, 1 + n_patches, C] tokens whose patch mean is ``pooled`` (a random CLS token in front)."""
    t = np.repeat(pooled[:, None], 1 + n_patches, 1)
    t[:, 0] = np.random.default_rng(1).normal(size=pooled.shape)
    return torch.from_numpy(t)


INFO = {"embed_dim": 32, "num_prefix_tokens": 1, "grid_size": (2, 2), "patch_size": 8, "img_size": 16}


def yaw_batch(n: int, seed: int) -> tuple[np.ndarray, dict]:
    yaw = np.random.default_rng(seed).uniform(-180, 180, n)
    r = np.radians(yaw)
    return yaw, {"facing": torch.tensor(np.stack([np.cos(r), np.sin(r)], -1), dtype=torch.float32),
                 "yaw_bin": torch.from_numpy(yaw_bin(yaw))}


def test_facing_probe_reads_encoded_yaw_and_not_noise() -> None:
    task = TASKS.get("probe-body-facing")()
    rng = np.random.default_rng(0)
    (ytr, btr), (yte, bte) = yaw_batch(400, 1), yaw_batch(800, 2)
    enc = lambda y: encode(np.stack([np.cos(np.radians(y)), np.sin(np.radians(y))], -1), rng=rng)  # noqa: E731
    head = train_head(task.build_head(INFO), task, tokens_of(enc(ytr)), btr)
    s = scores_of(task, head, tokens_of(enc(yte)), bte)
    assert s["yaw_err"] < 3 and s["yaw_acc8"] > 95
    # the attentive protocol's head: vector_head on one pooled vector
    vec = train_head(task.vector_head(32), task, torch.from_numpy(enc(ytr)), btr)
    assert scores_of(task, vec, torch.from_numpy(enc(yte)), bte)["yaw_err"] < 3
    head = train_head(task.build_head(INFO), task, tokens_of(rng.normal(size=(400, 32)).astype(np.float32)), btr)
    s = scores_of(task, head, tokens_of(rng.normal(size=(800, 32)).astype(np.float32)), bte)
    assert 6 < s["yaw_acc8"] < 20 and s["yaw_err"] > 60  # chance: 12.5 %, 90 deg


def test_facing_knn_votes_and_mean_baseline() -> None:
    task = TASKS.get("probe-body-facing")()
    assert task.knn_target == "yaw_bin" and task.n_classes() == 8 and "knn" in task.protocols
    logits = torch.zeros(3, 8)
    logits[0, 2], logits[1, 4], logits[2, 7] = 1, 1, 1
    pred = task.pred_arrays({"logits": logits})["pred/facing"]
    np.testing.assert_allclose(np.degrees(np.arctan2(pred[:, 1], pred[:, 0])), [90, 180, -45], atol=1e-4)
    _, b = yaw_batch(4, 3)
    gt = {"gt/facing": np.array([[1, 0], [0, 1], [0, 1], [0, 1]], np.float32)}
    base = task.baseline_predictions(gt, {"pred/facing": np.zeros((5, 2), np.float32)})["pred/facing"]
    assert base.shape == (5, 2) and np.allclose(base, [0.25, 0.75])  # the mean (cos, sin): mostly +90 deg


def test_hand_orient_probe_reads_encoded_rotation() -> None:
    task = TASKS.get("probe-hand-orient")()
    rng = np.random.default_rng(0)
    rots = [Rotation.random(n, random_state=s).as_matrix().astype(np.float32) for n, s in ((400, 1), (300, 2))]
    enc = [encode(r[:, :, :2].transpose(0, 2, 1).reshape(len(r), 6), rng=rng) for r in rots]  # the two columns
    b = [{"orient": torch.from_numpy(r)} for r in rots]
    head = train_head(task.build_head(INFO), task, tokens_of(enc[0]), b[0], steps=400)
    assert scores_of(task, head, tokens_of(enc[1]), b[1])["rot_err"] < 4
    vec = task.vector_head(32)
    out = vec(torch.zeros(2, 32))["rotmat"]  # zero output: the identity, a valid rotation
    assert torch.allclose(out, torch.eye(3).expand(2, 3, 3), atol=1e-2)
    base = task.baseline_predictions({"gt/orient": rots[0]}, {"pred/orient": rots[1]})["pred/orient"]
    assert np.allclose(base[0] @ base[0].T, np.eye(3), atol=1e-5) and np.isclose(np.linalg.det(base[0]), 1)


def test_hand_artic_probe_reads_encoded_curls_and_not_noise() -> None:
    task = TASKS.get("probe-hand-artic")()
    rng = np.random.default_rng(0)
    curls = [rng.uniform(0, 200, (n, 5)).astype(np.float32) for n in (400, 300)]
    b = [{"curl": torch.from_numpy(c)} for c in curls]
    head = train_head(task.build_head(INFO), task, tokens_of(encode(curls[0] / 100, rng=rng)), b[0], steps=400)
    assert scores_of(task, head, tokens_of(encode(curls[1] / 100, rng=rng)), b[1])["curl_err"] < 4
    noise = [rng.normal(size=(len(c), 32)).astype(np.float32) for c in curls]
    head = train_head(task.build_head(INFO), task, tokens_of(noise[0]), b[0], steps=400)
    mean_err = np.abs(curls[1] - curls[0].mean(0)).mean()  # the training-mean baseline: ~50 deg
    assert scores_of(task, head, tokens_of(noise[1]), b[1])["curl_err"] > 0.8 * mean_err


def depth_batch(n: int, seed: int, size: int = 16, grid: int = 4) -> tuple[dict, np.ndarray]:
    """Random per-patch depths on a person covering the middle 2 columns of patches (+ one background column)."""
    rng = np.random.default_rng(seed)
    p = size // grid
    zp = rng.uniform(2.0, 3.0, (n, grid, grid))
    depth = np.repeat(np.repeat(zp, p, 1), p, 2).astype(np.float32)
    mask = np.zeros_like(depth, dtype=np.uint8)
    mask[:, :, p:3 * p] = 1
    depth *= mask
    return {"depth": torch.from_numpy(depth), "mask": torch.from_numpy(mask)}, zp


def test_depth_probe_reads_encoded_depth_and_not_noise() -> None:
    task = TASKS.get("probe-body-depth")()
    info = {**INFO, "grid_size": (4, 4), "img_size": 16}
    rng = np.random.default_rng(0)
    (btr, ztr), (bte, zte) = depth_batch(200, 1), depth_batch(300, 2)

    def tokens(zp: np.ndarray) -> torch.Tensor:
        patches = encode((zp - 2.5).reshape(len(zp), 16, 1), rng=rng)
        return torch.from_numpy(np.concatenate([np.zeros((len(zp), 1, 32), np.float32), patches], 1))

    head = train_head(task.build_head(info), task, tokens(ztr), btr)
    assert scores_of(task, head, tokens(zte), bte)["depth_order"] > 97
    noise = lambda n: torch.from_numpy(rng.normal(size=(n, 17, 32)).astype(np.float32))  # noqa: E731
    head = train_head(task.build_head(info), task, noise(200), btr)
    assert 42 < scores_of(task, head, noise(300), bte)["depth_order"] < 58
    # baseline: per patch position, the mean relative depth of the training person patches (0 off the person)
    gt = task.ground_truth(btr)
    base = task.baseline_predictions(gt, {"pred/depth": np.zeros((3, 4, 4), np.float32)})["pred/depth"]
    assert base.shape == (3, 4, 4) and np.all(base[:, :, [0, 3]] == 0) and np.abs(base).max() < 0.3


# ---------------------------------------------------------------------------------------------- rendered frames
def test_labels_vary_on_rendered_frames(synth_body: Path, synth_hand: Path) -> None:
    """The world's own frames at 64 px (the conftest's tiny rendered sets): no probe target is constant."""
    facing = TASKS.get("probe-body-facing")(synth_body).arrays("train", 64)
    assert len(np.unique(facing["yaw_bin"])) >= 4
    depth = TASKS.get("probe-body-depth")(synth_body)
    a = depth.arrays("train", 64)
    covered = (a["depth"] > 0).sum((1, 2)) / a["mask"].sum((1, 2))
    assert covered.min() > 0.9  # the camera-frame vertices fall on the rendered person
    z_person = a["depth"][a["depth"] > 0]
    assert z_person.min() > 1.5 and z_person.max() < 7  # metres in front of the camera
    for patch in (8, 16):
        z, valid = patch_depth(torch.from_numpy(a["depth"]), torch.from_numpy(a["mask"]), (64 // patch,) * 2)
        rel = relative_depth(z, valid)[valid]
        assert rel.std() > 0.03 and valid.sum((1, 2)).min() >= 3
        assert (depth_order(rel.new_zeros(valid.shape).numpy(), z.numpy(), valid.numpy()) == 50).all()
    orient = TASKS.get("probe-hand-orient")(synth_hand).arrays("train", 64)["orient"]
    assert orient.reshape(len(orient), -1).std(0).min() > 0.1
    curl = TASKS.get("probe-hand-artic")(synth_hand).arrays("train", 64)["curl"]
    assert curl.std(0).min() > 5 and curl.min() >= 0
