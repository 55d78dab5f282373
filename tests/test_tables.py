"""Tables: golden files, byte-for-byte regeneration, pooling, significance, filters, specs (rendering and the
HTML page in a browser: ``test_table_render.py``).

Golden files: ``tests/golden/records/`` (fixed records, rebuilt by ``tests/golden/make_records.py``) ->
``tests/golden/expected/`` (README.md and every table as md/csv/tex) with the shipped specs and published
numbers of ``leaderboards/``. After an intended change, regenerate with
``CPCBENCH_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_tables.py`` and review the diff by eye.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from harness.leaderboard import build_leaderboard, generate, to_csv, to_markdown
from harness.results import load_records
from harness.tables import TableError, load_spec, main_tables, matches, paired_p, spec_table

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
RECORDS = GOLDEN / "records"
SPECS = REPO / "leaderboards" / "specs"
PUBLISHED = REPO / "leaderboards" / "published.yaml"
UPDATE = os.environ.get("CPCBENCH_UPDATE_GOLDEN") == "1"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_board(out: Path) -> Path:
    """The golden leaderboard written by the CLI (``cpcbench tables --paper --out DIR``) into ``out``."""
    from typer.testing import CliRunner

    from harness.cli import app

    res = CliRunner().invoke(app, ["tables", "--paper", "--results", str(RECORDS), "--out", str(out),
                                   "--specs", str(SPECS), "--published", str(PUBLISHED), "--json"])
    assert res.exit_code == 0, res.output
    assert any(f.endswith("index.html") for f in json.loads(res.output)["files"])
    return out


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_board(tmp_path_factory.mktemp("lb"))


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return load_records(RECORDS)


def test_golden_tables(board_dir: Path) -> None:
    expected = GOLDEN / "expected"
    got = {k: v for k, v in _tree(board_dir).items() if k.endswith((".md", ".csv", ".tex"))}
    if UPDATE:
        shutil.rmtree(expected, ignore_errors=True)
        for name, data in got.items():
            (expected / name).parent.mkdir(parents=True, exist_ok=True)
            (expected / name).write_bytes(data)
    want = _tree(expected)
    assert sorted(got) == sorted(want), "set of generated tables changed; review and regenerate the golden files"
    for name in want:
        assert got[name].decode() == want[name].decode(), f"{name} differs from tests/golden/expected/{name}"


def test_regenerates_byte_for_byte(board_dir: Path, tmp_path: Path) -> None:
    """A leaderboards/ dir with its specs: delete every generated file, re-run -> identical bytes (PNG and HTML
    included), and identical to what --out wrote elsewhere (board_dir)."""
    lb = tmp_path / "leaderboards"
    shutil.copytree(SPECS, lb / "specs")
    shutil.copy(PUBLISHED, lb / "published.yaml")
    inputs = set(_tree(lb))
    generate(RECORDS, lb, paper=True, specs_dir=lb / "specs", published_path=lb / "published.yaml")
    first = {k: v for k, v in _tree(lb).items() if k not in inputs}
    assert any(k.endswith(".png") for k in first) and "index.html" in first
    for name in first:
        (lb / name).unlink()
    assert set(_tree(lb)) == inputs
    generate(RECORDS, lb, paper=True, specs_dir=lb / "specs", published_path=lb / "published.yaml")
    again = {k: v for k, v in _tree(lb).items() if k not in inputs}
    assert again == first == _tree(board_dir)


def test_stale_generated_files_removed_inputs_kept(tmp_path: Path) -> None:
    out = tmp_path / "lb"
    (out / "specs").mkdir(parents=True)
    (out / "specs" / "keep.yaml").write_text("title: x\n")
    (out / "tables").mkdir()
    (out / "tables" / "old-table.md").write_text("stale")
    (out / "tables" / "notes.txt").write_text("not ours")
    generate(RECORDS, out, paper=False, plots=False)
    assert not (out / "tables" / "old-table.md").exists()
    assert (out / "tables" / "notes.txt").exists() and (out / "specs" / "keep.yaml").exists()
    assert not (out / "tables" / "body-pretraining.md").exists()  # no --paper
    assert (out / "tables" / "main-body-finetune.md").exists()


def test_pooling_newest_seed_and_versions(records: list[dict]) -> None:
    body = next(t for t in main_tables(records) if t.name == "main-body-finetune")
    mae = next(r for r in body.rows if r.label == "mae")
    j = next(i for i, c in enumerate(body.columns) if c.key.task == "synth-body-mesh" and c.key.metric == "mpjpe")
    cell = mae.cells[j]
    # seed 0 was measured twice: the newer record (88.0) wins over the older (99.0); seeds 1, 2 from own records
    assert cell.per_seed == {0: 88.0, 1: 89.0, 2: 87.5}
    assert math.isclose(cell.mean, (88.0 + 89.0 + 87.5) / 3)
    assert math.isclose(cell.std, 0.7637626158259734)
    # two versions of synth-body-2d: separate columns, never one cell
    versions = {c.key.version for c in body.columns if c.key.task == "synth-body-2d"}
    assert versions == {"1", "2"}
    # smoke records never enter a table; the linear protocol gets its own table
    names = [t.name for t in main_tables(records)]
    assert not any("smoke" in n for n in names) and "main-body-linear" in names
    hand = next(t for t in main_tables(records) if t.name == "main-hand-finetune")
    cpc = next(r for r in hand.rows if r.label == "cpc")
    assert all(c is None or c.n == 3 for c in cpc.cells)  # the limit=8 run (pa_mpjpe 1.0) is not pooled in
    # a non-default fine-tuning schedule (steps=50) gets its own columns
    settings = sorted({c.key.setting for c in hand.columns})
    assert settings == ["", "steps=50"]
    mae = next(r for r in hand.rows if r.label == "mae")
    by_setting = {c.key.setting: mae.cells[i] for i, c in enumerate(hand.columns) if c.key.metric == "pa_mpjpe"}
    assert by_setting["steps=50"].per_seed == {0: 12.9, 1: 13.0, 2: 12.8}
    assert by_setting[""].per_seed == {0: 13.5, 1: 13.9, 2: 13.1}


def test_smoke_tables_only_on_request(records: list[dict]) -> None:
    smoke = [t for t in main_tables(records, include_smoke=True) if t.smoke]
    assert [t.name for t in smoke] == ["main-hand-finetune-smoke8"]
    assert smoke[0].title.startswith("SMOKE RUN")


def test_significance_marks(records: list[dict]) -> None:
    body = next(t for t in main_tables(records) if t.name == "main-body-finetune")
    col = {c.key.metric: i for i, c in enumerate(body.columns) if c.key.task == "synth-body-mesh"}
    row = {r.label: r for r in body.rows}
    assert row["cpc"].cells[col["mpjpe"]].best
    assert row["mae"].cells[col["mpjpe"]].worse  # 8 mm worse on every seed
    assert not row["mae"].cells[col["pve"]].worse  # differences of both signs: not significant
    dino = row["dino"].cells[col["mpjpe"]]
    assert not dino.worse and not dino.tested and dino.p_value is None  # only 2 seeds
    assert "could not be tested" in " ".join(body.notes)


def test_paired_p() -> None:
    assert paired_p({0: 1.0, 1: 2.0}, {0: 1.5, 1: 2.5}) == (2, None)
    n, p = paired_p({0: 1.0, 1: 2.0, 2: 3.0, 3: 9.0}, {0: 2.0, 1: 3.1, 2: 3.9, 7: 0.0})
    assert n == 3 and p is not None and p < 0.01
    from scipy.stats import ttest_rel

    assert math.isclose(p, ttest_rel([1.0, 2.0, 3.0], [2.0, 3.1, 3.9]).pvalue)
    assert paired_p({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.0, 1: 2.0, 2: 3.0}) == (3, None)  # identical: undefined
    # a deterministic evaluation repeated per seed (match on fixed weights): no replicates, no test
    assert paired_p({0: 25.1, 1: 25.1, 2: 25.1}, {0: 19.3, 1: 19.3, 2: 19.3}) == (3, None)
    assert paired_p({0: 25.1, 1: 25.1, 2: 25.1}, {0: 13.1, 1: 14.2, 2: 13.9})[1] is not None  # one row varies


def test_filters() -> None:
    rec = {"task": {"name": "synth-hand-mesh", "version": "1"}, "method": "cpc", "fraction": 0.5,
           "backbone": {"name": "cpc", "pretrain": {"method": "cpc", "pretrain": {"data": {"pair_mix": 1.0}}}}}
    assert matches(rec, {"method": "cpc", "pretrain.data.pair_mix": 1.0, "domain": "hand"})
    assert matches(rec, {"pretrain.method": "cpc", "backbone.pretrain.pretrain.data.pair_mix": 1.0})
    assert matches(rec, {"pretrain.data.pair_mix": {"gt": 0.5}, "task": ["x", "synth-hand-mesh"]})
    assert not matches(rec, {"pretrain.data.pair_mix": {"gt": 0.0, "lt": 1.0}})
    assert matches(rec, {"backbone.pretrain.missing": None, "fraction": 0.5000000000001})
    assert not matches(rec, {"backbone.pretrain.missing": "x"})
    assert matches(rec, {"backbone.weights": {"exists": False}})
    with pytest.raises(TableError, match="unknown operator"):
        matches(rec, {"fraction": {"greater": 0}})


def test_spec_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: t\nrows: [{label: a}]\ncolumns: [{task: x}]\nwhere: {fraction: {bigger: 1}}\n")
    with pytest.raises(TableError, match="unknown operator"):
        load_spec(bad)
    bad.write_text("title: t\nrows: [{label: a}]\ncolums: [{task: x}]\n")
    with pytest.raises(TableError, match=r"bad.yaml.*colums"):
        load_spec(bad)
    bad.write_text("title: t\nrows: [{label: a}]\ncolumns: [{task: x, domain: body}]\n")
    with pytest.raises(TableError, match="exactly one of task or domain"):
        load_spec(bad)


def test_shipped_specs_and_published_block(records: list[dict], tmp_path: Path) -> None:
    from harness.tables import load_published

    pub = load_published(PUBLISHED)
    assert pub["hmr2.0-mega"].results["3dpw"] == {"pve": 84.1, "mpjpe": 70.0, "pa_mpjpe": 44.5}
    t = spec_table(load_spec(SPECS / "body-pretraining.yaml"), records, pub)
    published = t.published_rows
    assert [r.label for r in published][:2] == ["CLIFF (HRNet-w48)", "HMR2.0 (ViT-H)"]
    assert all("MEGA" in r.citation for r in published)
    assert not any(c.best for r in published for c in r.cells if c is not None)  # never compared
    # published numbers only in their own columns, measured rows stay empty there
    j = next(i for i, c in enumerate(t.columns) if c.key.task == "3dpw" and c.key.metric == "pve")
    assert all(r.cells[j] is None for r in t.measured_rows)
    md = to_markdown(t)
    assert "*published (not measured here)*" in md and "Published by others, not measured by cpcbench" in md
    abl = spec_table(load_spec(SPECS / "ablation-pairs.yaml"), records, pub)
    assert [r.label for r in abl.rows] == ["CPC cross-view only", "CPC cross-pose only", "CPC both"]
    # without the masking filter two checkpoints match "both" (human-aware and uniform masking): two rows,
    # never averaged together, the checkpoint's labelled by its pretraining config (not by its path)
    text = (SPECS / "ablation-pairs.yaml").read_text().replace("pretrain.cpc.mask_strategy: human, ", "")
    (tmp_path / "pairs.yaml").write_text(text)
    abl = spec_table(load_spec(tmp_path / "pairs.yaml"), records, pub)
    assert [r.label for r in abl.rows] == ["CPC cross-view only", "CPC cross-pose only",
                                           "CPC both (CPC, uniform masking)", "CPC both (CPC (cpc-ablation-3))"]


def test_empty_and_smoke_only(tmp_path: Path, records: list[dict]) -> None:
    with pytest.raises(TableError, match="no result records"):
        build_leaderboard([])
    with pytest.raises(TableError, match="smoke runs"):
        build_leaderboard([r for r in records if r["smoke"]])


def test_cli_empty_results(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(app, ["tables", "--results", str(empty), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "no result records" in res.output
    assert not (tmp_path / "o2").exists()


def test_tie_for_best_is_not_tested() -> None:
    from harness.tables import Cell, Column, ColumnKey, Row, Table, mark_best

    col = Column(ColumnKey("t", "1", "", "finetune", 1.0, None, "", "m"), "mm", False, 1)
    vals = {0: 1.0, 1: 2.0, 2: 3.0}
    rows = [Row(name, [Cell(dict(v), sum(v.values()) / 3, 1.0)]) for name, v in
            (("a", vals), ("b", vals), ("c", {0: 9.0, 1: 9.5, 2: 9.9}))]
    table = Table("x", "x", [col], rows)
    mark_best(table)
    assert [r.cells[0].best for r in rows] == [True, True, False]
    assert not rows[2].cells[0].worse and "tie for best" in table.notes[-1]


def test_one_row_per_method_across_pretraining_domains(tmp_path: Path) -> None:
    """A method pretrained once per domain gets one row (body weights on body tasks, hand weights on hand tasks);
    weights with no records in the shown columns get no row; two weights competing for a column keep two rows."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "golden"))
    from make_records import pretrain_cfg, record

    hand_cfg = {**pretrain_cfg("cpc"), "domain": "hand"}
    body = record("synth-body-mesh", "cpc", [0, 1, 2], {"mpjpe": [80.0, 81.0, 79.0], "pa_mpjpe": [50.0, 51.0, 49.0],
                                                       "pve": [90.0, 91.0, 92.0]}, sha="b" * 64)
    hand = record("synth-hand-mesh", "cpc", [0, 1, 2], {"pa_mpjpe": [9.0, 9.5, 9.2], "f5": [0.5, 0.6, 0.55]},
                  sha="h" * 64, pretrain=hand_cfg)
    spec_file = tmp_path / "t.yaml"
    spec_file.write_text("title: T\nrows:\n  - {label: CPC, where: {backbone.name: cpc}}\n"
                         "columns:\n  - {task: synth-body-mesh, metrics: [mpjpe]}\n"
                         "  - {task: synth-hand-mesh, metrics: [pa_mpjpe]}\n")
    table = spec_table(load_spec(spec_file), [body, hand])
    assert [r.label for r in table.rows] == ["CPC"]
    assert [c.mean for c in table.rows[0].cells] == pytest.approx([80.0, 9.2333333])
    assert any("body / hand data" in n for n in table.notes)
    csv_text = to_csv(table)
    assert "b" * 64 in csv_text and "h" * 64 in csv_text  # each cell names its own weights
    # only body columns shown: the hand weights have no row (and no all-"–" row)
    spec_file.write_text("title: T\nrows:\n  - {label: CPC, where: {backbone.name: cpc}}\n"
                         "columns:\n  - {task: synth-body-mesh, metrics: [mpjpe]}\n")
    table = spec_table(load_spec(spec_file), [body, hand])
    assert [r.label for r in table.rows] == ["CPC"] and table.rows[0].weights_sha256 == "b" * 64
    # two body weights on the same column: two rows, told apart by their weights
    body2 = record("synth-body-mesh", "cpc", [0, 1, 2], {"mpjpe": [70.0, 71.0, 72.0], "pa_mpjpe": [40.0, 41.0, 42.0],
                                                        "pve": [80.0, 81.0, 82.0]}, sha="c" * 64)
    table = spec_table(load_spec(spec_file), [body, body2])
    assert [r.label for r in table.rows] == ["CPC [bbbbbbbb]", "CPC [cccccccc]"]
    # the same on both columns with one competitor pretrained on hands: labelled by domain
    hand2 = record("synth-body-mesh", "cpc", [0, 1, 2], {"mpjpe": [75.0, 76.0, 77.0], "pa_mpjpe": [45.0, 46.0, 47.0],
                                                        "pve": [85.0, 86.0, 87.0]}, sha="d" * 64, pretrain=hand_cfg)
    table = spec_table(load_spec(spec_file), [body, hand2])
    assert [r.label for r in table.rows] == ["CPC (body)", "CPC (hand)"]


