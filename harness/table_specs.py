"""Table specs and record filters for ``cpcbench tables``: which records a row holds, which columns a table has.

A spec (``leaderboards/specs/*.yaml``, format in ``leaderboards/specs/README.md``) lays out one table of the
paper: rows are filters on record fields, columns are tasks (or a domain's tasks) x metrics (x data fractions),
and published reference numbers of other methods (``leaderboards/published.yaml``) may be asked for by id.
Unknown keys and unknown filter operators are errors, so a typo never silently selects nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.config import ConfigError, from_dict, load_yaml
from core.errors import CpcbenchError

DOMAIN_ORDER = ("body", "hand")
_NAME_DOMAINS = {"3dpw": "body", "emdb": "body", "h36m-p1": "body", "h36m-p2": "body", "freihand": "hand",
                 "ho3d": "hand"}
SHORTCUTS = {"task": "task.name", "backbone": "backbone.name", "weights": "backbone.weights_sha256"}
_MISSING = object()


class TableError(CpcbenchError, ValueError):
    """A table spec or published-numbers file that does not follow its schema, or nothing to tabulate."""


# ---------------------------------------------------------------------------------------------- record fields
def task_domain(rec: Mapping[str, Any]) -> str:
    """``body`` | ``hand`` | ``other``: the record's ``task.domain``, else known from the task name."""
    task = rec["task"]
    if task.get("domain"):
        return str(task["domain"])
    name = str(task["name"])
    if name in _NAME_DOMAINS:
        return _NAME_DOMAINS[name]
    for dom in DOMAIN_ORDER:
        if dom in name:
            return dom
    return "other"


