"""The real-benchmark readers on tiny fixtures in their published formats (tests/fixtures_real.py): parsing, frame
filters and malformed files of 3DPW, EMDB, H36M, FreiHAND, HO3D and ImageFolder (the restricted unpickler:
test_safe_pickle.py; the tasks built on these readers: test_real_tasks.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_real import (
    make_coco_npz,
    make_emdb,
    make_freihand,
    make_h36m,
    make_ho3d,
    make_imagefolder,
    make_pw3d,
)

from core.errors import DataError

# ---------------------------------------------------------------------------------------------- 3DPW reader


def test_pw3d_reader_parses_and_filters(tmp_path: Path) -> None:
    from scipy.spatial.transform import Rotation

    from tasks.real.pw3d import read_pw3d, read_pw3d_sequence

    kept = make_pw3d(tmp_path)
    frames = read_pw3d(tmp_path / "3dpw", "test")
    assert list(zip(frames.sequence, frames.actor.tolist(), frames.frame.tolist(), strict=True)) == kept
    assert ("courtyard_a_00", 0, 1) not in kept and ("courtyard_a_00", 0, 2) not in kept  # both filters applied
    assert frames.global_orient.shape == (len(kept), 3) and frames.body_pose.shape == (len(kept), 69)
    assert frames.betas.shape == (len(kept), 10) and frames.K.shape == (len(kept), 3, 3)
    assert set(frames.gender) == {"male", "female"}
    # values round-trip; the global orientation is rotated into the camera (R_cam @ R_root)
    seq = read_pw3d_sequence(tmp_path / "3dpw/sequenceFiles/test/courtyard_a_00.pkl")
    i = kept.index(("courtyard_a_00", 1, 3))
    assert np.allclose(frames.body_pose[i], seq["poses"][1][3, 3:], atol=1e-6)
    want = seq["cam_poses"][3, :3, :3] @ Rotation.from_rotvec(seq["poses"][1][3, :3]).as_matrix()
    assert np.allclose(Rotation.from_rotvec(frames.global_orient[i]).as_matrix(), want, atol=1e-5)
    # bbox = tight box of the detected 2D joints
    p2d = seq["poses2d"][1][3]
    pts = p2d[:2, p2d[2] > 0]
    assert np.allclose(frames.bbox[i], [pts[0].min(), pts[1].min(), np.ptp(pts[0]), np.ptp(pts[1])], atol=1e-4)
    assert frames.images[i] == tmp_path / "3dpw/imageFiles/courtyard_a_00/image_00003.jpg"
    assert frames.images[i].is_file()


@pytest.mark.parametrize("bad,msg", [("shape", r"poses\[0\] has shape \(5, 71\), expected 5x72"),
                                     ("keys", r"lacks keys \['campose_valid'\]"),
                                     ("code", "which is not plain data")])
def test_pw3d_reader_refuses_malformed(tmp_path: Path, bad: str, msg: str) -> None:
    from tasks.real.pw3d import read_pw3d

    make_pw3d(tmp_path, malformed=bad)
    with pytest.raises(DataError, match=msg):
        read_pw3d(tmp_path / "3dpw", "test")
    assert not (tmp_path / "pwned-3dpw").exists()


# ---------------------------------------------------------------------------------------------- EMDB reader


def test_emdb_reader_parses_and_filters(tmp_path: Path) -> None:
    from tasks.real.emdb import read_emdb

    kept = make_emdb(tmp_path)
    frames = read_emdb(tmp_path / "emdb")
    assert list(zip(frames.sequence, frames.frame.tolist(), strict=True)) == kept  # emdb1 + good_frames_mask
    assert set(frames.gender) == {"female"} and frames.body_pose.shape == (len(kept), 69)
    k4 = [f for _, f in kept].index(4)  # frame 4's published bbox is invalid: box of the projected joints instead
    assert frames.bbox[k4].tolist() != [4.0, 3.0, 24.0, 19.0]
    assert np.allclose(frames.bbox[0], [4.0, 3.0, 24.0, 19.0])
    assert frames.images[0].name == "00000.jpg" and frames.images[0].is_file()


@pytest.mark.parametrize("bad,msg", [("shape", r"kp2d has shape \(6, 23, 2\)"),
                                     ("keys", r"lacks keys \['good_frames_mask'\]"),
                                     ("code", "which is not plain data")])
def test_emdb_reader_refuses_malformed(tmp_path: Path, bad: str, msg: str) -> None:
    from tasks.real.emdb import read_emdb

    make_emdb(tmp_path, malformed=bad)
    with pytest.raises(DataError, match=msg):
        read_emdb(tmp_path / "emdb")
    assert not (tmp_path / "pwned-emdb").exists()


# ---------------------------------------------------------------------------------------------- H36M reader


@pytest.mark.parametrize("protocol", [1, 2])
def test_h36m_npz_reader(tmp_path: Path, protocol: int) -> None:
    from tasks.protocols import H36M_TO_J14, J24_TO_J14
    from tasks.real.spin_npz import read_spin_npz

    j17 = make_h36m(tmp_path, protocol)
    npz = read_spin_npz(tmp_path / f"h36m/h36m_valid_protocol{protocol}.npz", require=("S",))
    assert np.allclose(npz.joints_h36m17(), j17, atol=1e-6)
    # SPIN's own mapping of the 24 GT joints to LSP-14 agrees with H36M_TO_J14 on the recovered 17
    S = np.load(tmp_path / f"h36m/h36m_valid_protocol{protocol}.npz")["S"]
    assert np.allclose(S[:, list(J24_TO_J14), :3], npz.joints_h36m17()[:, list(H36M_TO_J14)], atol=1e-6)
    assert npz.bbox.shape == (4, 4) and np.allclose(npz.bbox[:, 2], npz.bbox[:, 3])
    assert npz.imgname[0].startswith("images/S9_") and (tmp_path / "h36m" / npz.imgname[0]).is_file()


@pytest.mark.parametrize("bad,msg", [("shape", r"S has shape \(4, 24, 3\), expected 4x24x4"),
                                     ("keys", r"missing keys \['S'\]"),
                                     ("pickle", "refusing .*object arrays")])
def test_h36m_npz_reader_refuses_malformed(tmp_path: Path, bad: str, msg: str) -> None:
    from tasks.real.spin_npz import read_spin_npz

    make_h36m(tmp_path, 2, malformed=bad)
    with pytest.raises(DataError, match=msg):
        read_spin_npz(tmp_path / "h36m/h36m_valid_protocol2.npz", require=("S",))


def test_coco_style_npz_reader(tmp_path: Path) -> None:
    from tasks.real.spin_npz import read_spin_npz

    path = make_coco_npz(tmp_path)
    npz = read_spin_npz(path, require=("part",))
    assert len(npz) == 3 and npz.arrays["part"].shape == (3, 24, 3) and npz.arrays["openpose"].shape == (3, 25, 3)
    want = np.load(path)
    side = want["scale"] * 200
    assert np.allclose(npz.bbox[:, :2], want["center"] - side[:, None] / 2, atol=1e-4)
    assert np.allclose(npz.bbox[:, 2], side, atol=1e-4)
    with pytest.raises(DataError, match="no 3D joints"):
        npz.joints_h36m17()
    with pytest.raises(DataError, match=r"missing keys \['S'\]"):
        read_spin_npz(path, require=("S",))


# ---------------------------------------------------------------------------------------------- FreiHAND reader


def test_freihand_reader_and_submission(tmp_path: Path) -> None:
    from tasks.real.hand_format import read_freihand, read_hand_submission, write_hand_submission

    ev = make_freihand(tmp_path)
    test = read_freihand(tmp_path / "freihand", "test")
    assert len(test) == 3 and np.allclose(test.joints3d, ev["xyz"], atol=1e-6)
    assert np.allclose(test.verts, ev["verts"], atol=1e-6) and np.allclose(test.K, ev["K"])
    assert [p.name for p in test.images] == ["00000000.jpg", "00000001.jpg", "00000002.jpg"]
    train = read_freihand(tmp_path / "freihand", "train")
    assert len(train) == 8 and train.mano.shape == (8, 61)  # 2 frames x 4 versions (gs, hom, sample, auto)
    # version v of training id i is image i + 32560 * v (fh_utils.py: the stride is db_size, not the json length)
    assert [p.name for p in train.images[:3]] == ["00000000.jpg", "00000001.jpg", "00032560.jpg"]
    assert train.images[7].name == "00097681.jpg" and all(p.is_file() for p in train.images)
    assert np.allclose(train.joints3d[2], train.joints3d[0])
    path = write_hand_submission(tmp_path / "out/pred.json", test.joints3d, test.verts)
    import json

    raw = json.loads(path.read_text())
    assert isinstance(raw, list) and len(raw) == 2 and len(raw[0]) == 3 and len(raw[0][0]) == 21
    assert len(raw[1][0]) == 778 and len(raw[1][0][0]) == 3
    xyz, verts = read_hand_submission(path)
    assert np.allclose(xyz, test.joints3d, atol=1e-6) and np.allclose(verts, test.verts, atol=1e-6)


@pytest.mark.parametrize("bad,msg", [("count", r"evaluation_xyz.json: 2 entries, but the split has 3 frames"),
                                     ("shape", r"xyz has shape \(3, 21, 2\)"),
                                     ("json", "evaluation_verts.json: not valid JSON")])
def test_freihand_reader_refuses_malformed(tmp_path: Path, bad: str, msg: str) -> None:
    from tasks.real.hand_format import read_freihand

    make_freihand(tmp_path, malformed=bad)
    with pytest.raises(DataError, match=msg):
        read_freihand(tmp_path / "freihand", "test")


# ---------------------------------------------------------------------------------------------- HO3D reader


@pytest.mark.parametrize("version", [2, 3])
def test_ho3d_reader(tmp_path: Path, version: int) -> None:
    from tasks.protocols import MANO_TO_FREIHAND
    from tasks.real.hand_format import read_ho3d

    fx = make_ho3d(tmp_path, version)
    train = read_ho3d(tmp_path / "ho3d", "train")
    assert train.ids == ["MC1/0000", "MC1/0002"]  # frame 0001 has no hand annotation
    want = fx["train_joints"][:, list(MANO_TO_FREIHAND)] * np.array([1, -1, -1])  # OpenGL -> OpenCV, FreiHAND order
    assert np.allclose(train.joints3d, want, atol=1e-6) and (train.joints3d[..., 2] > 0).all()
    assert train.mano.shape == (2, 61) and train.bbox.shape == (2, 4)
    test = read_ho3d(tmp_path / "ho3d", "test")
    assert test.ids == fx["eval_ids"] and test.joints3d is None
    assert np.allclose(test.root[0], [0.01, -0.02, 0.5]) and np.allclose(test.bbox[0], [4, 3, 22, 17])
    assert test.images[0].suffix == (".jpg" if version == 3 else ".png")


@pytest.mark.parametrize("bad,msg", [("shape", r"camMat has shape \(3, 4\)"),
                                     ("list", "line 'not-a-frame-line' is not '<sequence>/<frame id>'")])
def test_ho3d_reader_refuses_malformed(tmp_path: Path, bad: str, msg: str) -> None:
    from tasks.real.hand_format import read_ho3d

    make_ho3d(tmp_path, malformed=bad)
    with pytest.raises(DataError, match=msg):
        read_ho3d(tmp_path / "ho3d", "test")


def test_ho3d_reader_refuses_code(tmp_path: Path) -> None:
    from tasks.real.hand_format import read_ho3d

    make_ho3d(tmp_path, malformed="code")
    with pytest.raises(DataError, match="which is not plain data"):
        read_ho3d(tmp_path / "ho3d", "train")
    assert not (tmp_path / "pwned-ho3d").exists()


# ---------------------------------------------------------------------------------------------- ImageFolder reader


def test_imagefolder_reader(tmp_path: Path) -> None:
    from tasks.real.imagefolder import read_image_folder

    classes = make_imagefolder(tmp_path)
    tr = read_image_folder(tmp_path / "imagefolder", "train")
    assert tr.classes == sorted(classes) and tr.labels.tolist() == [0, 0, 1, 1, 2, 2]
    te = read_image_folder(tmp_path / "imagefolder", "test", tr.classes)
    assert len(te.images) == 6


@pytest.mark.parametrize("bad,split,msg", [("extra", "test", r"classes \['wave'\] do not exist in the train"),
                                           ("empty", "train", "holds no .jpg")])
def test_imagefolder_reader_refuses_malformed(tmp_path: Path, bad: str, split: str, msg: str) -> None:
    from tasks.real.imagefolder import read_image_folder

    make_imagefolder(tmp_path, malformed=bad)
    classes = None if split == "train" else ["fist", "open", "point"]
    with pytest.raises(DataError, match=msg):
        read_image_folder(tmp_path / "imagefolder", split, classes)
