"""The restricted unpickler that reads the published pickles of 3DPW, EMDB and HO3D (tasks/real/safe_pickle.py):
plain data in, code refused and never run."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from fixtures_real import CodeCarrier, code_pickle, py2_pickle, py3_pickle_numpy1

from core.errors import DataError
from tasks.real.safe_pickle import load_pickle, loads_pickle

PLAIN = {"a": np.arange(6.0).reshape(2, 3), "mask": [np.array([True, False])], "g": "m", "n": np.int64(3),
         "x": np.float32(2.5), "t": (1, 2.0, None, b"raw"), "s": {1, 2}, "c": 1 + 2j}


@pytest.mark.parametrize("dump", [py2_pickle, py3_pickle_numpy1, lambda o: pickle.dumps(o, 0),
                                  lambda o: pickle.dumps(o, 2), lambda o: pickle.dumps(o, 5)],
                         ids=["py2-numpy1", "py3-numpy1", "proto0", "proto2", "proto5"])
def test_safe_pickle_round_trips_plain_data(dump) -> None:
    out = loads_pickle(dump(PLAIN))
    assert np.array_equal(out["a"], PLAIN["a"]) and out["a"].dtype == np.float64
    assert out["mask"][0].dtype == bool and out["mask"][0].tolist() == [True, False]
    assert out["g"] == "m" and out["n"] == 3 and out["x"] == np.float32(2.5) and out["s"] == {1, 2}
    assert out["t"][:3] == (1, 2.0, None) and out["c"] == 1 + 2j


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_safe_pickle_refuses_code_and_runs_nothing(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(CodeCarrier(tmp_path / "control"), protocol))  # the carrier really runs code
    assert (tmp_path / "control").exists()
    path = tmp_path / "seq.pkl"
    path.write_bytes(code_pickle(marker, protocol))
    with pytest.raises(DataError, match=r"refusing .*seq\.pkl: it contains (posix|os)\.system, which is not plain"):
        load_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(S'1+1'\ntR.",                       # builtins.eval
    b"csubprocess\nPopen\n(S'true'\ntR.",                   # subprocess.Popen
    b"ccopy_reg\n_reconstructor\n(c__builtin__\nobject\nNtR.",  # py2 object reconstruction
])
def test_safe_pickle_refuses_other_globals(payload: bytes) -> None:
    with pytest.raises(DataError, match="which is not plain data"):
        loads_pickle(payload, source="x.pkl")


def test_safe_pickle_rejects_non_latin1_codec_and_garbage(tmp_path: Path) -> None:
    evil = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R."
    with pytest.raises(DataError, match="cannot read x.pkl"):
        loads_pickle(evil, source="x.pkl")
    with pytest.raises(DataError, match="not a valid pickle"):
        loads_pickle(py2_pickle(PLAIN)[:40], source="x.pkl")
    with pytest.raises(DataError, match="cannot read"):
        load_pickle(tmp_path / "missing.pkl")


# ---------------------------------------------------------------------------------------------- protocols 0-5
DTYPES = ["float64", "float32", "float16", "int64", "int32", "int8", "uint8", "uint16", "bool", "complex64", "<U3",
          "S2", [("x", "<f4"), ("k", "<i2")]]


def _arrays(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    out = {}
    for i, dt in enumerate(DTYPES):
        dtype = np.dtype(dt)
        if dtype.kind in "US":
            a = np.array(["ab", "c", "xyz", ""][:n] * (n // 4 + 1), dtype=dtype)[:n]
        elif dtype.names:
            a = np.zeros(n, dtype=dtype)
            a["x"], a["k"] = rng.standard_normal(n), np.arange(n)
        else:
            a = (rng.standard_normal(n) * 10).astype(dtype)
        out[f"a{i}"] = a.reshape((n,) if n == 0 else (n, 1))
    out["empty2d"] = np.zeros((0, 4), np.float64)  # like EMDB's bboxes.invalid_idxs when no frame is invalid
    return out


@pytest.mark.parametrize("n", [0, 3], ids=["empty", "non-empty"])
@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_safe_pickle_reads_arrays_at_every_protocol(protocol: int, n: int) -> None:
    data = {"arrays": _arrays(n), "invalid_idxs": np.array([], dtype=np.int64), "empty": b"", "raw": b"\x00\xff",
            "buf": bytearray(b"ab"), "nobuf": bytearray()}
    out = loads_pickle(pickle.dumps(data, protocol=protocol), source="seq.pkl")
    for k, a in data["arrays"].items():
        assert out["arrays"][k].dtype == a.dtype and out["arrays"][k].shape == a.shape
        assert np.array_equal(out["arrays"][k], a)
    assert out["invalid_idxs"].shape == (0,) and out["invalid_idxs"].dtype == np.int64
    assert out["empty"] == b"" and out["raw"] == b"\x00\xff"
    assert out["buf"] == bytearray(b"ab") and out["nobuf"] == bytearray()


def test_safe_pickle_reads_empty_arrays_under_numpy1_names() -> None:
    """An EMDB-style dict written by Python 3 at protocol 2 with numpy 1.x names (``numpy.core.multiarray``)."""
    from fixtures_real import py3_pickle_numpy1

    d = {"bboxes": {"bboxes": np.ones((2, 4)), "invalid_idxs": np.array([], dtype=np.int64)}}
    out = loads_pickle(py3_pickle_numpy1(d, protocol=2))
    assert out["bboxes"]["invalid_idxs"].shape == (0,) and np.array_equal(out["bboxes"]["bboxes"], np.ones((2, 4)))


@pytest.mark.parametrize("payload", [
    b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a;\x85R.",        # bytes(10**9): an allocation, not data
    b"\x80\x02c__builtin__\nbytes\n]q\x00(K\x01K\x02e\x85R.",   # bytes([1, 2]): an iterable
    b"\x80\x02cbuiltins\nbytearray\nJ\x00\xca\x9a;\x85R.",       # bytearray(10**9)
    b"\x80\x02c__builtin__\nbytes\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.",  # bytes(str, codec)
])
def test_safe_pickle_refuses_other_bytes_calls(payload: bytes) -> None:
    with pytest.raises(DataError, match=r"cannot read x\.pkl: not a valid pickle .*not plain data"):
        loads_pickle(payload, source="x.pkl")


@pytest.mark.parametrize("name", ["getattr", "eval", "exec", "__import__", "open", "type", "object"])
@pytest.mark.parametrize("module", ["builtins", "__builtin__"])
def test_safe_pickle_still_refuses_code_builtins(module: str, name: str) -> None:
    payload = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."
    with pytest.raises(DataError, match=rf"it contains {module}\.{name}, which is not plain data"):
        loads_pickle(payload, source="x.pkl")
