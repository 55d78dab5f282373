"""The study's stage runner (``make reproduce``, ``harness.reproduce`` over ``harness.study``): what each stage runs,
without running it; what it skips; what it refuses."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from harness import reproduce, study
from harness.reproduce import StageError
from harness.sweep import parse_backbones, parse_fractions


def dry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *stages: str) -> list[list[str]]:
    """The dry run's commands, each split into words (``cpcbench`` dropped)."""
    monkeypatch.setenv("CPCBENCH_RUNS", str(tmp_path / "runs"))
    argv = ["--dry-run", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "lb")]
    for s in stages:
        argv += ["--stage", s]
    cmds = reproduce.main(argv)
    assert all(c.startswith("cpcbench ") for c in cmds)
    return [shlex.split(c)[1:] for c in cmds]


def opt(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def sets(words: list[str]) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words) if w == "--set"]


def fake_frames(fs: study.FrameSet, runs: Path) -> None:
    """A frame set that ``humans.world.is_complete`` takes for finished (meta, manifest, every shard's file)."""
    from humans.frames import FrameWriter
    from humans.world import make_config, model_source, plan

    cfg = make_config(fs.domain, fs.frames, study.IMG_SIZE, fs.seed, **fs.world())
    root = fs.path(runs)
    (root / "shards").mkdir(parents=True)
    (root / "manifest.csv").write_text("")
    (root / "meta.json").write_text(json.dumps({"generator": {**cfg.as_dict(), "model": model_source(fs.domain)}}))
    for s in plan(cfg):
        (root / "shards" / FrameWriter.shard_name(s.index)).touch()


def fake_backbones(runs: Path, *groups: str) -> None:
    for g in groups:
        for p in study.PRETRAININGS[g]:
            p.out(runs).mkdir(parents=True, exist_ok=True)
            p.backbone(runs).touch()


def test_every_stage_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cmds = dry(tmp_path, monkeypatch)
    kinds = [" ".join(w[:2]) if w[0] == "data" else w[0] for w in cmds]
    order = ["data synth", "pretrain", "sweep", "tables"]
    assert [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k] == order
    assert kinds.count("data synth") == len(study.FRAME_SETS) == 5
    assert kinds.count("pretrain") == sum(len(g) for g in study.PRETRAININGS.values()) == 11
    ft = [w for w in cmds if w[0] == "sweep" and "--protocol" not in w]
    probes = [w for w in cmds if w[0] == "sweep" and "--protocol" in w]
    # the main grid: a sweep per domain, fraction and backbone (so that the two workers' queue stays balanced)
    assert len(ft) == (len(study.MAIN_TASKS) * len(study.schedule()) * len(study.main_backbones())
                       + len(study.ABLATION_TASKS))
    assert all(len(parse_backbones(opt(w, "--backbones"))) == 1 for w in ft
               if ".safetensors" not in opt(w, "--backbones"))
    assert len(probes) == (sum(len(p) for d in study.PROBES.values() for p in d.values()) + len(study.CURVE_TASKS)
                           + len(study.ABLATION_PROBES))
    assert cmds[-1][:2] == ["tables", "--paper"] and opt(cmds[-1], "--out") == str(tmp_path / "lb")
    # stage by stage, each alone (with the inputs of the stages before it in place), gives the same commands
    runs = tmp_path / "runs"
    per_stage = dry(tmp_path, monkeypatch, "data")
    for fs in study.FRAME_SETS:
        fake_frames(fs, runs)
    per_stage += dry(tmp_path, monkeypatch, "pretrain-body,pretrain-hand")
    fake_backbones(runs, *study.PRETRAININGS)
    per_stage += dry(tmp_path, monkeypatch, "finetune") + dry(tmp_path, monkeypatch, "probes", "tables")
    assert per_stage == cmds


