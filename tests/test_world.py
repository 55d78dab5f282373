"""The synthetic world: camera geometry, masks, pairs, splits, determinism, resumability, corruption, CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, tiny_frames
from scipy import ndimage
from scipy.spatial.transform import Rotation

from core.errors import DataError
from humans.cameras import project
from humans.frames import FrameStore, PairSampler
from humans.world import ensure_frames, generate, plan


def _frames(root: Path) -> tuple[FrameStore, list[dict[str, np.ndarray]]]:
    store = FrameStore(root)
    return store, [store.load(i) for i in range(len(store))]


@pytest.mark.parametrize("fixture", ["synth_body", "synth_hand"])
def test_projection_crop_and_masks(fixture: str, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(fixture)
    store, frames = _frames(root)
    size = store.meta["size"]
    joints = len(store.meta["joint_names"])
    assert joints == (24 if fixture == "synth_body" else 21)
    direct, dilated = [], []
    for f in frames:
        assert f["rgb"].shape == (size, size, 3) and f["mask"].shape == (size, size)
        # stored K projects stored 3D joints onto stored 2D joints
        assert f["joints3d"].shape == (joints, 3) and (f["joints3d"][:, 2] > 0).all()
        assert np.abs(project(f["joints3d"].astype(np.float64), f["K"].astype(np.float64)) - f["joints2d"]).max() < 0.5
        # the crop is person-centred: the projected vertices' box is centred and spans size / margin
        uv = project(f["verts"].astype(np.float64), f["K"].astype(np.float64))
        lo, hi = uv.min(0), uv.max(0)
        assert np.abs((lo + hi) / 2 - (size - 1) / 2).max() < 0.5
        assert abs(max(hi - lo) - size / 1.2) < 0.5
        np.testing.assert_allclose(f["bbox"], [lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], atol=1e-3)
        # the mask covers the projected (in-crop) vertices. At 64 px a finger is under a pixel wide and the
        # mask is one multisample per pixel, so silhouette vertices may land a pixel off: count with a 1-px
        # dilation, and demand most vertices directly
        px = np.round(uv).astype(int)
        inside = ((px >= 0) & (px < size)).all(1)
        px = px[inside]
        direct.append(f["mask"][px[:, 1], px[:, 0]].mean())
        dilated.append(ndimage.binary_dilation(f["mask"] > 0)[px[:, 1], px[:, 0]].mean())
        # parts label exactly the mask, with ids of the model's parts
        assert ((f["parts"] > 0) == (f["mask"] > 0)).all()
        assert f["parts"].max() <= len(store.meta["part_names"])
        # the background is textured, not flat: the picture is not just the person
        bg = f["rgb"][f["mask"] == 0]
        assert bg.std() > 1.0
    assert min(direct) > 0.8 and np.mean(direct) > 0.85
    assert min(dilated) > 0.95 and np.mean(dilated) > 0.99


def test_body_frames_carry_the_model(synth_body: Path) -> None:
    from humans.models import forward

    store = FrameStore(synth_body)
    f = store.load(5)
    assert f["body_pose"].shape == (69,) and f["betas"].shape == (10,) and f["global_orient"].shape == (3,)
    # re-posing the stored parameters and moving them into the camera gives the stored joints and vertices
    out = forward("smpl", {k: f[k][None].astype(np.float64) for k in ("global_orient", "body_pose", "betas", "transl")})
    E = f["extrinsics"].astype(np.float64)
    verts = out["verts"][0].numpy() @ E[:3, :3].T + E[:3, 3]
    joints = out["joints"][0].numpy() @ E[:3, :3].T + E[:3, 3]
    np.testing.assert_allclose(verts, f["verts"], atol=2e-4)
    np.testing.assert_allclose(joints, f["joints3d"], atol=2e-4)
    # people stand upright in the image: the head is above the ankles
    names = store.meta["joint_names"]
    j2 = f["joints2d"]
    assert j2[names.index("head"), 1] < j2[names.index("left_ankle"), 1]


def test_hand_frames_have_gesture_labels(synth_hand: Path) -> None:
    from humans.hand_poses import GESTURES

    store = FrameStore(synth_hand)
    labels = store.manifest["label"].to_numpy()
    assert ((labels >= 0) & (labels < len(GESTURES))).all()
    f = store.load(0)
    assert f["hand_pose"].shape == (45,) and int(f["label"]) == labels[0]
    assert store.meta["labels"] == list(GESTURES)


def test_objects_have_class_labels(synth_objects: Path) -> None:
    from humans.objects import CLASSES

    store = FrameStore(synth_objects)
    m = store.manifest
    assert store.meta["labels"] == list(CLASSES)
    assert m["label"].between(0, len(CLASSES) - 1).all() and m["label"].nunique() >= 3
    assert (m.groupby("sequence")["label"].nunique() == 1).all()
    assert set(m["split"]) == {"train", "test"}


def _world_points(f: dict[str, np.ndarray], key: str) -> np.ndarray:
    E = f["extrinsics"].astype(np.float64)
    return (f[key].astype(np.float64) - E[:3, 3]) @ E[:3, :3]


def test_cross_view_and_cross_pose_pairs(synth_body: Path) -> None:
    store = FrameStore(synth_body)
    rng = np.random.default_rng(0)
    view = PairSampler(store.manifest, mix=1.0, min_gap=1, max_gap=3)
    pose = PairSampler(store.manifest, mix=0.0, min_gap=1, max_gap=3)
    for _ in range(10):
        i, j, kind = view.sample(rng)
        a, b = store.load(i), store.load(j)
        assert kind == "cross_view"
        np.testing.assert_array_equal(a["body_pose"], b["body_pose"])
        np.testing.assert_allclose(_world_points(a, "joints3d"), _world_points(b, "joints3d"), atol=1e-4)
        assert np.abs(a["extrinsics"] - b["extrinsics"]).max() > 0.1
        i, j, kind = pose.sample(rng)
        a, b = store.load(i), store.load(j)
        assert kind == "cross_pose"
        np.testing.assert_array_equal(a["extrinsics"], b["extrinsics"])
        assert np.abs(a["body_pose"] - b["body_pose"]).max() > 1e-3
        np.testing.assert_array_equal(a["betas"], b["betas"])


@pytest.mark.parametrize("fixture", ["synth_body", "synth_hand"])
def test_test_subjects_and_motions_never_in_train(fixture: str, request: pytest.FixtureRequest) -> None:
    store = FrameStore(request.getfixturevalue(fixture))
    m = store.manifest
    train, test = m[m["split"] == "train"], m[m["split"] == "test"]
    assert len(train) and len(test)
    assert not set(train["subject"]) & set(test["subject"])
    assert not set(train["motion"]) & set(test["motion"])
    assert not set(train["sequence"]) & set(test["sequence"])
    # the content, not only the ids: no test pose or shape occurs in train
    key = "body_pose" if fixture == "synth_body" else "hand_pose"
    tr = {store.load(i)[key].tobytes() for i in train.index}
    te = {store.load(i)[key].tobytes() for i in test.index}
    assert not tr & te
    assert not {store.load(i)["betas"].tobytes() for i in train.index} & \
        {store.load(i)["betas"].tobytes() for i in test.index}


def test_split_plan_for_large_sets() -> None:
    from humans.world import make_config

    specs = plan(make_config("body", 64 * 100))
    subjects = {s.subject: s.split for s in specs}
    assert abs(sum(v == "test" for v in subjects.values()) / len(subjects) - 0.2) < 0.05
    motion_seeds = {s.split: set() for s in specs}
    for s in specs:
        motion_seeds[s.split].add(s.motion_seed[:3])
    assert motion_seeds["train"].isdisjoint(motion_seeds["test"])  # separate rng streams


def test_same_seed_identical_and_resume_completes_missing_shards(synth_body: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synth_body, root)
    shards = sorted((root / "shards").glob("shard-*.npz"))
    assert len(shards) == 6
    before = {p.name: p.stat().st_mtime_ns for p in shards}
    shards[1].unlink()
    generate("body", seed=0, out=root, workers=1, **TINY["body"])
    after = {p.name: p.stat().st_mtime_ns for p in sorted((root / "shards").glob("shard-*.npz"))}
    assert set(after) == set(before)
    assert [n for n in after if after[n] != before[n]] == [shards[1].name]  # only the missing one re-rendered
    a, b = _frames(synth_body)[1], _frames(root)[1]
    assert len(a) == len(b)
    for fa, fb in zip(a, b, strict=True):
        assert fa.keys() == fb.keys()
        for k in fa:
            np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
    # a complete set is returned as is; another seed gives other frames
    assert ensure_frames("body", out=root, seed=0, **TINY["body"]) == root
    assert {p.name: p.stat().st_mtime_ns for p in (root / "shards").glob("shard-*.npz")} == after
    with pytest.raises(DataError, match="another generator config"):
        generate("body", seed=1, out=root, **TINY["body"])


def test_other_seed_differs(tmp_path: Path, synth_objects: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:  # another size makes a new renderer in this process: the caller's torch threads must stay as they are
        generate("objects", 6, size=32, out=tmp_path / "o32", workers=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    other = tiny_frames(tmp_path / "o1", "objects", seed=1)
    a, b = FrameStore(synth_objects).load(0)["rgb"], FrameStore(other).load(0)["rgb"]
    assert np.abs(a.astype(int) - b).mean() > 5


def test_corrupted_shard_names_the_file(synth_objects: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synth_objects, root)
    shard = root / "shards" / "shard-00000.npz"
    shard.write_bytes(shard.read_bytes()[:200])
    with pytest.raises(DataError, match="shard-00000.npz"):
        FrameStore(root).load(0)


def test_cli_synth_show_and_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    runner = CliRunner()
    out = tmp_path / "objs"
    res = runner.invoke(app, ["data", "synth", "objects", "--frames", "6", "--size", "32", "--out", str(out),
                              "--json"])
    assert res.exit_code == 0, res.output
    assert len(FrameStore(out)) == 6
    res = runner.invoke(app, ["data", "show", str(out)])
    assert res.exit_code == 0, res.output
    from PIL import Image

    with Image.open(out / "contact_sheet.png") as im:
        assert im.size[0] > 100
    res = runner.invoke(app, ["data", "synth", "dragons", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown synthetic domain" in res.output
    res = runner.invoke(app, ["data", "show", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no frame manifest" in res.output


@pytest.mark.slow
def test_workers_give_identical_frames(tmp_path: Path) -> None:
    kw = {"frames": 16, "size": 32, "cameras": 2, "seq_len": 2, "motions_per_subject": 2}
    one = generate("body", out=tmp_path / "w1", workers=1, **kw)
    two = generate("body", out=tmp_path / "w2", workers=2, **kw)
    a, b = _frames(one)[1], _frames(two)[1]
    for fa, fb in zip(a, b, strict=True):
        for k in fa:
            np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
    import pandas as pd

    pd.testing.assert_frame_equal(FrameStore(one).manifest, FrameStore(two).manifest)


def test_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from humans.world import default_dir

    monkeypatch.delenv("CPCBENCH_DATA_CACHE", raising=False)
    monkeypatch.setenv("CPCBENCH_RUNS", str(tmp_path / "r"))
    assert default_dir("hand", 96, 3) == tmp_path / "r" / "data" / "hand-96-3"
    monkeypatch.setenv("CPCBENCH_DATA_CACHE", str(tmp_path / "cache"))
    assert default_dir("body", 128, 0) == tmp_path / "cache" / "body-128-0"


def test_people_look_different_from_the_front_and_the_back() -> None:
    """Which way a person faces must be visible (real people have faces, necklines, prints): the face and the
    front details of a top change only vertices in front (+z) of their region, and every subject gets some."""
    from humans.appearance import _face, _front_of_top, region_of_part
    from humans.models import model_info
    from humans.people import _rest_verts

    info = model_info("smpl")
    verts = _rest_verts("smpl", np.zeros(10))
    region = np.array([region_of_part(info["part_names"][p - 1]) for p in info["part_of_vertex"]])
    head, top = region == "head", region == "top"
    plain, skin = np.full((len(verts), 3), 0.5), np.array([0.9, 0.7, 0.6])
    for seed in range(20):
        rng = np.random.default_rng(seed)
        face = np.zeros(len(verts), bool)
        face[head] = (_face(rng, verts, head, plain[head]) != 0.5).any(1)
        front = (_front_of_top(rng, verts, top, plain, skin) != 0.5).any(1)
        assert face.sum() >= 10 and front.sum() >= 20, seed  # eyes/brows/mouth; a neckline at least
        assert (verts[face, 2] > verts[head, 2].mean()).all() and (verts[front, 2] > verts[top, 2].mean()).all()
        assert not front[~top].any()


def test_cli_synth_motions_per_subject(tmp_path: Path) -> None:
    """``--motions-per-subject M``: sequence i belongs to subject i // M, and the frame set is complete for exactly
    that config (what ``make reproduce`` checks before rendering again)."""
    from typer.testing import CliRunner

    from harness.cli import app
    from humans.world import is_complete, make_config

    runner = CliRunner()
    out = tmp_path / "objs"
    args = ["data", "synth", "objects", "--frames", "8", "--size", "32", "--cameras", "1", "--seq-len", "1",
            "--out", str(out), "--json"]
    res = runner.invoke(app, [*args, "--motions-per-subject", "2"])
    assert res.exit_code == 0, res.output
    m = FrameStore(out).manifest
    assert m.groupby("subject")["sequence"].nunique().tolist() == [2, 2, 2, 2]
    kw = {"cameras": 1, "seq_len": 1}
    assert is_complete(out, make_config("objects", 8, 32, 0, motions_per_subject=2, **kw))
    assert not is_complete(out, make_config("objects", 8, 32, 0, **kw))  # the domain default (1) is another set
    res = runner.invoke(app, [*args[:-3], "--out", str(tmp_path / "bad"), "--motions-per-subject", "0"])
    assert res.exit_code == 2 and "motions_per_subject" in res.output


def test_hand_front_view(tmp_path: Path) -> None:
    """``--view front``: every hand shows its palm or its back to the camera (within the 45-degree cap, plus the
    motion's small turn within a 2-frame sequence) with its fingers up in the image (within the 45-degree roll),
    both sides about equally; the default view keeps old frame sets' identity (``view`` is not written)."""
    import json

    from typer.testing import CliRunner

    from harness.cli import app
    from humans.world import is_complete, make_config

    out = tmp_path / "front"
    args = ["data", "synth", "hand", "--frames", "64", "--size", "32", "--cameras", "4", "--seq-len", "2",
            "--motions-per-subject", "1", "--out", str(out), "--json"]
    res = CliRunner().invoke(app, [*args, "--view", "front"])
    assert res.exit_code == 0, res.output
    store = FrameStore(out)
    rel = np.stack([Rotation.from_rotvec(store.load(i)["cam_global_orient"]).as_matrix() for i in range(len(store))])
    palm = rel @ np.array([0.0, -1.0, 0.0])  # MANO's palm normal in camera axes
    fingers = rel @ np.array([-1.0, 0.0, 0.0])
    towards = np.degrees(np.arccos(np.abs(palm[:, 2])))  # 0: palm or back straight at the camera
    assert towards.max() < 50.0
    up = np.degrees(np.arctan2(fingers[:, 0], -fingers[:, 1]))  # image-plane angle of the fingers from "up"
    assert np.abs(up).max() < 80.0  # roll 45 + what the tilt adds to the projected direction
    assert 0.2 < (palm[:, 2] < 0).mean() < 0.8  # palm and back both shown
    assert store.meta["generator"]["view"] == "front"
    assert is_complete(out, make_config("hand", 64, 32, 0, cameras=4, seq_len=2, motions_per_subject=1, view="front"))
    assert not is_complete(out, make_config("hand", 64, 32, 0, cameras=4, seq_len=2, motions_per_subject=1))
    around = tmp_path / "around"
    assert CliRunner().invoke(app, [*args[:-3], "--out", str(around)]).exit_code == 0
    assert "view" not in json.loads((around / "meta.json").read_text())["generator"]
    res = CliRunner().invoke(app, ["data", "synth", "body", "--frames", "8", "--view", "front", "--out",
                                   str(tmp_path / "b")])
    assert res.exit_code == 2 and "view" in res.output
