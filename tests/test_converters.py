"""Converters from real capture layouts to frame manifests, on small fixtures written in those layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import DataError
from humans.converters import convert_interhand, convert_multiview
from humans.frames import FrameStore, PairSampler


def _jpg(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 32, 3), value, np.uint8)).save(path)


def _multiview(root: Path) -> list[tuple[str, str, int]]:
    keys = []
    for seq in ("walk", "jump"):
        for cam in ("cam0", "cam1", "cam2"):
            for f in (0, 5, 10):
                _jpg(root / seq / cam / f"{f:06d}.jpg", 10 * f)
                keys.append((seq, cam, f))
    lines = ["sequence,camera,frame,x,y,w,h,split"]
    lines += [f"{s},{c},{f},{f},2,10,12,{'test' if s == 'jump' else 'train'}" for s, c, f in keys]
    (root / "bboxes.csv").write_text("\n".join(lines) + "\n")
    return keys


def test_multiview_layout_to_manifest(tmp_path: Path) -> None:
    src, out = tmp_path / "capture", tmp_path / "frames"
    keys = _multiview(src)
    root = convert_multiview(src, out)
    store = FrameStore(root)
    m = store.manifest
    assert len(m) == len(keys)
    assert set(zip(m["sequence"], m["camera"], m["frame"], strict=True)) == set(keys)
    row = m[(m["sequence"] == "walk") & (m["camera"] == "cam1") & (m["frame"] == 10)].index[0]
    frame = store.load(row)
    assert frame["rgb"].shape == (24, 32, 3) and abs(int(frame["rgb"].mean()) - 100) <= 2
    np.testing.assert_allclose(frame["bbox"], [10, 2, 10, 12])
    assert set(m.loc[m["sequence"] == "jump", "split"]) == {"test"}
    # the manifest serves both pair kinds
    sampler = PairSampler(m, mix=0.5, min_gap=1, max_gap=10)
    i, j, kind = sampler.sample(np.random.default_rng(0))
    a, b = m.iloc[i], m.iloc[j]
    assert a["sequence"] == b["sequence"]
    assert (a["frame"] == b["frame"]) if kind == "cross_view" else (a["camera"] == b["camera"])


def test_multiview_missing_box_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "capture"
    _multiview(src)
    _jpg(src / "walk" / "cam0" / "000099.jpg", 5)
    with pytest.raises(DataError, match="000099"):
        convert_multiview(src, tmp_path / "out")
    with pytest.raises(DataError, match="bbox file"):
        convert_multiview(src, tmp_path / "out", bboxes=tmp_path / "nope.csv")


def _interhand(root: Path) -> None:
    """A tiny InterHand2.6M tree in the published layout (protocols reference B6)."""
    for split, capture in (("train", 0), ("test", 1)):
        images, anns = [], []
        k = 0
        for seq in ("ROM01_No_Interaction_2_Hand", "ROM04_RT_Occlusion"):
            for cam in (400002, 400004):
                for frame in (2140, 2146):
                    name = f"Capture{capture}/{seq}/cam{cam}/image{frame}.jpg"
                    _jpg(root / "images" / split / name, 50)
                    images.append({"id": k, "file_name": name, "width": 32, "height": 24, "capture": capture,
                                   "seq_name": seq, "camera": str(cam), "frame_idx": frame})
                    valid = not (seq.startswith("ROM04") and frame == 2146 and cam == 400004)
                    anns.append({"id": k, "image_id": k, "bbox": [1.0, 2.0, 20.0, 18.0], "joint_valid": [[1]] * 42,
                                 "hand_type": "right", "hand_type_valid": int(valid)})
                    k += 1
        ann_dir = root / "annotations" / split
        ann_dir.mkdir(parents=True, exist_ok=True)
        (ann_dir / f"InterHand2.6M_{split}_data.json").write_text(json.dumps({"images": images, "annotations": anns}))
        cams = {str(capture): {"campos": {"400002": [0, 0, 0], "400004": [1, 0, 0]},
                               "camrot": {"400002": np.eye(3).tolist(), "400004": np.eye(3).tolist()},
                               "focal": {"400002": [1000, 1000], "400004": [1000, 1000]},
                               "princpt": {"400002": [16, 12], "400004": [16, 12]}}}
        (ann_dir / f"InterHand2.6M_{split}_camera.json").write_text(json.dumps(cams))


def test_interhand_layout_to_manifest(tmp_path: Path) -> None:
    src = tmp_path / "InterHand2.6M"
    _interhand(src)
    # one image deleted from disk: skipped, not fatal
    (src / "images/train/Capture0/ROM01_No_Interaction_2_Hand/cam400002/image2140.jpg").unlink()
    root = convert_interhand(src, tmp_path / "ih")
    store = FrameStore(root)
    m = store.manifest
    assert len(m) == 2 * 8 - 2 - 1  # one invalid hand per split, one missing image
    assert set(m["split"]) == {"train", "test"}
    assert set(m["sequence"]) == {"Capture0/ROM01_No_Interaction_2_Hand", "Capture0/ROM04_RT_Occlusion",
                                  "Capture1/ROM01_No_Interaction_2_Hand", "Capture1/ROM04_RT_Occlusion"}
    assert set(m["camera"]) == {"cam400002", "cam400004"}
    assert set(m["frame"]) == {2140, 2146}
    assert set(m["subject"]) == {"Capture0", "Capture1"}
    assert store.meta["domain"] == "hand"
    frame = store.load(0)
    assert frame["rgb"].shape == (24, 32, 3)
    np.testing.assert_allclose(frame["bbox"], [1, 2, 20, 18])
    only_test = FrameStore(convert_interhand(src, tmp_path / "ih_test", splits=("test",)))
    assert set(only_test.manifest["split"]) == {"test"}


def test_interhand_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="annotations"):
        convert_interhand(tmp_path)
    src = tmp_path / "ih"
    _interhand(src)
    (src / "annotations/train/InterHand2.6M_train_data.json").write_text("{not json")
    with pytest.raises(DataError, match="InterHand2.6M_train_data.json"):
        convert_interhand(src, tmp_path / "o")


def test_cli_convert(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    src = tmp_path / "capture"
    _multiview(src)
    res = CliRunner().invoke(app, ["data", "convert", "multiview", str(src), "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert "18 frames, 2 sequences, 3 cameras" in res.output
    ih = tmp_path / "ih"
    _interhand(ih)
    res = CliRunner().invoke(app, ["data", "convert", "interhand", str(ih), "--split", "test"])
    assert res.exit_code == 0, res.output
    assert set(FrameStore(ih).manifest["split"]) == {"test"}
    res = CliRunner().invoke(app, ["data", "convert", "kinect", str(src)])
    assert res.exit_code == 2 and "unknown layout" in res.output


@pytest.mark.parametrize(("column", "value", "what"), [
    ("frame", "abc", "frame is 'abc', expected an integer"),
    ("frame", "3.5", "frame is 3.5, expected an integer"),
    ("w", "", "w is '', expected a finite number"),
    ("x", "left", "x is 'left', expected a finite number"),
])
def test_multiview_malformed_row_is_one_error(tmp_path: Path, column: str, value: str, what: str) -> None:
    """A bad cell is a DataError naming the file, the line and the column; never a traceback, never truncated."""
    src = tmp_path / "capture"
    _multiview(src)
    csv = src / "bboxes.csv"
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[4].split(",")  # line 5 of the file
    cells[header.index(column)] = value
    lines[4] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"bboxes.csv line 5: {what}"):
        convert_multiview(src, tmp_path / "out")


def test_multiview_integral_float_frames_and_duplicates(tmp_path: Path) -> None:
    src = tmp_path / "capture"
    _multiview(src)
    csv = src / "bboxes.csv"
    text = csv.read_text()
    csv.write_text(text.replace("walk,cam0,5,", "walk,cam0,5.0,"))  # 5.0 is frame 5
    assert len(FrameStore(convert_multiview(src, tmp_path / "a")).manifest) == 18
    csv.write_text(text + text.splitlines()[3] + "\n")
    with pytest.raises(DataError, match=r"line 20 repeats the box .* \(first given on line 4\)"):
        convert_multiview(src, tmp_path / "b")


def _edit_interhand(src: Path, split: str, edit) -> Path:
    path = src / "annotations" / split / f"InterHand2.6M_{split}_data.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("edit", "what"), [
    (lambda d: d["images"][3].pop("seq_name"), r"image #3 \(id 3\) lacks \['seq_name'\]"),
    (lambda d: d["images"][2].update(frame_idx="x"), r"image #2 \(id 2\): frame_idx is 'x', expected an integer"),
    (lambda d: d["annotations"][1].update(bbox=None), r"annotation #1 \(id 1\): bbox is None, expected \[x, y, w, h\]"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, "w", 4]), r"annotation #1 \(id 1\): bbox is 'w'"),
    (lambda d: d["annotations"][0].pop("image_id"), r"annotation #0 \(id 0\) has no 'image_id'"),
    (lambda d: d["images"][1].update(file_name=7), r"image #1 \(id 1\): file_name is 7"),
])
def test_interhand_malformed_record_is_one_error(tmp_path: Path, edit, what: str) -> None:
    src = tmp_path / "ih"
    _interhand(src)
    _edit_interhand(src, "train", edit)
    with pytest.raises(DataError, match="InterHand2.6M_train_data.json " + what):
        convert_interhand(src, tmp_path / "o")


def test_interhand_malformed_record_via_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    src = tmp_path / "ih"
    _interhand(src)
    _edit_interhand(src, "test", lambda d: d["annotations"][2].update(bbox=None))
    res = CliRunner().invoke(app, ["data", "convert", "interhand", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "annotation #2" in lines[0], res.output


def test_interhand_subject_field(tmp_path: Path) -> None:
    """The subject is the release's ``subject`` field (two captures of one person are one subject)."""
    src = tmp_path / "ih"
    _interhand(src)
    for split in ("train", "test"):
        _edit_interhand(src, split, lambda d: [im.update(subject=7) for im in d["images"]])
    m = FrameStore(convert_interhand(src, tmp_path / "o")).manifest
    assert set(m["subject"]) == {"subject7"}
    assert set(m["sequence"]) >= {"Capture0/ROM01_No_Interaction_2_Hand", "Capture1/ROM04_RT_Occlusion"}