def test_two_runs_of_one_domain_never_merge_with_the_other_domain(tmp_path: Path) -> None:
    """Two hand pretraining runs of one method (a re-run with other weights) and one body run: the body run may not
    share a row with either hand run (which one would be arbitrary); three rows, the hand ones told apart by sha."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "golden"))
    from make_records import pretrain_cfg, record

    hand_cfg = {**pretrain_cfg("cpc"), "domain": "hand"}
    body = record("synth-body-mesh", "cpc", [0, 1, 2], {"mpjpe": [80.0, 81.0, 79.0]}, sha="b" * 64)
    old = record("synth-hand-mesh", "cpc", [0, 1, 2], {"pa_mpjpe": [9.0, 9.5, 9.2]}, sha="e" * 64, pretrain=hand_cfg)
    new = record("synth-hand-mesh", "cpc", [0, 1, 2], {"pa_mpjpe": [8.0, 8.5, 8.2]}, sha="f" * 64, pretrain=hand_cfg)
    spec_file = tmp_path / "t.yaml"
    spec_file.write_text("title: T\nrows:\n  - {label: CPC, where: {backbone.name: cpc}}\n"
                         "columns:\n  - {task: synth-body-mesh, metrics: [mpjpe]}\n"
                         "  - {task: synth-hand-mesh, metrics: [pa_mpjpe]}\n")
    table = spec_table(load_spec(spec_file), [body, old, new])
    assert [r.label for r in table.rows] == ["CPC (body)", "CPC [eeeeeeee]", "CPC [ffffffff]"]
    assert [r.weights_sha256 for r in table.rows] == ["b" * 64, "e" * 64, "f" * 64]


# ---------------------------------------------------------------------------------------------- what a cell claims
def _golden_record(task: str, backbone: str, values: dict[str, list[float]], **kw: object) -> dict:
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "golden"))
    from make_records import record

    config = kw.pop("config", {})
    rec = record(task, backbone, [0, 1, 2], values, **kw)
    rec["config"] = {**rec["config"], **config}
    return rec


def test_image_sizes_never_share_a_cell() -> None:
    """A 64 px and a 96 px run of the same task, weights and schedule are two cells, and the header says which."""
    runs = [_golden_record("synth-body-2d", "cpc", {"pck05": v, "pck10": v}, config={
        "img_size": size, "defaults": {"steps": 10, "batch_size": 32, "base_lr": 1e-3, "img_size": 64}})
        for size, v in ((64, [20.0, 21.0, 22.0]), (96, [30.0, 31.0, 32.0]))]
    (table,) = main_tables(runs)
    assert len(table.columns) == 4 and [c.mean for c in table.rows[0].cells] == pytest.approx([21, 21, 31, 31])
    md = to_markdown(table)
    header = "\n".join(line for line in md.splitlines() if line.startswith("|"))  # the table, not its notes
    assert "synth-body-2d v1 · img_size=96: PCK@0.05" in md and header.count("img_size=96") == 2
    # what all columns share is said once under the title, what varies in the header
    for r in runs:
        r["config"]["steps"] = 50
    md = to_markdown(main_tables(runs)[0])
    assert "(schedule: steps=50)" in md and "synth-body-2d v1 · img_size=96: PCK@0.05" in md
    # a run whose size is not recorded against a default is named too, never pooled with the default one
    runs[1]["config"]["defaults"].pop("img_size")
    runs[1]["config"]["img_size"] = 64
    assert len(main_tables(runs)[0].columns) == 4


def test_layer_decays_never_share_a_cell() -> None:
    """--layer-decay is part of the fine-tuning setting: a run with another decay than the task's gets its own cells."""
    d = {"steps": 10, "batch_size": 32, "base_lr": 1e-3, "img_size": 64, "layer_decay": 0.75}
    runs = [_golden_record("synth-body-2d", "cpc", {"pck05": v, "pck10": v}, config={
        "layer_decay": ld, "defaults": d}) for ld, v in ((0.75, [20.0, 21.0, 22.0]), (1.0, [30.0, 31.0, 32.0]))]
    (table,) = main_tables(runs)
    assert [c.mean for c in table.rows[0].cells] == pytest.approx([21, 21, 31, 31])
    assert "layer_decay=1" in to_markdown(table)


