"""``cpcbench pretrain body|hand``: pretrain a backbone (cpc, mae, dino, supervised) and export it."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli_util import echo, emit_json, user_errors

EPILOG = ("Examples:  cpcbench pretrain body  |  cpcbench pretrain hand --method mae --steps 500  |  "
          "cpcbench pretrain body --set cpc.mask_strategy=human --set data.pair_mix=1.0  |  "
          "cpcbench pretrain body --preset paper  (ViT-B/16, 224 px, GPUs)  |  "
          "cpcbench pretrain body --snapshots 0,50,100,200 --snapshot-every 300  (learning curves)  |  "
          "cpcbench pretrain body --method mae --flops 2e14 --snapshots 0,5%,10%,25%,50%  (compute-matched: "
          "every method the same FLOPs, snapshots at the same fractions of them)")


def register(app: typer.Typer) -> None:
    @app.command("pretrain", epilog=EPILOG)
    @user_errors
    def pretrain(
        domain: str = typer.Argument(..., help="body | hand"),
        method: str | None = typer.Option(None, "--method", "-m", help="cpc | mae | dino | supervised [cpc]."),
        arch: str | None = typer.Option(None, "--arch", help="vit_tiny | vit_small | vit_base | vit_large [vit_tiny]."),
        img_size: int | None = typer.Option(None, "--img-size", help="Input side in pixels, a multiple of 16 [128]."),
        steps: int | None = typer.Option(None, "--steps", help="Optimizer steps [300]."),
        epochs: float | None = typer.Option(None, "--epochs", help="Passes over the training frames (sets the steps)."),
        flops: str | None = typer.Option(None, "--flops", help="Pretraining compute budget in FLOPs, e.g. 2e14, 200T, "
                                         "0.2P (config: flops_budget): steps = ceil(budget / FLOPs of one step, "
                                         "forward + backward of the global batch, counted on the first batch), so "
                                         "every method gets the same compute. Not with --steps / --epochs."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Global batch size [32]."),
        data: str | None = typer.Option(None, "--data", help="synth (generated world) | a frame-set dir | "
                                                             "(supervised) an ImageFolder root [synth]."),
        frames: int | None = typer.Option(None, "--frames", help="Synthetic frames to render when --data is synth "
                                                                 "[2048]; confirms a large render."),
        out: Path | None = typer.Option(None, "--out",
                                        help="Run directory [runs/pretrain/DOMAIN-METHOD-ARCH-TIME]."),
        resume: bool = typer.Option(False, "--resume", help="Continue --out (or the newest unfinished run)."),
        preset: list[str] = typer.Option([], "--preset", help="Named preset(s), e.g. paper (ViT-B/16, 224 px, "
                                                                "full schedule; for GPUs)."),
        overrides: list[str] = typer.Option([], "--set", help="Config override key=value (repeatable), e.g. "
                                                              "cpc.mask_ratio=0.75, optim.base_lr=1e-3."),
        compile_: bool | None = typer.Option(None, "--compile/--no-compile",
                                             help="Compile the transformer blocks (torch.compile) before the first "
                                                  "step: faster steps for tens of seconds of compiling [off]."),
        snapshot_every: int | None = typer.Option(None, "--snapshot-every", help="Keep the backbone every N steps "
                                                  "in RUN/snapshots/ (learning curves)."),
        snapshots: str | None = typer.Option(None, "--snapshots", help="Keep the backbone at these steps, e.g. "
                                             "0,100,200,400 (0: the random init), or percents of the run's steps, "
                                             "e.g. 0,5%,10%,25%,50% (rounded to a step; mixable with steps)."),
        json_out: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    ) -> None:
        """Pretrain a ViT by cross-view/cross-pose completion (cpc) or a baseline, and export its backbone."""
        from core.errors import CpcbenchError
        from harness.distributed import destroy
        from harness.flops import parse_flops
        from harness.pretrain import build_config
        from harness.pretrain import pretrain as run
        from harness.snapshots import parse_steps

        for name, value in (("--epochs", epochs), ("--frames", frames)):
            if value is not None and value <= 0:
                raise CpcbenchError(f"{name} must be a positive number, got {value}")
        if snapshot_every is not None and snapshot_every <= 0:
            raise CpcbenchError(f"--snapshot-every must be a positive number of steps, got {snapshot_every}")
        flags = {"method": method, "arch": arch, "img_size": img_size, "loop.steps": steps, "epochs": epochs,
                 "loop.batch_size": batch_size, "data.source": data, "data.synth_frames": frames,
                 "loop.compile": compile_, "flops_budget": parse_flops(flops) if flops is not None else None}
        cfg = build_config(domain, preset, overrides, **flags)
        confirmed = frames is not None or any(o.partition("=")[0].strip() == "data.synth_frames" for o in overrides)
        summary = run(cfg, out=out, resume=resume, confirm_frames=confirmed, snapshot_every=snapshot_every or 0,
                      snapshots=parse_steps(snapshots) if snapshots is not None else ())
        destroy()
        if json_out:
            emit_json(summary)
            return
        held = (f"; held-out loss {summary['heldout_loss']:.4f}" if "heldout_loss" in summary else "") + (
            f" (predict-the-patch-mean baseline {summary['heldout_baseline']:.4f})" if "heldout_baseline" in summary
            else "")
        spent = (f" = {summary['flops']:.4g} FLOPs of a {summary['flops_budget']:.4g} budget" if summary.get("flops")
                 and "flops_budget" in summary else "")
        echo(f"{cfg.method} backbone for {cfg.domain}: {summary['backbone']} ({summary['steps']} steps{spent}, "
                   f"final train loss {summary['final_loss']:.4f}{held}). Use it: cpcbench eval --backbone "
                   f"{cfg.method} --task <task>")