def test_frame_sets_keep_pretraining_and_labeled_people_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cmds = dry(tmp_path, monkeypatch)
    renders = {Path(opt(w, "--out")).name: w for w in cmds if w[:2] == ["data", "synth"]}
    assert set(renders) == {"body-pre", "hand-pre", "objects-pre", "body-lab", "hand-lab"}
    for w in renders.values():
        assert opt(w, "--size") == "64" and opt(w, "--motions-per-subject") == "1"
        assert opt(w, "--workers") == str(study.RENDER_WORKERS)
    pre = {opt(w, "--seed") for n, w in renders.items() if n.endswith("-pre")}
    lab = {opt(w, "--seed") for n, w in renders.items() if n.endswith("-lab")}
    assert pre and lab and not pre & lab
    assert [opt(renders["body-pre"], f) for f in ("--frames", "--cameras", "--seq-len")] == ["25600", "4", "8"]
    assert [opt(renders["hand-lab"], f) for f in ("--frames", "--cameras", "--seq-len")] == ["8192", "4", "2"]
    assert "--cameras" not in renders["objects-pre"]  # the domain's default rig
    # the labeled hands are seen from the front (palm or back, fingers up); every other set keeps the default view
    assert opt(renders["hand-lab"], "--view") == "front"
    assert all("--view" not in w for n, w in renders.items() if n != "hand-lab")
    # pretraining reads the -pre sets only (their train split), every sweep the -lab set of its task's domain but
    # the cross-pose probe, which trains nothing (match) and scores body-pre's test split: people no run pretrained on
    for w in cmds:
        if w[0] == "pretrain":
            assert Path(opt(w, "--data")).name == ("objects-pre" if opt(w, "--method") == "supervised"
                                                   else f"{w[1]}-pre")
        if w[0] == "sweep":
            domain = "hand" if opt(w, "--tasks").startswith(("synth-hand", "probe-hand")) else "body"
            if opt(w, "--tasks") in study.PROBE_FRAMES:
                assert opt(w, "--protocol") == "match" and Path(opt(w, "--data-root")).name == "body-pre", w
            else:
                assert Path(opt(w, "--data-root")).name == f"{domain}-lab", w


def test_pretraining_runs_share_budget_arch_and_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.flops import parse_flops
    from harness.snapshots import parse_steps

    runs = [w for w in dry(tmp_path, monkeypatch) if w[0] == "pretrain"]
    main = [w for w in runs if Path(opt(w, "--out")).parent.name == "pretrain"]
    abl = [w for w in runs if Path(opt(w, "--out")).parent.name == "ablations"]
    assert len(main) + len(abl) == len(runs)
    assert {(w[1], opt(w, "--method")) for w in main} == {(d, m) for d in ("body", "hand") for m in
                                                          study.MAIN_METHODS} | {("body", "supervised")}
    shared = [*(f"{k}={v}" for k, v in study.ARCH.items()), *study.RECIPE]
    for w in runs:
        assert opt(w, "--img-size") == "64"
        assert opt(w, "--snapshots") == study.SNAPSHOTS and "%" in study.SNAPSHOTS
        parse_steps(study.SNAPSHOTS)
        assert sets(w)[:len(shared)] == shared and "--compile" in w
        assert sets(w)[-1] == f"loop.ckpt_every={study.CHECKPOINT_EVERY}"  # a stopped stage resumes, not restarts
    for w in main:  # where resolve_backbone(method) finds it, all at the study's budget
        assert parse_flops(opt(w, "--flops")) == study.BUDGET
        assert Path(opt(w, "--out")).name.startswith(f"{w[1]}-{opt(w, '--method')}-") and sets(w)[:-1] == shared
    # ablations: body CPC at their own (smaller) budget, the main recipe among them at that same budget
    assert {tuple(sets(w)[len(shared):-1]) for w in abl} == {(), ("data.pair_mix=1.0",), ("data.pair_mix=0.0",),
                                                           ("cpc.mask_strategy=uniform",)}
    assert all(w[1:4] == ["body", "--method", "cpc"] for w in abl)
    assert {parse_flops(opt(w, "--flops")) for w in abl} == {study.BUDGET * study.ABLATION_SHARE} != {study.BUDGET}