def test_frame_sets_never_share_a_cell() -> None:
    """One task version measured on two synthetic frame sets (``--data-root``) gives two cells, named by the frame
    set's directory and a hash of its generator config; the same frame set in another directory pools."""
    gen = {"domain": "body", "frames": 2048, "seed": 0}
    runs = [_golden_record("synth-body-2d", "cpc", {"pck05": v, "pck10": v}) for v in
            ([20.0, 21.0, 22.0], [30.0, 31.0, 32.0], [40.0, 41.0, 42.0])]
    runs[0]["data"] = {"frames": "runs/repro/data/body-64-0", "generator": gen}
    runs[1]["data"] = {"frames": "runs/study/data/body-lab", "generator": {**gen, "frames": 8192, "seed": 11}}
    runs[2]["data"] = {"frames": "/elsewhere/body-64-0", "generator": dict(gen)}
    (table,) = main_tables(runs)  # runs 0 and 2: one frame set, one cell (its newest record per seed)
    md = to_markdown(table)
    assert len(table.columns) == 4 and "data=body-lab@" in md and "data=body-64-0@" in md


def test_pre_fix_fraction_records_never_pool_with_fixed_ones() -> None:
    """Below fraction 1, a record made before head statistics came from the fraction alone (no
    ``config.train_stats``) keeps its own cell, labelled; at fraction 1 nothing changed, so both pool."""
    vals = {"pa_mpjpe": [12.0, 12.5, 11.8], "f5": [0.4, 0.4, 0.4]}
    new = _golden_record("synth-hand-mesh", "cpc", vals, fraction=0.1)
    old = _golden_record("synth-hand-mesh", "cpc", {k: [x + 5 for x in v] for k, v in vals.items()}, fraction=0.1,
                         day=2)
    del old["config"]["train_stats"]
    (table,) = main_tables([new, old])
    assert len(table.columns) == 4 and "train_stats=full-split" in to_markdown(table)
    assert [c.mean for c in table.rows[0].cells][::2] == pytest.approx([12.1, 17.1])
    full_new, full_old = (_golden_record("synth-hand-mesh", "cpc", vals, day=d) for d in (1, 2))
    del full_old["config"]["train_stats"]
    assert len(main_tables([full_new, full_old])[0].columns) == 2


