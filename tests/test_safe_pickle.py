"""The restricted unpickler that reads the published pickles of 3DPW, EMDB and HO3D (tasks/real/safe_pickle.py):
plain data in, code refused and never run."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from fixtures_real import CodeCarrier, code_pickle, py2_pickle, py3_pickle_numpy1

from harness.errors import DataError
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