def _lookup(node: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def get_field(rec: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` or ``_MISSING``.

    ``domain`` is the task's domain; ``pretrain.<key>`` reads the backbone's pretraining config: first the
    resolved run config a cpcbench checkpoint carries (``backbone.pretrain.pretrain``: ``data.pair_mix``,
    ``cpc.mask_strategy``, ...), then ``backbone.pretrain`` itself (``method``, ``domain``, ``steps``, ...).
    """
    if path == "domain":
        return task_domain(rec)
    if path.startswith("pretrain."):
        rest = path[len("pretrain."):]
        for base in ("backbone.pretrain.pretrain", "backbone.pretrain"):
            value = _lookup(_lookup(rec, base), rest)
            if value is not _MISSING:
                return value
        return _MISSING
    return _lookup(rec, SHORTCUTS.get(path, path))


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b) if isinstance(a, str) or isinstance(b, str) else a == b


_OPS = ("eq", "ne", "in", "not_in", "gt", "ge", "lt", "le", "exists")


def _match_value(value: Any, cond: Any, where: str) -> bool:
    if isinstance(cond, Mapping):
        unknown = [k for k in cond if k not in _OPS]
        if unknown:
            raise TableError(f"filter on {where!r}: unknown operator(s) {unknown}; use {', '.join(_OPS)}")
        ok = True
        for op, arg in cond.items():
            if op == "exists":
                ok &= (value is not _MISSING and value is not None) == bool(arg)
            elif value is _MISSING or value is None:
                ok &= op in ("ne", "not_in")
            elif op == "eq":
                ok &= _equal(value, arg)
            elif op == "ne":
                ok &= not _equal(value, arg)
            elif op == "in":
                ok &= any(_equal(value, a) for a in arg)
            elif op == "not_in":
                ok &= not any(_equal(value, a) for a in arg)
            elif op in ("gt", "ge", "lt", "le"):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    return False
                ok &= {"gt": value > arg, "ge": value >= arg, "lt": value < arg, "le": value <= arg}[op]
            else:
                raise TableError(f"filter operator {op!r} is not implemented")
        return ok
    if isinstance(cond, list | tuple):
        return any(_match_value(value, c, where) for c in cond)
    if cond is None:
        return value is _MISSING or value is None
    return value is not _MISSING and _equal(value, cond)


def matches(rec: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """Whether ``rec`` satisfies every ``path: condition`` of ``where``.

    A condition is a value (equality; numbers compared with a tiny tolerance), a list (any of), ``null``
    (absent) or an operator mapping ``{gt: 0, lt: 1}`` with operators eq, ne, in, not_in, gt, ge, lt, le,
    exists. Paths are dotted keys into the record; ``task``/``backbone``/``weights`` are short for
    ``task.name``/``backbone.name``/``backbone.weights_sha256``, ``domain`` is the task's domain and
    ``pretrain.<key>`` the backbone's pretraining config (``pretrain.data.pair_mix``; see ``get_field``).
    """
    return all(_match_value(get_field(rec, k), v, k) for k, v in where.items())

METHOD_LABELS = {"cpc": "CPC", "mae": "MAE", "dino": "DINO", "supervised": "Supervised", "scratch": "Scratch"}
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
CNN_PREFIX = "cnn:"  # pretraining.cnn.PREFIX (not imported: the table modules stay free of torch)


def is_checkpoint_name(name: str) -> bool:
    """Whether a record's backbone name is a checkpoint path (``--backbone runs/.../backbone.safetensors``)."""
    return "/" in name or "\\" in name or name.endswith(_WEIGHT_SUFFIXES)


def is_reference_cnn(name: str) -> bool:
    """Whether a record's backbone name is a reference CNN (``--backbone cnn:NAME``, ``pretraining.cnn``)."""
    return name.startswith(CNN_PREFIX)


def reference_cnn_label(name: str) -> str:
    """``cnn:resnet18`` -> ``ResNet-18, random init (reference CNN)``: a diagnostic row, not a pretraining."""
    arch = name[len(CNN_PREFIX):]
    m = re.fullmatch(r"resnet(\d+)", arch)
    return f"{f'ResNet-{m.group(1)}' if m else arch}, random init (reference CNN)"


def backbone_label(name: str, records: Sequence[Mapping[str, Any]]) -> str:
    """A human label for a backbone: its name, a reference CNN's architecture marked as such
    (``reference_cnn_label``), a random-init variant's settings (``Scratch (patch=16, stem=patch)``), or for a
    checkpoint file one read from the pretraining config its records carry: ``CPC, cross-view pairs only``,
    ``CPC, uniform masking``; ``CPC (body-cpc-run)`` (the run's directory) when the config names nothing that
    differs from the method's standard recipe."""
    if is_reference_cnn(name):
        return reference_cnn_label(name)
    if name.startswith("scratch,"):  # the random init of an architecture variant: scratch,patch=16,stem=patch
        return f"Scratch ({name.partition(',')[2].replace(',', ', ')})"
    if not is_checkpoint_name(name) or not records:
        return name
    rec = records[0]
    method = get_field(rec, "pretrain.method")
    method = str(rec["method"] if method is _MISSING or not method else method)
    parts = []
    if method == "cpc":
        mix = get_field(rec, "pretrain.data.pair_mix")
        if isinstance(mix, int | float) and not isinstance(mix, bool):
            if _equal(mix, 1.0):
                parts.append("cross-view pairs only")
            elif _equal(mix, 0.0):
                parts.append("cross-pose pairs only")
        mask, usual = get_field(rec, "pretrain.cpc.mask_strategy"), "human"
    else:
        mask, usual = get_field(rec, f"pretrain.{method}.mask_strategy"), "uniform"
    if isinstance(mask, str) and mask and mask != usual:
        parts.append(f"{'human-aware' if mask == 'human' else mask} masking")
    label = METHOD_LABELS.get(method, method)
    if parts:
        return f"{label}, {', '.join(parts)}"
    path = name.replace("\\", "/").rstrip("/").split("/")
    run = path[-2] if len(path) > 1 and path[-1].endswith(_WEIGHT_SUFFIXES) else path[-1]
    return f"{label} ({run})"


# ---------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class RowSpec:
    label: str
    where: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnSpec:
    """Columns for ``task`` (or every task of ``domain``); all metrics found unless ``metrics`` names them;
    ``fractions`` restricts (and orders) the data fractions. A column named with explicit ``metrics`` and
    no records still appears when a published row has numbers for it."""

    task: str = ""
    domain: str = ""
    metrics: tuple[str, ...] = ()
    fractions: tuple[float, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """One paper table layout (a YAML file in ``leaderboards/specs/``)."""

    name: str
    title: str
    rows: tuple[RowSpec, ...]
    columns: tuple[ColumnSpec, ...]
    caption: str = ""
    where: dict[str, Any] = field(default_factory=dict)
    published: tuple[str, ...] = ()
    plot: Literal["none", "bars", "curve"] = "none"
    alpha: float = 0.05
    decimals: int | None = None


def load_spec(path: str | Path) -> TableSpec:
    path = Path(path)
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    try:
        spec = from_dict(TableSpec, data)
    except ConfigError as e:
        raise TableError(f"table spec {path}: {e}") from None
    for c in spec.columns:
        if bool(c.task) == bool(c.domain):
            raise TableError(f"table spec {path}: each column needs exactly one of task or domain, got {c}")
    if not spec.rows:
        raise TableError(f"table spec {path}: no rows")
    for r in [spec.where, *(row.where for row in spec.rows)]:
        for k, v in r.items():  # validate operators early: a typo must not silently select nothing
            _match_value(_MISSING, v, k)
    return spec


def load_specs(directory: str | Path) -> list[TableSpec]:
    directory = Path(directory)
    if not directory.is_dir():
        raise TableError(f"table spec directory {directory} not found; pass --specs DIR")
    specs = [load_spec(p) for p in sorted(directory.glob("*.yaml"))]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TableError(f"table specs in {directory} share names {dupes}; names become file names")
    return specs


@dataclass(frozen=True)
class Published:
    """Reference numbers of another method from its paper: never measured here."""

    id: str
    label: str
    citation: str
    source: str
    results: dict[str, dict[str, float]]  # task -> metric -> value
    units: dict[str, str]
    higher_is_better: dict[str, bool]


def load_published(path: str | Path) -> dict[str, Published]:
    """``published.yaml``: ``metrics: {name: {unit, higher_is_better}}``, ``entries: [{id, label, citation,
    source, results: {task: {metric: value}}}]``."""
    path = Path(path)
    data = load_yaml(path)
    metrics = data.get("metrics", {})
    out: dict[str, Published] = {}
    for i, e in enumerate(data.get("entries", [])):
        missing = [k for k in ("id", "label", "citation", "source", "results") if k not in e]
        if missing:
            raise TableError(f"{path}: entry #{i} lacks {missing}")
        for task, vals in e["results"].items():
            for m, v in vals.items():
                if m not in metrics:
                    raise TableError(f"{path}: entry {e['id']!r} reports {task}/{m} but metrics: has no {m!r} "
                                     "(give its unit and higher_is_better)")
                if not isinstance(v, int | float) or not math.isfinite(v):
                    raise TableError(f"{path}: entry {e['id']!r} {task}/{m} = {v!r} is not a number")
        if e["id"] in out:
            raise TableError(f"{path}: duplicate entry id {e['id']!r}")
        out[e["id"]] = Published(
            id=e["id"], label=e["label"], citation=e["citation"], source=e["source"],
            results={t: {m: float(v) for m, v in vals.items()} for t, vals in e["results"].items()},
            units={m: str(s.get("unit", "")) for m, s in metrics.items()},
            higher_is_better={m: bool(s["higher_is_better"]) for m, s in metrics.items()})
    return out
