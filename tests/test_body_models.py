"""The generated SMPL/MANO-format models: smplx loads them, meshes are closed, skinning and regressors are sane,
shape directions behave, real-file override and the chumpy-free converter work."""

from __future__ import annotations

import pickle
import shutil
import sys
import types

import numpy as np
import pytest
import torch
import trimesh

from core.errors import CpcbenchError
from humans import body_model, body_skeleton, hand_model, models


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cpcbench-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CPCBENCH_CACHE", str(root))
        mp.delenv("CPCBENCH_MODELS", raising=False)
        yield root


@pytest.fixture(scope="module")
def smpl_file(cache):
    return models.model_file("smpl")


@pytest.fixture(scope="module")
def mano_file(cache):
    return models.model_file("mano")


def _plain(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def test_generated_smpl_loads_with_plain_smplx(smpl_file):
    import smplx

    m = smplx.SMPL(model_path=str(smpl_file))
    out = m(betas=torch.zeros(1, 10), body_pose=torch.zeros(1, 69), global_orient=torch.zeros(1, 3))
    assert m.J_regressor.shape == (24, 6890)
    assert out.joints.shape == (1, 45, 3) and out.vertices.shape == (1, 6890, 3)
    j = out.joints[0].detach().numpy()
    assert np.isfinite(j).all()
    # smplx's extra keypoints are meaningful: nose in front of the head, toes in front of the heels, thumbs
    # tip beyond the wrists
    names = (["nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"]
             + [s + f for s in "lr" for f in ("thumb", "index", "middle", "ring", "pinky")])  # smplx's order
    extra = dict(zip(names, j[24:], strict=True))
    assert extra["nose"][2] > j[15, 2] + 0.05 and extra["nose"][1] > j[12, 1]
    assert extra["LBigToe"][2] > extra["LHeel"][2] + 0.15 and extra["RBigToe"][2] > extra["RHeel"][2] + 0.15
    assert extra["lthumb"][0] > j[20, 0] and extra["rthumb"][0] < j[21, 0]
    assert extra["leye"][0] > 0 > extra["reye"][0]


def test_generated_mano_loads_with_plain_smplx_and_gives_21_keypoints(mano_file):
    import smplx

    m = smplx.MANO(model_path=str(mano_file), is_rhand=True, use_pca=False, flat_hand_mean=True)
    out = m(betas=torch.zeros(1, 10), global_orient=torch.zeros(1, 3), hand_pose=torch.zeros(1, 45))
    assert out.joints.shape == (1, 16, 3) and out.vertices.shape == (1, 778, 3)
    pca = smplx.MANO(model_path=str(mano_file), is_rhand=True, use_pca=True, num_pca_comps=6)
    assert pca(betas=torch.zeros(1, 10), global_orient=torch.zeros(1, 3),
               hand_pose=torch.zeros(1, 6)).vertices.shape == (1, 778, 3)
    res = models.forward("mano", {"global_orient": np.zeros((2, 3)), "hand_pose": np.zeros((2, 45))})
    assert res["joints"].shape == (2, 21, 3)
    j = res["joints"][0].numpy()
    # FreiHAND order: tips (4, 8, 12, 16, 20) are the far ends of their chains, beyond the wrist along -x
    for f in range(5):
        chain = j[[0, 1 + 4 * f, 2 + 4 * f, 3 + 4 * f, 4 + 4 * f]]
        d = np.linalg.norm(chain - j[0], axis=1)
        assert np.all(np.diff(d) > 0), f"finger {f} keypoints not ordered from the wrist"


@pytest.mark.parametrize("kind", ["smpl", "mano"])
def test_meshes_watertight_weights_and_regressors(kind, cache):
    data = _plain(models.model_file(kind))
    v, f = data["v_template"], data["f"]
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    for part in mesh.split(only_watertight=False):
        assert part.is_watertight and part.volume > 0  # outward normals, every part closed
    w = data["weights"]
    assert np.all(w >= 0) and np.allclose(w.sum(1), 1.0)
    jr = data["J_regressor"]
    assert np.all(jr >= 0) and np.allclose(jr.sum(1), 1.0)
    rest = body_skeleton.rest_joints() if kind == "smpl" else hand_model.REST_JOINTS
    np.testing.assert_allclose(jr @ v, rest, atol=1e-9)
    nj = 24 if kind == "smpl" else 16
    assert data["kintree_table"].shape == (2, nj)
    assert data["posedirs"].shape == (len(v), 3, 9 * (nj - 1))
    assert data["shapedirs"].shape == (len(v), 3, 10)
    # skinning is smooth: the weight of a vertex's dominant joint differs little between neighbours
    edges = mesh.edges_unique
    assert np.abs(w[edges[:, 0]] - w[edges[:, 1]]).max() < 0.35


def test_body_shape_and_proportions(cache):
    data = _plain(models.model_file("smpl"))
    v, sd = data["v_template"], data["shapedirs"]
    height = np.ptp(v[:, 1])
    assert 1.6 < height < 1.85
    assert abs(v[:, 1].max() - 0.78) < 0.1 and np.allclose(data["J_regressor"][0] @ v, 0, atol=1e-9)
    hs = [np.ptp((v + sd[:, :, 0] * b)[:, 1]) for b in np.linspace(-2, 2, 9)]
    assert np.all(np.diff(hs) > 0.02), hs  # stature: monotonic, cm per step
    jr = data["J_regressor"]
    legs = [np.linalg.norm(jr[1] @ (v + sd[:, :, 2] * b) - jr[7] @ (v + sd[:, :, 2] * b)) for b in (-2, 0, 2)]
    assert legs[0] < legs[1] < legs[2]
    sh = [np.ptp(jr[[16, 17]] @ (v + sd[:, :, 3] * b), axis=0)[0] for b in (-2, 0, 2)]
    assert sh[0] < sh[1] < sh[2]
    vol = [trimesh.Trimesh(v + sd[:, :, 1] * b, data["f"], process=False).volume for b in (-2, 0, 2)]
    assert vol[0] < vol[1] < vol[2]
    # genders differ plausibly
    male, female = _plain(models.model_file("smpl", "male")), _plain(models.model_file("smpl", "female"))
    assert np.ptp(male["v_template"][:, 1]) > height > np.ptp(female["v_template"][:, 1])


def test_model_info_parts_and_h36m(cache):
    info = models.model_info("smpl")
    assert info["num_verts"] == 6890 and info["source"] == "synthetic"
    assert info["joint_names"][:3] == ["pelvis", "left_hip", "right_hip"] and len(info["parents"]) == 24
    pov = info["part_of_vertex"]
    assert pov.shape == (6890,) and set(np.unique(pov)) == set(range(1, 15))
    r = info["h36m_regressor"]
    assert r.shape == (17, 6890) and np.all(r >= 0) and np.allclose(r.sum(1), 1)
    v = _plain(models.model_file("smpl"))["v_template"]
    h = r @ v
    assert h[10, 1] > v[:, 1].max() - 0.02  # headtop at the top of the head
    assert h[1, 0] > 0 > h[4, 0]  # left hip at +x
    hand = models.model_info("mano")
    assert hand["joint_names"][0] == "wrist" and len(hand["joint_names"]) == 21
    assert set(np.unique(hand["part_of_vertex"])) == set(range(1, 7))
    hv = _plain(models.model_file("mano"))["v_template"]
    pov = hand["part_of_vertex"]
    for k, tip in enumerate(hand["fingertip_ids"]):  # thumb..pinky: each tip is its finger's farthest vertex
        part = k + 2
        ids = np.flatnonzero(pov == part)
        far = ids[np.argmax(np.linalg.norm(hv[ids] - hv[np.flatnonzero(pov == 1)].mean(0), axis=1))]
        assert np.linalg.norm(hv[far] - hv[tip]) < 0.006


def test_forward_matches_smplx_and_validates(cache):
    rng = np.random.default_rng(0)
    p = {"global_orient": rng.normal(0, 0.3, (3, 3)), "body_pose": rng.normal(0, 0.2, (3, 69)),
         "betas": rng.normal(0, 1, (3, 10)), "transl": rng.normal(0, 1, (3, 3))}
    out = models.forward("smpl", p)
    assert out["verts"].shape == (3, 6890, 3) and out["joints"].shape == (3, 24, 3)
    m = models.load_model("smpl")
    assert models.load_model("smpl") is m
    ref = m(**{k: torch.tensor(v, dtype=torch.float32) for k, v in p.items()})
    torch.testing.assert_close(out["joints"], ref.joints[:, :24])
    with pytest.raises(CpcbenchError, match="body_pose"):
        models.forward("smpl", {"global_orient": np.zeros((2, 3)), "body_pose": np.zeros((2, 66))})
    with pytest.raises(CpcbenchError, match="unknown"):
        models.load_model("smplx")
    with pytest.raises(CpcbenchError, match="gender"):
        models.load_model("smpl", "robot")


def test_generation_is_deterministic(cache, tmp_path):
    a = body_model.generate_smpl("female")
    b = _plain(models.model_file("smpl", "female"))
    for k in ("v_template", "f", "weights", "J_regressor", "shapedirs", "J_regressor_h36m"):
        np.testing.assert_array_equal(a[k], b[k])
    h1 = hand_model.generate_mano(num_pose_samples=2000)
    h2 = hand_model.generate_mano(num_pose_samples=2000)
    for k in ("v_template", "f", "weights", "hands_components", "hands_mean"):
        np.testing.assert_array_equal(h1[k], h2[k])
    assert np.allclose(h1["hands_components"] @ h1["hands_components"].T, np.eye(45), atol=1e-9)


def test_real_file_override(cache, tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    data = _plain(models.model_file("smpl"))
    data = {k: v for k, v in data.items() if k not in ("generator", "part_of_vertex", "J_regressor_h36m")}
    data["v_template"] = data["v_template"] * 1.1
    with open(real / "SMPL_NEUTRAL.pkl", "wb") as f:
        pickle.dump(data, f)
    shutil.copy(models.model_file("mano"), real / "MANO_RIGHT.pkl")
    monkeypatch.setenv("CPCBENCH_MODELS", str(real))
    assert models.model_file("smpl") == real / "SMPL_NEUTRAL.pkl"
    info = models.model_info("smpl")
    assert info["source"].startswith("real: ")
    assert set(np.unique(info["part_of_vertex"])) <= set(range(1, 15))  # derived from the skinning weights
    assert info["h36m_regressor"].shape == (17, 6890)
    out = models.forward("smpl", {"global_orient": np.zeros((1, 3)), "body_pose": np.zeros((1, 69))})
    np.testing.assert_allclose(out["verts"][0].numpy(), data["v_template"], atol=1e-5)
    assert models.model_file("mano") == real / "MANO_RIGHT.pkl"
    assert models.model_file("smpl", "male").parent != real  # no real male file: the generated one
    # the official download name is recognised
    shutil.copy(real / "SMPL_NEUTRAL.pkl", real / "basicModel_m_lbs_10_207_0_v1.0.0.pkl")
    assert models.model_file("smpl", "male") == real / "basicModel_m_lbs_10_207_0_v1.0.0.pkl"
    # .npz files (e.g. written by convert_official) work the same way
    models.convert_official(real / "SMPL_NEUTRAL.pkl", real / "smpl" / "SMPL_FEMALE.npz")
    assert models.model_file("smpl", "female") == real / "smpl" / "SMPL_FEMALE.npz"
    out_f = models.forward("smpl", {"global_orient": np.zeros((1, 3)), "body_pose": np.zeros((1, 69))},
                           model=models.load_model("smpl", "female"))
    np.testing.assert_allclose(out_f["verts"][0].numpy(), data["v_template"], atol=1e-5)


def test_convert_official_without_chumpy(cache, tmp_path):
    src = _plain(models.model_file("mano"))
    # an "official" pickle: arrays wrapped in instances of a class chumpy.ch.Ch (registered only while writing)
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x
            self.dterms = ("x",)

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch.Ch = Ch
    chumpy.ch = ch
    official = {k: (Ch(v) if k in ("v_template", "shapedirs", "posedirs", "weights") else v)
                for k, v in src.items() if k not in ("generator", "part_of_vertex", "part_names", "rest_joints")}
    import scipy.sparse

    official["J_regressor"] = scipy.sparse.csc_matrix(official["J_regressor"])
    expr = Ch(None)  # a chumpy expression (no stored value): optional, so it is dropped
    del expr.x
    expr.a = Ch(np.ones(3))
    official["J"] = expr
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, ch
    try:
        with open(tmp_path / "MANO_RIGHT_official.pkl", "wb") as f:
            pickle.dump(official, f, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    with pytest.raises(ModuleNotFoundError):  # a plain unpickle needs chumpy
        _plain(tmp_path / "MANO_RIGHT_official.pkl")
    dst = models.convert_official(tmp_path / "MANO_RIGHT_official.pkl", tmp_path / "out" / "MANO_RIGHT.pkl")
    clean = _plain(dst)
    assert "chumpy" not in sys.modules and "J" not in clean
    for k in ("v_template", "shapedirs", "weights", "J_regressor", "f", "hands_components"):
        assert isinstance(clean[k], np.ndarray)
        np.testing.assert_array_equal(clean[k], src[k])
    import smplx

    m = smplx.MANO(model_path=str(dst), use_pca=False)
    assert m.v_template.shape == (778, 3)
    with pytest.raises(CpcbenchError, match="cannot read"):
        (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
        models.read_model_file(tmp_path / "bad.pkl")


def test_generator_digest_covers_every_generator_source():
    """The cache key of the generated models hashes every module that makes them: a split of the generator into
    new modules must list them, or an edit there would reuse a stale cached model."""
    from test_layers import import_graph

    graph = import_graph()
    made_by, todo = set(), ["humans.body_model", "humans.hand_model"]
    while todo:
        mod = todo.pop()
        if mod not in made_by:
            made_by.add(mod)
            todo += [m for m in graph[mod] if m.startswith("humans.")]
    assert {m.rpartition(".")[2] + ".py" for m in made_by} == set(models.GENERATOR_SOURCES)