def test_the_numbers_come_from_the_study_definition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing a constant of harness.study changes every command that uses it (nothing else hard-codes them)."""
    for name, value in {"BUDGET": 3e15, "LOW": 0.2, "FT_STEPS": (77, 88), "ABLATION_TASKS": ("synth-body-mesh",),
                        "ARCH": {"patch_size": 8, "stem": "patch"}}.items():
        monkeypatch.setattr(study, name, value)
    cmds = dry(tmp_path, monkeypatch)
    assert {opt(w, "--flops") for w in cmds if w[0] == "pretrain"} == {"3e15", "7.5e14"}
    assert all(sets(w)[:2] == ["patch_size=8", "stem=patch"] for w in cmds if w[0] == "pretrain")
    ft = [w for w in cmds if w[0] == "sweep" and "--protocol" not in w]
    assert {(opt(w, "--fraction"), opt(w, "--steps")) for w in ft} == {("0.2", "77"), ("1.0", "88")}
    abl = [w for w in ft if ".safetensors" in opt(w, "--backbones")]
    assert [(opt(w, "--tasks"), opt(w, "--fraction"), opt(w, "--steps")) for w in abl] == [("synth-body-mesh", "0.2",
                                                                                          "77")]
    assert any(parse_backbones(opt(w, "--backbones")) == ["scratch,patch=8,stem=patch"] for w in ft)


def test_scratch_is_the_study_architecture() -> None:
    from harness.backbones import resolve_backbone
    from harness.pretrain import build_config
    from harness.registries import BACKBONES

    cfg = build_config("body", overrides=list(study.arch_overrides()), img_size=study.IMG_SIZE)
    pretrained = BACKBONES.get(cfg.arch)(img_size=cfg.img_size, pos_embed=cfg.pos_embed, class_token=cfg.class_token,
                                         drop_path_rate=cfg.drop_path_rate, patch_size=cfg.patch_size, stem=cfg.stem)
    scratch, info = resolve_backbone(study.scratch_spec(), img_size=study.IMG_SIZE)
    assert study.scratch_spec() == "scratch,patch=16,stem=patch" and info["method"] == "scratch"
    assert scratch.config_dict() == pretrained.config_dict()


def test_main_grid_and_ablations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.sweep import plan

    cells = set()
    steps = dict(zip((study.LOW, 1.0), study.FT_STEPS, strict=True))
    for w in dry(tmp_path, monkeypatch):
        if w[0] == "sweep" and "--protocol" not in w:
            assert opt(w, "--steps") == str(steps[float(opt(w, "--fraction"))]) and opt(w, "--img-size") == "64"
            cells |= {(c.backbone, c.task, c.fraction, c.seed) for c in plan(
                parse_backbones(opt(w, "--backbones")), opt(w, "--tasks").split(","), int(opt(w, "--seeds")),
                fractions=parse_fractions(opt(w, "--fraction")))}
    backbones = ("cpc", "mae", "dino", "supervised", "scratch,patch=16,stem=patch")
    tasks = ("synth-body-mesh", "synth-body-2d", "synth-hand-mesh", "synth-hand-gesture")
    ablations = [str(p.backbone(tmp_path / "runs")) for p in study.PRETRAININGS["ablations"]]
    seeds = {study.LOW: 5, 1.0: 3}  # the low-label cells, where the positive control is tested, get more seeds
    want = {(b, t, f, s) for b in backbones for t in tasks for f in (study.LOW, 1.0) for s in range(seeds[f])}
    want |= {(b, t, study.LOW, s) for b in ablations for t in study.ABLATION_TASKS for s in range(seeds[study.LOW])}
    assert cells == want


def test_probes_and_curves_over_every_methods_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probes = [w for w in dry(tmp_path, monkeypatch) if w[0] == "sweep" and "--protocol" in w]
    main = [w for w in probes if parse_backbones(opt(w, "--backbones")) == list(study.main_backbones())]
    assert {(opt(w, "--tasks"), opt(w, "--protocol")) for w in main} == {
        (t, p) for dom in study.PROBES.values() for t, ps in dom.items() for p in ps}
    abl = [str(p.backbone(tmp_path / "runs")) for p in study.PRETRAININGS["ablations"]]
    ablations = [w for w in probes if parse_backbones(opt(w, "--backbones")) == abl]
    assert [(opt(w, "--tasks"), opt(w, "--protocol")) for w in ablations] == [("probe-body-xview", "match"),
                                                                             ("probe-body-xpose", "match")]
    curves = [w for w in probes if w not in main and w not in ablations]
    runs = tmp_path / "runs" / "pretrain"
    want = [f"snapshots:{runs / f'body-{m}-vit_tiny-study'}" for m in ("cpc", "mae", "dino", "supervised")]
    assert {(opt(w, "--tasks"), opt(w, "--protocol")) for w in curves} == set(study.CURVE_TASKS.items())
    assert all(parse_backbones(opt(w, "--backbones")) == want for w in curves)
    assert all(opt(w, "--seeds") == "3" for w in probes)
    for w in probes:  # cross-pose pairs are scored where joints move between frames: longer sequences than body-lab's
        task = opt(w, "--tasks")
        fs = study.probe_set(task, "hand" if task.startswith("probe-hand") else "body")
        assert opt(w, "--data-root") == str(fs.path(tmp_path / "runs"))
    xpose = study.probe_set("probe-body-xpose", "body")
    assert xpose.domain == "body" and xpose.seq_len >= 8 > study.labeled_set("body").seq_len


def test_a_stage_without_its_inputs_names_the_stage_to_run_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    for stage, first in (("pretrain-body", "data"), ("pretrain-hand", "data"), ("finetune", "data"),
                         ("probes", "data")):
        with pytest.raises(StageError, match=f"stage {stage} needs .*--stage {first}` first"):
            dry(tmp_path, monkeypatch, stage)
    assert dry(tmp_path, monkeypatch, "data,pretrain-body")  # made by the stage before it in the same run
    for fs in study.FRAME_SETS:
        fake_frames(fs, runs)
    with pytest.raises(StageError, match="body-cpc-vit_tiny-study.*--stage pretrain-body` first"):
        dry(tmp_path, monkeypatch, "finetune")
    fake_backbones(runs, "body")
    with pytest.raises(StageError, match="hand-cpc-vit_tiny-study.*--stage pretrain-hand` first"):
        dry(tmp_path, monkeypatch, "probes")
    fake_backbones(runs, "hand")
    for stage in ("finetune", "probes"):
        with pytest.raises(StageError, match="ablations/body-cpc-both.*--stage pretrain-hand` first"):
            dry(tmp_path, monkeypatch, stage)
    fake_backbones(runs, "ablations")
    assert dry(tmp_path, monkeypatch, "probes")
    with pytest.raises(StageError, match="unknown stage 'pretrain'"):
        dry(tmp_path, monkeypatch, "pretrain")
    with pytest.raises(SystemExit) as e:  # `python -m harness.reproduce`: one line, no traceback
        reproduce.cli(["--dry-run", "--stage", "finetune,nope"])
    assert str(e.value).startswith("error: unknown stage 'nope'") and "\n" not in str(e.value)


def test_finished_work_is_skipped_and_checkpoints_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    fake_frames(study.frame_set("body-pre"), runs)
    renders = [opt(w, "--out") for w in dry(tmp_path, monkeypatch, "data")]
    assert len(renders) == 4 and str(study.frame_set("body-pre").path(runs)) not in renders
    # a frame set of another config (here: other motions per subject) is not complete: rendered (and refused there)
    other = study.FrameSet("hand-pre", "hand", 25600, 100, "pretrain", cameras=4, seq_len=8, motions_per_subject=2)
    fake_frames(other, runs)
    assert len(dry(tmp_path, monkeypatch, "data")) == 4
    for fs in study.FRAME_SETS[2:]:
        fake_frames(fs, runs)
    cpc, mae = study.PRETRAININGS["body"][:2]
    fake_backbones(runs)
    cpc.out(runs).mkdir(parents=True)
    cpc.backbone(runs).touch()
    (mae.out(runs) / "checkpoints").mkdir(parents=True)
    (mae.out(runs) / "checkpoints" / "latest.json").write_text("{}")
    cmds = dry(tmp_path, monkeypatch, "pretrain-body")
    assert [opt(w, "--method") for w in cmds] == ["mae", "dino", "supervised"]
    resumed = cmds[0]
    assert resumed[-1] == "--resume" and opt(resumed, "--flops") == "2e14"
    assert opt(resumed, "--snapshots") == study.SNAPSHOTS
    assert "--resume" not in cmds[1]


def test_a_run_of_another_budget_or_arch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    runs = tmp_path / "runs"
    for fs in study.FRAME_SETS:
        fake_frames(fs, runs)
    cpc = study.PRETRAININGS["body"][0]
    cpc.out(runs).mkdir(parents=True)
    good = {"method": "cpc", "img_size": 64, "flops_budget": study.BUDGET, **study.ARCH, "loop": {"batch_size": 64}}
    (cpc.out(runs) / "config.yaml").write_text(yaml.safe_dump(good))
    assert len(dry(tmp_path, monkeypatch, "pretrain-body")) == 4
    for key, value in (("flops_budget", 1e14), ("stem", "conv"), ("loop", {"batch_size": 32})):
        (cpc.out(runs) / "config.yaml").write_text(yaml.safe_dump({**good, key: value}))
        with pytest.raises(StageError, match=f"pretrained with {key}[=.].*CPCBENCH_RUNS"):
            dry(tmp_path, monkeypatch, "pretrain-body")
    crossview = study.PRETRAININGS["ablations"][1]
    assert crossview.ablation == "crossview"
    crossview.out(runs).mkdir(parents=True)
    abl = {**good, "flops_budget": study.BUDGET * study.ABLATION_SHARE, "data": {"pair_mix": 0.5}}
    (crossview.out(runs) / "config.yaml").write_text(yaml.safe_dump(abl))
    with pytest.raises(StageError, match="data.pair_mix=0.5"):
        dry(tmp_path, monkeypatch, "pretrain-hand")


def test_stages_run_their_lanes_and_stop_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    """Not a dry run: every command runs (two lanes side by side, one thread each), the stage reports its minutes;
    a failing command stops before the next stage."""
    import subprocess

    ran: list[tuple[str, str]] = []

    def fake_run(cmd: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess:
        ran.append((cmd[3], env["OMP_NUM_THREADS"]))
        return subprocess.CompletedProcess(cmd, 1 if cmd[3] == "tables" else 0)

    monkeypatch.setattr(reproduce.subprocess, "run", fake_run)
    monkeypatch.setenv("CPCBENCH_RUNS", str(tmp_path / "runs"))
    argv = ["--results", str(tmp_path / "results"), "--out", str(tmp_path / "lb")]
    with pytest.raises(StageError, match="stage pretrain-body needs .*--stage data` first"):
        reproduce.main([*argv, "--stage", "data,pretrain-body"])  # the fake renders nothing
    assert [c for c, _ in ran] == ["data"] * 5
    assert "== stage data: ran 5, skipped 0, failed 0" in capsys.readouterr().out
    ran.clear()
    with pytest.raises(StageError, match="stage tables: 1 command"):
        reproduce.main([*argv, "--stage", "tables"])
    ran.clear()
    for fs in study.FRAME_SETS:
        fake_frames(fs, tmp_path / "runs")
    reproduce.main([*argv, "--stage", "pretrain-body", "--jobs", "2"])
    assert ran == [("pretrain", "1")] * 4
    assert (tmp_path / "runs" / "logs" / "body-1-2.log").is_file()


def test_workers_share_one_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers take the next command from one queue: when a short lane is done, its worker takes the long
    lane's next command (two of that lane's commands run at once), and nothing runs twice."""
    import subprocess
    import threading
    import time

    lock, running, overlap, ran = threading.Lock(), set(), [], []

    def fake_run(cmd: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess:
        with lock:
            overlap.append(sorted(running))
            running.add(cmd[-1])
            ran.append(cmd[-1])
        time.sleep(0.05)
        with lock:
            running.discard(cmd[-1])
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(reproduce.subprocess, "run", fake_run)
    long, short = reproduce.Lane("long"), reproduce.Lane("short")
    for i in range(4):
        long.add(["tables", f"long{i}"])
    short.add(["tables", "short0"])
    reproduce.run_lanes([long, short], tmp_path, jobs=2)
    assert sorted(ran) == ["long0", "long1", "long2", "long3", "short0"]
    assert any(len([r for r in now if r.startswith("long")]) == 1 for now in overlap[2:])  # long next to long


def test_table_specs_follow_the_study() -> None:
    """The specs name LOW as a number: they must agree with harness.study (change both together)."""
    from harness.registries import TASKS
    from harness.table_specs import load_spec

    specs = Path(__file__).parents[1] / "leaderboards" / "specs"
    eff = load_spec(specs / "data-efficiency.yaml")
    tasks = [t for d in study.MAIN_TASKS.values() for t in d]
    assert [c.task for c in eff.columns] == tasks
    for c in eff.columns:
        cls = TASKS.get(c.task)
        assert c.metrics == (cls.primary_metric or cls.metrics[0].name,) and c.fractions == (study.LOW, 1.0)
    for domain in ("body", "hand"):
        low = load_spec(specs / f"{domain}-pretraining-low.yaml")
        assert low.where["fraction"] == study.LOW
    for name in ("ablation-pairs", "ablation-masking"):  # the ablation runs' own budget, never the main runs'
        assert load_spec(specs / f"{name}.yaml").where["pretrain.flops_budget"] == study.BUDGET * study.ABLATION_SHARE
    for spec in [load_spec(p) for p in sorted(specs.glob("*.yaml"))]:
        scratch = [r for r in spec.rows if "scratch" in r.label.lower()]
        assert all(r.where == {"method": "scratch"} for r in scratch), spec.name
        for c in spec.columns:
            want = ((study.LOW,),) if spec.name.startswith("ablation-") else ((), (study.LOW, 1.0))
            assert c.fractions in want, spec.name
