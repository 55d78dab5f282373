"""Pickle writers for the real-benchmark fixtures (tests/fixtures_real.py): pickles as Python 2 + numpy 1.x wrote
them (3DPW, HO3D v2), Python 3 pickles with numpy 1.x names at any protocol (EMDB, HO3D v3), and a pickle that
carries code (what the restricted unpickler must refuse)."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any


class _NumpyOnePickler(pickle._Pickler):  # the pure-Python pickler, so that opcodes can be overridden
    """Writes numpy globals under numpy 1.x's names (``numpy.core.*``), as the published files have them."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "")
        qual = name or getattr(obj, "__qualname__", obj.__name__)
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core"):]
        elif module.startswith("numpy") and qual in ("ndarray", "dtype"):
            module = "numpy"
        self.write(pickle.GLOBAL + module.encode() + b"\n" + qual.encode() + b"\n")
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)


class _Py2Pickler(_NumpyOnePickler):
    """Protocol 2 with Python 2 byte strings: ``str`` and ``bytes`` both become BINSTRING / SHORT_BINSTRING."""

    def _save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(data)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + data)
        self.memoize(obj)

    dispatch = dict(_NumpyOnePickler.dispatch)
    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def py2_pickle(obj: Any) -> bytes:
    """``obj`` pickled as Python 2 + numpy 1.x would have written it (protocol 2, byte strings)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def py3_pickle_numpy1(obj: Any, protocol: int = 4) -> bytes:
    """``obj`` pickled by Python 3 (``protocol``) with numpy 1.x global names."""
    buf = io.BytesIO()
    _NumpyOnePickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


class CodeCarrier:
    """Unpickling this runs ``os.system("touch <marker>")`` — what a hostile pickle in a data root could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


def code_pickle(marker: Path, protocol: int = 2) -> bytes:
    """A dict that looks like annotations but carries code (one value is a ``CodeCarrier``)."""
    return pickle.dumps({"sequence": "evil", "poses": [CodeCarrier(marker)]}, protocol=protocol)
