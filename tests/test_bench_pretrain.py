"""Step speed against the CPU's matmul rate (``make bench``; issue 14): every pretraining method's optimizer step
(CPC, MAE, DINO, supervised) at 128 px / batch 32 and at the study's 64 px, a fine-tuning step, and frozen feature
extraction, each eager and fast (transformer blocks compiled, ``harness.fast``; fused AdamW), as achieved
GFLOP/s over the fp32 GFLOP/s of a 1536 x 1536 matmul measured in the same run.

Protocol: wall time at the run's thread count (``torch.get_num_threads()``, the cores here). Matmul and step are
interleaved: every round times the matmul (best of 2), then one eager step, the matmul again, then one fast step,
and the ratio of each step is taken against the matmul just before it, so a machine whose speed drifts (other
processes, turbo) moves both. The median over rounds is reported; a second figure by process CPU time per thread
shows how much idle (waiting) threads cost. Compile time is measured apart (``harness.fast.warm_compiled``) and
never enters a step time. FLOPs: ``harness.flops.count_flops`` (forward + backward, multiply-add = 2, the CPU
attention kernels counted); inference: the forward alone with the same counter. Where the fast CPC step stays
below 0.70 of the matmul rate, the benchmark prints its profile by operator (where the time goes).

Reported, never asserted: the numbers depend on the machine and on what else runs on it. ``make bench`` writes the
table to ``$CPCBENCH_BENCH_OUT`` (default ``runs/bench/speed.md``), which the README's speed section is copied from.
``CPCBENCH_BENCH_SMOKE=1`` (CI): tiny sizes, one round, CPC only.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from bench_kit import SMOKE, matmul_gflops

import pretraining  # noqa: F401  (registration)
from core.io import atomic_write_text
from harness import fast
from harness.flops import _cpu_sdpa_mapping, count_flops
from harness.optim import param_groups
from harness.registries import METHODS
from pretraining.vit import build_vit

pytestmark = pytest.mark.bench
ROUNDS = 1 if SMOKE else 7
MATMUL_N = 256 if SMOKE else 1536
# (method, image size, batch): the configuration, then the study's 64 px one
STEP_CONFIGS = ([("cpc", 32, 4)] if SMOKE else
                [(m, 128, 32) for m in ("cpc", "mae", "dino", "supervised")] + [(m, 64, 32) for m in
                                                                               ("cpc", "mae", "dino", "supervised")])
ROWS: list[dict[str, Any]] = []
PROFILE: list[str] = []  # the fast CPC step's time by operator (when below 0.70 of the matmul rate)


def matmul_rate() -> float:
    """fp32 GFLOP/s of a MATMUL_N^2 matmul by wall time (best of 2), timed right before a step."""
    return matmul_gflops(MATMUL_N, repeats=2)


def interleaved(flops: float, eager: Callable[[], Any], faster: Callable[[], Any]) -> dict[str, float]:
    """Median (over ROUNDS) step seconds and matmul ratios of ``eager`` and ``faster``, each timed right after a
    matmul; plus the CPU-time-per-thread ratio of the fast one."""
    eager(), faster()
    out: dict[str, list[float]] = {k: [] for k in ("eager_s", "fast_s", "eager_ratio", "fast_ratio", "fast_cpu")}
    threads = torch.get_num_threads()
    for _ in range(ROUNDS):
        for name, fn in (("eager", eager), ("fast", faster)):
            mm = matmul_rate()
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            out[f"{name}_s"].append(wall)
            out[f"{name}_ratio"].append(flops / wall / 1e9 / mm)
            if name == "fast":
                out["fast_cpu"].append(flops / (cpu / threads) / 1e9 / mm)
    return {k: statistics.median(v) for k, v in out.items()}


def batch_for(kind: str, img: int, batch: int) -> dict[str, torch.Tensor]:
    """A batch as the data sets give it: person maps (a centred box) and the data-side mask draws."""
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(batch, (img // 16) ** 2, generator=g)
    person = torch.zeros(batch, img, img)
    person[:, img // 4: 3 * img // 4, img // 4: 3 * img // 4] = 1.0
    if kind == "pairs":
        return {"img1": torch.randn(batch, 3, img, img, generator=g), "img2": torch.randn(batch, 3, img, img,
                generator=g), "kind": torch.arange(batch) % 2, "person1": person, "mask_noise": noise}
    if kind in ("images", "labelled"):
        return {"image": torch.randn(batch, 3, img, img, generator=g), "person": person, "mask_noise": noise,
                "label": torch.randint(0, 10, (batch,), generator=g)}
    if kind == "multicrop":
        local = max(16, (img * 3 // 8) // 16 * 16)
        return {"global": torch.randn(batch, 2, 3, img, img, generator=g),
                "local": torch.randn(batch, 4, 3, local, local, generator=g)}
    raise ValueError(kind)


def make_step(model: torch.nn.Module, batch: dict[str, Any], fused: bool) -> Callable[[], None]:
    """forward + backward + clip + AdamW over the loop's parameter groups (fused: torch's fused kernel, as the loop
    uses it; else for-each) + the method's after-step hook."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, fused=fused or None, foreach=None if fused else True)

    def one() -> None:
        out = model(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()
        if hasattr(model, "after_optimizer_step"):
            model.after_optimizer_step(1, 10)

    return one


def record(kind: str, name: str, img: int, batch: int, flops: float, res: dict[str, float], compile_s: float,
           unit: str) -> None:
    row = {"kind": kind, "name": name, "img": img, "batch": batch, "gflop": flops / 1e9, "compile_s": compile_s,
           "threads": torch.get_num_threads(), "unit": unit, **res}
    ROWS.append(row)
    print(f"\n[bench speed] {kind} {name} {img}px batch {batch} ({row['threads']} threads): {flops / 1e9:.1f} "
          f"GFLOP/{unit}; eager {res['eager_s'] * 1e3:.0f} ms = {res['eager_ratio']:.2f} of matmul; fast "
          f"{res['fast_s'] * 1e3:.0f} ms = {res['fast_ratio']:.2f} (CPU time/thread {res['fast_cpu']:.2f}); "
          f"x{res['eager_s'] / res['fast_s']:.2f}; compile {compile_s:.0f} s once")


@pytest.mark.parametrize("name,img,batch", STEP_CONFIGS)
def test_pretraining_step(name: str, img: int, batch: int) -> None:
    torch.manual_seed(0)
    cls = METHODS.get(name)
    data = batch_for(cls.data_kind, img, batch)
    eager_model = cls(build_vit("vit_tiny", img_size=img), cls.config_cls(), data_info={"num_classes": 10})
    fast_model = copy.deepcopy(eager_model)
    flops = count_flops(eager_model, data)
    n, compile_s = fast.warm_compiled(fast_model, data, None, "cpu")
    res = interleaved(flops, make_step(eager_model, data, fused=False), make_step(fast_model, data, fused=True))
    record("pretrain", name, img, batch, flops, res, compile_s, "step")
    if name == "cpc" and res["fast_ratio"] < 0.70 and not SMOKE:
        PROFILE.append(f"Fast CPC step, {img} px, batch {batch}: {res['fast_ratio']:.2f} of the matmul rate; self time "
                       "by operator over 3 steps (`## Call CompiledFxGraph`: a compiled block's fused kernels):")
        PROFILE.extend(["", "| operator | share | ms/step | calls/step |", "|---|---|---|---|"])
        PROFILE.extend(print_profile(make_step(fast_model, data, fused=True)))
        PROFILE.append("")
    assert flops > 0 and n > 0


def print_profile(step: Callable[[], None], rows: int = 14) -> list[str]:
    """Where a step's time goes, by operator (self time over 3 steps); printed, and returned as table rows."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print("[bench speed] fast CPC step below 0.70 of matmul; self time by operator over 3 steps:")
    out = []
    for e in events[:rows]:
        share, ms, calls = 100 * e.self_cpu_time_total / total, e.self_cpu_time_total / 3e3, e.count // 3
        print(f"[bench speed]   {e.key[:60]:<60} {share:5.1f} %  {ms:8.1f} ms/step  {calls} calls/step")
        out.append(f"| `{e.key[:60]}` | {share:.1f} % | {ms:.1f} | {calls} |")
    return out


def test_finetune_step() -> None:
    """Fine-tuning (all weights, the ``finetune`` protocol's layer-wise LR decay) of ViT-Tiny + a class head."""
    from harness.evaluate import TaskModel
    from tasks.heads import ClassHead

    class Task:
        @staticmethod
        def loss(pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {"loss": torch.nn.functional.cross_entropy(pred["logits"], batch["label"])}

    img, batch = (32, 4) if SMOKE else (64, 32)
    torch.manual_seed(0)
    data = batch_for("labelled", img, batch)
    eager_model = TaskModel(build_vit("vit_tiny", img_size=img), ClassHead(192, 1, 10), Task(), frozen=False)
    fast_model = copy.deepcopy(eager_model)
    flops = count_flops(eager_model, data)
    _, compile_s = fast.warm_compiled(fast_model, data, None, "cpu")
    res = interleaved(flops, make_step(eager_model, data, fused=False), make_step(fast_model, data, fused=True))
    record("finetune", "vit_tiny+class head", img, batch, flops, res, compile_s, "step")


@pytest.mark.parametrize("img,batch", [(32, 8)] if SMOKE else [(128, 128), (64, 256)])
def test_feature_extraction(img: int, batch: int) -> None:
    """Frozen features (``forward_features`` under inference mode), the feature cache's workload."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    eager_model = build_vit("vit_tiny", img_size=img).eval()
    fast_model = copy.deepcopy(eager_model)
    x = torch.randn(batch, 3, img, img)
    with FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_mapping()) as counter, torch.no_grad():
        eager_model(x)
    flops = float(counter.get_total_flops())
    t0 = time.perf_counter()
    fast.compile_blocks(fast_model)

    def run(model: torch.nn.Module) -> Callable[[], Any]:
        def one() -> Any:
            with torch.inference_mode():
                return model(x)
        return one

    ref, out = run(eager_model)(), run(fast_model)()
    compile_s = time.perf_counter() - t0
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    res = interleaved(flops, run(eager_model), run(fast_model))
    record("features", "vit_tiny forward", img, batch, flops, res, compile_s, "batch")


def test_write_speed_table() -> None:
    """Runs last (file order): the measured rows as a Markdown table (the README's speed section)."""
    if not ROWS:
        pytest.skip("no rows measured in this session")
    if SMOKE and "CPCBENCH_BENCH_OUT" not in os.environ:
        pytest.skip("smoke sizes: no speed table written")
    out = Path(os.environ.get("CPCBENCH_BENCH_OUT", "runs/bench/speed.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    from core.io import git_commit, hardware

    hw = hardware()
    lines = [f"`make bench` at commit {git_commit()}, {time.strftime('%Y-%m-%d')}, {hw.get('cpu', '?')}, torch "
             f"{torch.__version__}.", "",
             f"fp32, {ROWS[0]['threads']} threads, wall time; ratio = achieved GFLOP/s / GFLOP/s of a {MATMUL_N}^2 "
             f"matmul timed just before each step (median of {ROUNDS} interleaved rounds); fast = transformer "
             "blocks compiled + fused AdamW; compile s = the seconds compiling took once, before the first step "
             "(0-1 s: the shapes were compiled by an earlier row of this run or found in inductor's on-disk "
             "cache), never in the step time.", "",
             "| workload | size | batch | GFLOP | eager ms | eager ratio | fast ms | fast ratio | speed-up "
             "| compile s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in ROWS:
        lines.append(f"| {r['kind']} {r['name']} | {r['img']} px | {r['batch']} | {r['gflop']:.1f} | "
                     f"{r['eager_s'] * 1e3:.0f} | {r['eager_ratio']:.2f} | {r['fast_s'] * 1e3:.0f} | "
                     f"{r['fast_ratio']:.2f} | {r['eager_s'] / r['fast_s']:.2f}x | {r['compile_s']:.0f} |")
    if PROFILE:
        lines += ["", *PROFILE]
    atomic_write_text(out, "\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    assert out.is_file()
