"""Every registered task with a tiny ViT on CPU: metadata, item schema, head shapes, finite loss with gradients,
scores of hand-computed cases, consistent synthetic targets and clear refusals of missing or stale data (records
written by a whole evaluation: test_task_eval.py; the heads: test_task_heads.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from task_kit import REAL, SIZE, TRAINED, first_batch, info_of, tiny_backbone

from core.errors import DataError
from harness.registries import TASKS


# ---------------------------------------------------------------------------------------------- per task
@pytest.mark.parametrize("name", TASKS.names())
def test_metadata(name):
    from tasks.base import Task

    cls = TASKS.get(name)
    assert issubclass(cls, Task) and cls.name == name and cls.version and cls.citation
    assert cls.metrics and len({m.name for m in cls.metrics}) == len(cls.metrics)
    assert cls.domain in ("body", "hand")
    info = cls.info()
    json.dumps(info)  # serialisable into a record
    assert info["protocol"] == (cls.protocol.name if cls.protocol else "")
    st = cls().data_status()
    assert st["data"] in ("found", "missing", "synthetic")


@pytest.mark.parametrize("name", TASKS.names())
def test_item_schema(name, task_of):
    task = task_of(name)
    for split in ("train", "test"):
        ds = task.build_dataset(split, SIZE, limit=3)
        assert 1 <= len(ds) <= 3
        item = ds[0]
        img = item["image"]
        assert img.dtype == torch.float32 and tuple(img.shape) == (3, SIZE, SIZE) and torch.isfinite(img).all()
        assert -3 < float(img.mean()) < 3  # normalised, not 0..255
        for k, v in item.items():
            assert isinstance(v, torch.Tensor), k
            if v.is_floating_point():
                assert torch.isfinite(v).all(), k


@pytest.mark.parametrize("name", TRAINED)
def test_head_loss_gradients_predictions(name, task_of):
    from harness.evaluate import TaskModel

    task = task_of(name)
    ds = task.build_dataset("train", SIZE, limit=2)
    torch.manual_seed(0)
    bb = tiny_backbone()
    model = TaskModel(bb, task.build_head(info_of(bb)), task, frozen=False)
    batch = first_batch(ds)
    b = len(batch["image"])
    pred = model.predict(batch["image"])
    assert all(v.shape[0] == b for v in pred.values() if isinstance(v, torch.Tensor) and v.ndim)
    out = task.loss(pred, batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    head_grads = [p.grad for p in model.head.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in head_grads)
    assert bb.blocks[-1].mlp.fc2.weight.grad is not None and bb.blocks[-1].mlp.fc2.weight.grad.abs().sum() > 0
    arrays = task.predictions({k: v.detach() for k, v in pred.items()}, batch)
    assert any(k.startswith("pred/") for k in arrays) and any(k.startswith("gt/") for k in arrays)
    assert all(len(v) == b for v in arrays.values())
    scores = task.score_arrays(arrays)
    assert sorted(scores) == sorted(m.name for m in task.metrics)
    assert all(np.asarray(v).shape == (b,) and np.isfinite(v).all() for v in scores.values())


def _ideal(spec) -> float:
    if not spec.higher_is_better:
        return 0.0
    return 100.0 if spec.unit == "%" else 1.0


@pytest.mark.parametrize("name", TRAINED)
def test_perfect_prediction_scores_ideal(name, task_of):
    """Every ``gt/<name>`` fed back as ``pred/<name>`` scores exactly the ideal value of every metric."""
    from harness.evaluate import TaskModel

    task = task_of(name)
    batch = first_batch(task.build_dataset("test", SIZE, limit=3), 3)
    bb = tiny_backbone()
    model = TaskModel(bb, task.build_head(info_of(bb)), task, frozen=False).eval()
    with torch.no_grad():
        arrays = task.predictions(model.predict(batch["image"]), batch)
    perfect = {**arrays, **{"pred/" + k[3:]: v for k, v in arrays.items()
                            if k.startswith("gt/") and "pred/" + k[3:] in arrays}}
    scores = task.score_arrays(perfect)
    if getattr(task, "hidden_test_labels", False):
        assert scores == {}
        return
    for spec in task.metrics:
        np.testing.assert_allclose(scores[spec.name], _ideal(spec), atol=1e-3, err_msg=spec.name)


def _shift_one_joint(a: dict, key: str, j: int, mm: float) -> dict:
    p = a[key].copy()
    p[:, j, 0] += mm / 1000.0
    return {**a, key: p}


def test_body_mesh_hand_computed(task_of):
    task = task_of("synth-body-mesh")
    rng = np.random.default_rng(0)
    gj = rng.normal(0, 0.3, (2, 24, 3)).astype(np.float32)
    gv = rng.normal(0, 0.3, (2, 50, 3)).astype(np.float32)
    a = {"gt/joints3d": gj, "gt/verts": gv, "pred/joints3d": gj.copy(), "pred/verts": gv + np.float32([0.004, 0, 0]),
         "gt/root_rot": np.eye(3)[None].repeat(2, 0), "pred/root_rot": np.eye(3)[None].repeat(2, 0)}
    a = _shift_one_joint(a, "pred/joints3d", 5, 48.0)  # one of 24 joints off by 48 mm -> MPJPE 2 mm
    s = task.score_arrays(a)
    np.testing.assert_allclose(s["mpjpe"], 2.0, atol=1e-3)
    c, d = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -d, 0], [d, c, 0], [0, 0, 1]], np.float32)
    sim = {**a, "pred/joints3d": 1.1 * gj @ rot.T + 0.2}  # a similarity transform of the GT: PA-MPJPE 0
    np.testing.assert_allclose(task.score_arrays(sim)["pa_mpjpe"], 0.0, atol=1e-3)
    assert (task.score_arrays(sim)["mpjpe"] > 10).all()
    np.testing.assert_allclose(s["pve"], 4.0, atol=1e-3)  # vertices are not re-rooted: a 4 mm shift stays
    # a root offset (joint 0) shifts every joint after root subtraction: MPJPE = 23 * 24 / 24 = 23 mm
    b = _shift_one_joint({**a, "pred/joints3d": gj.copy()}, "pred/joints3d", 0, 24.0)
    np.testing.assert_allclose(task.score_arrays(b)["mpjpe"], 23.0, atol=1e-3)


def test_hand_mesh_hand_computed(task_of):
    task = task_of("synth-hand-mesh")
    rng = np.random.default_rng(1)
    gj = rng.normal(0, 0.04, (2, 21, 3)).astype(np.float32)
    gv = rng.normal(0, 0.04, (2, 60, 3)).astype(np.float32)
    mirror = np.float32([-1, 1, 1])
    a = {"gt/joints3d": gj, "gt/verts": gv, "pred/joints3d": gj * mirror * 2 + 1, "pred/verts": gv * mirror * 0.5}
    s = task.score_arrays(a)  # FreiHAND alignment allows reflections: a mirrored, scaled copy is perfect
    for k, v in {"pa_mpjpe": 0, "pa_mpvpe": 0, "f5": 1, "f15": 1}.items():
        np.testing.assert_allclose(s[k], v, atol=1e-4, err_msg=k)
    # AUC: errors of ~1e-6 mm miss only the threshold at exactly 0, worth half a trapezoid of 99
    np.testing.assert_allclose(s["auc"], 1 - 0.5 / 99, atol=1e-4)


def test_2d_parts_gesture_hand_computed(task_of):
    t2d = task_of("synth-body-2d")
    g = np.zeros((1, 24, 2), np.float32)
    p = g.copy()
    p[0, :6, 0] = 0.08  # 6 joints off by 0.08 of a bbox of size 1: inside PCK@0.1, outside @0.05
    p[0, 6:9, 0] = 0.05  # exactly at the 0.05 threshold: inclusive
    s = t2d.score_arrays({"pred/joints2d": p, "gt/joints2d": g, "gt/norm": np.ones(1, np.float32)})
    np.testing.assert_allclose(s["pck05"], 100 * 18 / 24)
    np.testing.assert_allclose(s["pck10"], 100.0)

    parts = task_of("synth-body-parts")
    gt = np.array([[[0, 0], [1, 1]]], np.uint8)
    pr = np.array([[[0, 1], [1, 1]]], np.uint8)  # bg IoU 1/2, part-1 IoU 2/3
    s = parts.score_arrays({"pred/parts": pr, "gt/parts": gt})
    np.testing.assert_allclose(s["miou"], 100 * (0.5 + 2 / 3) / 2)

    ges = task_of("synth-hand-gesture")
    s = ges.score_arrays({"pred/label": np.array([0, 2, 1]), "gt/label": np.array([0, 1, 1])})
    np.testing.assert_allclose(s["top1"], [100, 0, 100])


def test_synthetic_split_disjoint_and_targets_consistent(frame_sets):
    """Train/test subjects differ; the stored joints project onto the stored 2D joints through K."""
    from humans.frames import FrameStore

    store = FrameStore(frame_sets["body"])
    m = store.manifest
    assert not set(m[m.split == "train"].subject) & set(m[m.split == "test"].subject)
    task = TASKS.get("synth-body-mesh")(frame_sets["body"])
    a = task.arrays("test", SIZE)
    cam = a["joints3d"] + a["root"][:, None]
    uv = np.einsum("bij,bkj->bki", a["K"], cam)
    t2d = TASKS.get("synth-body-2d")(frame_sets["body"]).arrays("test", SIZE)
    np.testing.assert_allclose(uv[..., :2] / uv[..., 2:], t2d["joints2d"], atol=1e-3)


def test_rotations_of_dataset_match_vertices(frame_sets):
    """The camera-frame joint rotations decode (through smplx) to the stored root-relative vertices."""
    from tasks.heads import ModelDecoder
    from tasks.synth_data import load_frames

    for domain, kind in (("body", "smpl"), ("hand", "mano")):
        a = load_frames(frame_sets[domain], "train", SIZE, ("verts", "rotmat", "betas"), limit=2)
        v, j = ModelDecoder(kind)(torch.from_numpy(a["rotmat"]), torch.from_numpy(a["betas"]))
        np.testing.assert_allclose((v - j[:, :1]).numpy(), a["verts"], atol=1e-4)


def test_missing_real_data_says_what_to_do(monkeypatch):
    monkeypatch.delenv("CPCBENCH_DATA", raising=False)
    for name in REAL:
        task = TASKS.get(name)()
        assert task.data_status()["data"] == "missing"
        with pytest.raises(DataError) as e:
            task.build_dataset("test", SIZE)
        assert "--data-root" in str(e.value) or "CPCBENCH_DATA" in str(e.value)


def test_stale_frame_set_is_refused(tmp_path, frame_sets):
    """Mesh targets that the current model cannot reproduce (a frame set from another model version) fail loudly."""
    import shutil

    from humans.frames import FrameStore, FrameWriter

    src = FrameStore(frame_sets["hand"])
    w = FrameWriter(tmp_path / "stale", src.meta, shard_size=8)
    for i in range(len(src)):
        fr = src.load(i)
        fr["verts"] = fr["verts"][::-1].copy()  # another vertex order
        w.add(fr, src.manifest.iloc[i].drop(["shard", "index"]).to_dict())
    w.close()
    with pytest.raises(DataError, match="another MANO model"):
        TASKS.get("synth-hand-mesh")(tmp_path / "stale").build_dataset("train", SIZE)
    shutil.rmtree(tmp_path / "stale")
