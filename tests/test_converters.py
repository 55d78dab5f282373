"""Converters from real capture layouts to frame manifests, on small fixtures written in those layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.errors import DataError
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
