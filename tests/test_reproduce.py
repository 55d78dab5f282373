"""The committed reproduction's plan (``make reproduce``): what it runs, without running it."""

from __future__ import annotations

from pathlib import Path

from harness import reproduce


def test_plan_covers_the_acceptance_grid(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CPCBENCH_RUNS", str(tmp_path / "runs"))
    cmds = reproduce.main(["--dry-run", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "lb")])
    sweeps = [c for c in cmds if c.startswith("cpcbench sweep")]
    main = [c for c in sweeps if "cpc,mae,dino,supervised,scratch" in c and "--protocol" not in c]
    tasks = {t for c in main for t in c.split("--tasks ")[1].split()[0].split(",")}
    assert len(tasks) >= 4 and all(t.startswith("synth-") for t in tasks)
    # the frozen-feature probes: every probe task under each of its protocols, and a curve over snapshots
    probes = {(c.split("--tasks ")[1].split()[0], c.split("--protocol ")[1].split()[0]) for c in sweeps
              if "cpc,mae,dino,supervised,scratch" in c and "--protocol" in c}
    assert probes == {(t, p) for dom in reproduce.PROBES.values() for t, ps in dom.items() for p in ps}
    assert any("--snapshots" in c for c in cmds if c.startswith("cpcbench pretrain body --method cpc"))
    assert any("snapshots:" in c for c in sweeps)
    assert all("--seeds 3" in c for c in sweeps)
    pretrains = [c for c in cmds if c.startswith("cpcbench pretrain")]
    for method in ("cpc", "mae", "dino", "supervised"):
        assert any(f"--method {method}" in c for c in pretrains), method
    # ablations: pair types and masking, each pretrained apart from the main `cpc` runs (not found by name)
    assert any("data.pair_mix=1.0" in c for c in pretrains) and any("data.pair_mix=0.0" in c for c in pretrains)
    assert any("cpc.mask_strategy=uniform" in c for c in pretrains)
    assert all("/pretrain/" not in c for c in pretrains if "--set" in c)
    assert any("--fraction 0.1,0.5" in c for c in sweeps)
    assert cmds[-1].startswith("cpcbench tables --paper")
    # every pretraining run lands where `resolve_backbone(method)` finds it (or is an ablation, by path)
    for c in pretrains:
        out, domain, method = c.split("--out ")[1].split()[0], c.split()[2], c.split("--method ")[1].split()[0]
        assert "/ablations/" in out or Path(out).name.startswith(f"{domain}-{method}-")
