"""``cpcbench data synth|show|convert``: render the embedded synthetic world, look at a frame set, convert
real captures into frame manifests."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli_util import emit_json, user_errors

data_app = typer.Typer(help="Render the synthetic world, look at frame sets, convert real captures.",
                       no_args_is_help=True)


@data_app.command("synth", epilog="Examples:  cpcbench data synth body --frames 2048  |  "
                                  "cpcbench data synth hand --frames 512 --size 128 --workers 2 --out runs/data/h")
@user_errors
def synth(
    domain: str = typer.Argument(..., help="body | hand | objects"),
    frames: int = typer.Option(1024, "--frames", "-n", help="Frames to render (rounded up to whole sequences)."),
    size: int = typer.Option(128, "--size", help="Side of the square person-centred crops, pixels."),
    out: Path | None = typer.Option(None, "--out", help="Output directory [default: $CPCBENCH_DATA_CACHE or "
                                                            "runs/data/DOMAIN-SIZE-SEED]."),
    workers: int = typer.Option(1, "--workers", "-j", help="Rendering processes."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives identical frames."),
    cameras: int | None = typer.Option(None, "--cameras", help="Cameras per rig [domain default]."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Frames per motion [domain default]."),
    motions_per_subject: int | None = typer.Option(None, "--motions-per-subject",
                                                   help="Motions (sequences) per subject [domain default]; "
                                                        "1: every sequence is another person."),
    view: str | None = typer.Option(None, "--view", help="Where the cameras stand (hand): around (every side) | "
                                                         "front (palm or back to the camera, fingers up)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Render a synthetic frame set (resumable: re-running completes missing shards)."""
    import logging
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from humans.frames import check_disk, estimate_render
    from humans.world import default_dir, generate, is_complete, make_config

    world = {"cameras": cameras, "seq_len": seq_len, "motions_per_subject": motions_per_subject, "view": view}
    cfg = make_config(domain, frames, size, seed, **world)  # fail before drawing a bar
    root = out if out is not None else default_dir(domain, size, seed)
    if not is_complete(root, cfg):
        est = estimate_render(domain, cfg.num_sequences * cfg.frames_per_sequence, size, workers)
        check_disk(est, root)
        logging.getLogger("cpcbench.data").info("rendering %s into %s", est.describe(), root)
    t0 = time.time()
    with Progress(TextColumn(f"rendering {domain}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                  TimeRemainingColumn(), transient=json_out) as bar:
        task = bar.add_task(domain, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        root = generate(domain, frames, size=size, seed=seed, out=out, workers=workers, progress=progress,
                        **world)
    from humans.frames import FrameStore

    store = FrameStore(root)
    summary = {"out": str(root), "frames": len(store), "train": int((store.manifest["split"] == "train").sum()),
               "test": int((store.manifest["split"] == "test").sum()), "seconds": round(time.time() - t0, 1)}
    if json_out:
        emit_json(summary)
    else:
        typer.echo(f"{summary['frames']} frames ({summary['train']} train, {summary['test']} test) in {root} "
                   f"[{summary['seconds']} s]; look at them: cpcbench data show {root}")


@data_app.command("show", epilog="Example:  cpcbench data show runs/data/body-128-0 --out sheet.png")
@user_errors
def show(
    root: Path = typer.Argument(..., help="A frame-set directory (with manifest.csv)."),
    out: Path | None = typer.Option(None, "--out", help="PNG to write [default: ROOT/contact_sheet.png]."),
    frames: int = typer.Option(16, "--frames", help="Frames to show."),
    pairs: int = typer.Option(4, "--pairs", help="Cross-view and cross-pose pairs to show (each)."),
    thumb: int = typer.Option(128, "--thumb", help="Thumbnail side, pixels."),
    seed: int = typer.Option(0, "--seed", help="Which frames and pairs are picked."),
    colors: int = typer.Option(0, "--colors", help="Quantise the PNG to this many colours (0 = full colour)."),
) -> None:
    """Write a contact sheet: frames with joints drawn, part segmentations, cross-view and cross-pose pairs."""
    from humans.contact_sheet import make_contact_sheet

    path = make_contact_sheet(root, out, n_frames=frames, n_pairs=pairs, thumb=thumb, seed=seed, colors=colors)
    typer.echo(f"wrote {path}")


@data_app.command("convert", epilog="Examples:  cpcbench data convert multiview /data/mycapture --out runs/data/cap  "
                                    "|  cpcbench data convert interhand /data/InterHand2.6M --split train")
@user_errors
def convert(
    kind: str = typer.Argument(..., help="multiview | interhand"),
    src: Path = typer.Argument(..., help="Source root in that layout."),
    out: Path | None = typer.Option(None, "--out", help="Where manifest.csv and meta.json go [default: SRC]."),
    bboxes: Path | None = typer.Option(None, "--bboxes", help="multiview: bbox CSV [default: SRC/bboxes.csv]."),
    domain: str = typer.Option("body", "--domain", help="multiview: body | hand (recorded in meta.json)."),
    split: list[str] = typer.Option([], "--split", help="interhand: splits to convert [default: all present]."),
) -> None:
    """Turn a real multi-view capture into a frame manifest that `cpcbench pretrain --data` reads."""
    from core.errors import CpcbenchError
    from humans.converters import convert_interhand, convert_multiview
    from humans.frames import FrameStore

    if kind == "multiview":
        root = convert_multiview(src, out, bboxes=bboxes, domain=domain)
    elif kind == "interhand":
        root = convert_interhand(src, out, splits=tuple(split) or None)
    else:
        raise CpcbenchError(f"unknown layout {kind!r}; choose multiview or interhand")
    store = FrameStore(root)
    m = store.manifest
    typer.echo(f"{len(m)} frames, {m['sequence'].nunique()} sequences, {m['camera'].nunique()} cameras -> "
               f"{root / 'manifest.csv'}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
