"""A restricted unpickler for the pickled annotation files of 3DPW, EMDB and HO3D.

Those datasets publish their labels as pickles (3DPW and HO3D were written by Python 2 and must be read with
``encoding="latin1"``, as their own loaders do: nkolot/SPIN ``datasets/preprocess/pw3d.py``, shreyashampali/ho3d
``utils/vis_utils.py``). Unpickling runs whatever callables a file names, so a pickle dropped into a data root
could run code. ``load_pickle`` admits only what annotation files need to be rebuilt:

- numpy arrays and scalars: ``_reconstruct`` / ``scalar`` / ``_frombuffer`` under both the numpy 1.x
  (``numpy.core.multiarray``) and numpy 2 (``numpy._core.multiarray``) names, ``numpy.ndarray``, ``numpy.dtype``;
- plain containers and scalars: ``set``, ``frozenset``, ``complex``, ``slice``, ``collections.OrderedDict``
  (dict, list, tuple, str, bytes, int, float, bool and None need no global);
- the byte strings that Python 3 writes at protocols 0-2 (where pickle has no bytes opcode): ``_codecs.encode``
  with a latin-1 encoding only (non-empty ``bytes``), ``bytes()`` (every empty ``bytes``, hence the raw data of
  every empty numpy array), ``bytearray()`` / ``bytearray(<bytes>)``, under the Python 3 (``builtins``) and
  Python 2 (``__builtin__``) names. Only those argument forms: ``bytes(10**12)`` or ``bytes(<iterable>)`` is
  refused.

Any other global -> ``DataError("refusing <file>: it contains <module.name>, which is not plain data")``, raised
before anything the file names is called.
"""

from __future__ import annotations

import codecs
import collections
import importlib
import io
import pickle
from pathlib import Path
from typing import Any

from core.errors import DataError

_LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"}


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` restricted to the latin-1 encoding that Python 3 uses to pickle bytes."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name not in {"iso8859-1", "latin-1"}:
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not plain data")
    return codecs.encode(obj, "latin1", errors)


def _plain_bytes(*args: Any) -> bytes:
    """``bytes()`` or ``bytes(<bytes>)``: the calls Python 3's pickler writes; any other form is refused."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise pickle.UnpicklingError(f"bytes{tuple(type(a).__name__ for a in args)} is not plain data")


def _plain_bytearray(*args: Any) -> bytearray:
    """``bytearray()`` or ``bytearray(<bytes>)`` (Python 3's pickler, protocols 0-4); any other form is refused."""
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])
    raise pickle.UnpicklingError(f"bytearray{tuple(type(a).__name__ for a in args)} is not plain data")


def _numpy_attr(module_tail: str, name: str) -> Any:
    """numpy's ``<module_tail>.<name>`` wherever this numpy keeps it (``numpy._core`` in 2.x, ``numpy.core`` in 1.x)."""
    for prefix in ("numpy._core", "numpy.core"):
        try:
            mod = importlib.import_module(f"{prefix}.{module_tail}")
        except ImportError:
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    raise pickle.UnpicklingError(f"this numpy has no {module_tail}.{name}")


def _allowed() -> dict[tuple[str, str], Any]:
    import numpy as np

    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = _numpy_attr("multiarray", "_reconstruct")
        table[(f"{core}.multiarray", "scalar")] = _numpy_attr("multiarray", "scalar")
        table[(f"{core}.numeric", "_frombuffer")] = _numpy_attr("numeric", "_frombuffer")
    for builtins_mod in ("builtins", "__builtin__"):  # Python 3 and Python 2 names
        for name, obj in (("set", set), ("frozenset", frozenset), ("complex", complex), ("slice", slice),
                          ("bytes", _plain_bytes), ("bytearray", _plain_bytearray)):
            table[(builtins_mod, name)] = obj
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only numpy arrays, scalars and plain containers."""

    def __init__(self, file: io.BufferedIOBase, *, source: str, encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding, fix_imports=True)
        self._source = source
        self._table = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        obj = self._table.get((module, name))
        if obj is None:
            raise DataError(f"refusing {self._source}: it contains {module}.{name}, which is not plain data "
                            "(a pickle in a data root may only hold numpy arrays, numbers, strings and containers)")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"refusing {self._source}: it uses persistent ids, which are not plain data")


def loads_pickle(data: bytes, *, source: str = "<bytes>", encoding: str = "latin1") -> Any:
    """Unpickle ``data`` with ``RestrictedUnpickler`` (see the module docstring); errors name ``source``."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source, encoding=encoding).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            UnicodeDecodeError, OverflowError, MemoryError) as err:
        raise DataError(f"cannot read {source}: not a valid pickle ({type(err).__name__}: {err}); "
                        "re-download or re-extract this file") from err


def load_pickle(path: str | Path, *, encoding: str = "latin1") -> Any:
    """Read a pickled annotation file with the restricted unpickler. A missing file raises ``DataError``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err
    return loads_pickle(data, source=str(path), encoding=encoding)