def test_checkpoint_rows_are_labelled_by_their_pretraining(records: list[dict]) -> None:
    from harness.tables import backbone_label

    body = next(t for t in main_tables(records) if t.name == "main-body-finetune-frac0.05")
    labels = [r.label for r in body.rows]
    assert labels[-4:] == ["CPC, cross-view pairs only", "CPC, cross-pose pairs only", "CPC, uniform masking",
                           "CPC (cpc-ablation-3)"]  # the main recipe at the ablations' budget: named by its run
    assert not any("/" in lb or "safetensors" in lb for lb in labels)
    plain = _golden_record("synth-body-2d", "runs/repro/body-cpc-long/backbone.safetensors",
                           {"pck05": [1.0, 2.0, 3.0]}, method="cpc")
    assert backbone_label(plain["backbone"]["name"], [plain]) == "CPC (body-cpc-long)"  # nothing differs: the run
    assert backbone_label("cpc", [plain]) == "cpc"
    assert backbone_label("scratch,patch=16,stem=patch", []) == "Scratch (patch=16, stem=patch)"
    assert backbone_label("scratch", []) == "scratch"


def test_records_never_name_machine_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Written records store project-relative paths (or $CPCBENCH_RUNS/...); records written before that rule
    are read back normalised, so neither a record reader nor a table sees the machine that ran them."""
    from harness.results import portable_path, read_record, write_record

    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    monkeypatch.setenv("CPCBENCH_RUNS", str(tmp_path / "scratch" / "runs-x"))
    assert portable_path(str(proj / "runs" / "a" / "backbone.safetensors")) == "runs/a/backbone.safetensors"
    elsewhere = tmp_path / "scratch" / "runs-x" / "p" / "b.safetensors"
    assert portable_path(str(elsewhere)) == "$CPCBENCH_RUNS/p/b.safetensors"
    assert portable_path("/home/me/cpcbench/runs/repro/pretrain/x/backbone.safetensors") == \
        "runs/repro/pretrain/x/backbone.safetensors"
    assert portable_path("/mnt/ckpt/deep/model.pth") == ".../ckpt/deep/model.pth"
    assert portable_path("runs/already/relative") == "runs/already/relative" and portable_path("cpc") == "cpc"
    # a new record
    rec = _golden_record("synth-body-2d", "cpc", {"pck05": [1.0, 2.0, 3.0]})
    from harness.results import build_record

    fresh = build_record(task=rec["task"], backbone={**rec["backbone"], "weights": str(proj / "runs/w.safetensors")},
                         method="cpc", protocol="finetune", seeds=[0], fraction=1.0, limit=None, metrics={},
                         n_samples=1, config={"data_root": str(proj / "data")}, wall_time_s=0.0,
                         data={"frames": str(proj / "runs/frames")})
    assert fresh["backbone"]["weights"] == "runs/w.safetensors" and fresh["config"]["data_root"] == "data"
    assert str(tmp_path) not in json.dumps(fresh)
    # an old record with absolute paths, as committed before the fix (file left as written)
    old = {k: v for k, v in rec.items() if k != "_path"}
    old["backbone"] = {**old["backbone"], "weights": "/work/main/runs/repro/pretrain/body-cpc/backbone.safetensors",
                       "load": {"source": "/work/main/runs/repro/pretrain/body-cpc/backbone.safetensors"}}
    path = write_record(old, tmp_path / "results")
    assert "/work/main" in path.read_text()
    back = read_record(path)
    assert back["backbone"]["weights"] == back["backbone"]["load"]["source"] == \
        "runs/repro/pretrain/body-cpc/backbone.safetensors"


def test_min_detectable_difference_has_its_power() -> None:
    """The note's MDD: a true difference of that size between two rows whose 3 per-seed values scatter with the
    column's std is found by the paired t-test (p < 0.05) in ~80 % of simulated studies; nothing varies -> None."""
    import numpy as np
    from scipy.stats import ttest_rel

    from harness.table_data import Cell, min_detectable

    cells = [Cell({0: 1.0, 1: 3.0, 2: 2.0}, 2.0, 1.0), Cell({0: 5.0, 1: 5.0, 2: 7.0}, 5.667, 3 ** -0.5 * 2)]
    mdd, n = min_detectable(cells + [None])
    pooled = math.sqrt((1.0 + 4 / 3) / 2)
    assert n == 3 and 4.0 < mdd / (math.sqrt(2) * pooled / math.sqrt(3)) < 6.0  # ~5.2 noncentrality at 2 dof
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, pooled, (20000, 3))
    b = rng.normal(mdd, pooled, (20000, 3))
    power = float(np.mean(ttest_rel(a, b, axis=1).pvalue < 0.05))
    assert 0.785 < power < 0.815, power
    assert min_detectable([Cell({0: 2.0, 1: 2.0, 2: 2.0}, 2.0, 0.0)]) is None  # deterministic: no replicates
    assert min_detectable([Cell({0: 2.0}, 2.0, None)]) is None  # one seed


def test_tables_state_their_minimum_detectable_difference(records: list[dict]) -> None:
    body = next(t for t in main_tables(records) if t.name == "main-body-finetune")
    note = next(n for n in body.notes if n.startswith("Minimum detectable difference"))
    assert "synth-body-mesh MPJPE" in note and "paired t-test over" in note


def test_cell_decimals_follow_the_unit() -> None:
    """Millimetres, percent and degrees print one decimal (a facing error of 83.381 deg claims a precision the
    seeds do not have); pixels and centimetres two; a unitless metric three."""
    from harness.tables import _decimals
    assert [_decimals(u) for u in ("mm", "%", "deg", "px", "cm", "")] == [1, 1, 1, 2, 2, 3]