def test_interhand_frame_stride_gives_cross_pose_pairs(tmp_path: Path) -> None:
    """InterHand's frame indices step by a stride (here 30, above the hand preset's max_gap of 6): cross-pose gaps
    count steps along each sequence's sorted frames, so the converted set still has cross-pose pairs."""
    from harness.pretrain import PRESETS

    src = tmp_path / "ih"
    _interhand(src)
    for split in ("train", "test"):
        _edit_interhand(src, split, lambda d: [im.update(frame_idx=2140 + 30 * (im["frame_idx"] - 2140) // 6)
                                               for im in d["images"]])
    m = FrameStore(convert_interhand(src, tmp_path / "o", require_images=False)).manifest
    assert set(m["frame"]) == {2140, 2170}
    max_gap = PRESETS["hand"]["data.max_gap"]
    assert max_gap < 30
    sampler = PairSampler(m, mix=0.0, min_gap=1, max_gap=max_gap)
    rng = np.random.default_rng(0)
    for _ in range(20):
        i, j, kind = sampler.sample(rng)
        a, b = m.iloc[i], m.iloc[j]
        assert kind == "cross_pose" and a["sequence"] == b["sequence"] and a["camera"] == b["camera"]
        assert abs(int(a["frame"]) - int(b["frame"])) == 30


def test_pair_gaps_count_sorted_frames() -> None:
    """Gaps are steps along the sequence's sorted frames (all cameras), not raw index differences."""
    import pandas as pd

    frames = [0, 10, 20, 30, 40]
    df = pd.DataFrame([{"sequence": "s", "camera": c, "frame": f} for c in ("a", "b") for f in frames
                       if not (c == "b" and f == 20)])  # camera b misses one frame: steps stay the sequence's
    sampler = PairSampler(df, mix=0.0, min_gap=2, max_gap=2)
    partners = {(df.loc[i, "camera"], df.loc[i, "frame"]): sorted(int(df.loc[j, "frame"]) for j in p)
                for i, p in enumerate(sampler.pose_partners)}
    assert partners[("a", 0)] == [20] and partners[("a", 20)] == [0, 40]
    assert partners[("b", 10)] == [30] and partners[("b", 0)] == []


def test_open_frames_warns_on_other_domain(tmp_path: Path) -> None:
    """A hand frame set used to pretrain the body domain (or the reverse) is logged as a warning."""
    import logging

    from pretraining.data import DataConfig, open_frames

    src = tmp_path / "ih"
    _interhand(src)
    root = convert_interhand(src, tmp_path / "o")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("cpcbench.data")
    logger.addHandler(handler)
    try:
        open_frames(str(root), "hand", DataConfig(), 64)
        assert not [r for r in records if r.levelno >= logging.WARNING]
        open_frames(str(root), "body", DataConfig(), 64)
    finally:
        logger.removeHandler(handler)
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "body domain" in warnings[0] and "a hand frame set" in warnings[0]
