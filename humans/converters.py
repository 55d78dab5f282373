"""Real captures -> frame manifests (``humans/frames.py``), so pretraining reads them like the synthetic world.

Two layouts:

- ``multiview``: a generic multi-view video layout ``SRC/<sequence>/<camera>/<frame>.jpg`` (also .jpeg/.png;
  the frame index is the last run of digits in the file name) plus a bbox file ``SRC/bboxes.csv`` with
  columns ``sequence, camera, frame, x, y, w, h`` (pixels; optional ``subject``, ``split``, ``label``).
- ``interhand``: InterHand2.6M's published annotation layout (Moon et al., ECCV 2020;
  ``facebookresearch/InterHand2.6M data/InterHand2.6M/dataset.py``): ``SRC/annotations/<split>/
  InterHand2.6M_<split>_data.json`` (COCO style: images with ``capture, seq_name, camera, frame_idx,
  file_name``; annotations with ``image_id, bbox`` xywh, ``hand_type``, ``hand_type_valid``), images under
  ``SRC/images/<split>/<file_name>`` (``Capture<c>/<seq>/cam<cam>/image<frame>.jpg``). A sequence is
  ``Capture<c>/<seq_name>``, the subject is the capture, the split is InterHand's (train, val, test).

Image paths in the manifest are relative to the output directory (``../`` allowed), so the manifest may
live beside or away from the images. Nothing is copied.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from harness.errors import DataError

log = logging.getLogger("cpcbench.data")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
INTERHAND_SPLITS = ("train", "val", "test")


def _frame_index(name: str) -> int:
    digits = re.findall(r"\d+", Path(name).stem)
    if not digits:
        raise DataError(f"cannot read a frame index from image name {name!r}: expected digits such as 000123.jpg")
    return int(digits[-1])


def _writer(out: Path, meta: dict[str, Any]):
    from humans.frames import FrameWriter

    return FrameWriter(out, meta=meta, shard_size=1 << 30)


def convert_multiview(src: str | Path, out: str | Path | None = None, bboxes: str | Path | None = None,
                      domain: str = "body") -> Path:
    """Manifest for ``SRC/<sequence>/<camera>/<frame>.jpg`` + a bbox CSV. Returns the output directory."""
    import pandas as pd

    src = Path(src)
    out = Path(out) if out is not None else src
    if not src.is_dir():
        raise DataError(f"multi-view source {src} is not a directory (expected <sequence>/<camera>/<frame>.jpg)")
    bbox_path = Path(bboxes) if bboxes is not None else src / "bboxes.csv"
    if not bbox_path.is_file():
        raise DataError(f"no bbox file at {bbox_path}: write a CSV with columns sequence,camera,frame,x,y,w,h "
                        "(one row per image) or pass --bboxes FILE")
    try:
        bb = pd.read_csv(bbox_path, dtype={"sequence": str, "camera": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"bbox file {bbox_path} is not a readable CSV ({e})") from None
    need = ["sequence", "camera", "frame", "x", "y", "w", "h"]
    missing = [c for c in need if c not in bb.columns]
    if missing:
        raise DataError(f"bbox file {bbox_path} lacks columns {missing}; expected {need}")
    boxes = {(str(r.sequence), str(r.camera), int(r.frame)): r for r in bb.itertuples(index=False)}
    images = sorted(p for p in src.glob("*/*/*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not images:
        raise DataError(f"no images under {src}/<sequence>/<camera>/ (extensions {', '.join(IMAGE_EXTS)})")
    rows, no_box = [], []
    for p in images:
        seq, cam = p.parent.parent.name, p.parent.name
        key = (seq, cam, _frame_index(p.name))
        r = boxes.get(key)
        if r is None:
            no_box.append(str(p.relative_to(src)))
            continue
        x, y, w, h = (float(getattr(r, k)) for k in ("x", "y", "w", "h"))
        if not (w > 0 and h > 0):
            raise DataError(f"bbox of {p.relative_to(src)} in {bbox_path} has no area (w={w}, h={h})")
        rows.append({"sequence": seq, "camera": cam, "frame": key[2],
                     "subject": str(getattr(r, "subject", "") or seq), "motion": seq,
                     "split": str(getattr(r, "split", "") or "train"), "image": os.path.relpath(p, out),
                     "bbox_x": x, "bbox_y": y, "bbox_w": w, "bbox_h": h,
                     "label": int(getattr(r, "label", -1) if str(getattr(r, "label", "")) != "" else -1)})
    if no_box:
        raise DataError(f"{len(no_box)} images have no row in {bbox_path} (e.g. {no_box[0]}); add their boxes "
                        "(sequence, camera, frame, x, y, w, h) or remove the images")
    meta = {"domain": domain, "size": None, "source": f"multiview:{src.resolve()}", "joint_names": []}
    w = _writer(out, meta)
    for row in rows:
        w.add_row(row)
    return w.close()


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"missing InterHand2.6M annotation file {path}; download the annotations from "
                        "https://mks0601.github.io/InterHand2.6M/ and keep the published layout")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON ({e})") from None


def convert_interhand(src: str | Path, out: str | Path | None = None, splits: tuple[str, ...] | None = None,
                      require_images: bool = True) -> Path:
    """Manifest for InterHand2.6M (annotations + images in the published layout, section B6 of the
    protocols reference). Annotations without a valid hand type or with an empty bbox are skipped; so are
    images missing on disk (counted in the log) unless ``require_images`` is False."""
    src = Path(src)
    out = Path(out) if out is not None else src
    ann_root = src / "annotations"
    if not ann_root.is_dir():
        raise DataError(f"{src} has no annotations/ folder: expected InterHand2.6M's layout "
                        "annotations/<split>/InterHand2.6M_<split>_data.json and images/<split>/...")
    todo = splits or tuple(s for s in INTERHAND_SPLITS if (ann_root / s).is_dir())
    if not todo:
        raise DataError(f"no split folders (train, val, test) under {ann_root}")
    rows: list[dict[str, Any]] = []
    skipped_invalid = skipped_missing = 0
    for split in todo:
        if split not in INTERHAND_SPLITS:
            raise DataError(f"unknown InterHand2.6M split {split!r}; choose from {INTERHAND_SPLITS}")
        data = _load_json(ann_root / split / f"InterHand2.6M_{split}_data.json")
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise DataError(f"{ann_root / split} data JSON is not COCO style (needs 'images' and 'annotations')")
        images = {im["id"]: im for im in data["images"]}
        for ann in data["annotations"]:
            im = images.get(ann["image_id"])
            if im is None:
                raise DataError(f"annotation {ann.get('id')} of split {split} points at unknown image "
                                f"{ann['image_id']}")
            x, y, w, h = (float(v) for v in ann["bbox"])
            if not ann.get("hand_type_valid", 1) or w <= 0 or h <= 0:
                skipped_invalid += 1
                continue
            path = src / "images" / split / im["file_name"]
            if require_images and not path.is_file():
                skipped_missing += 1
                continue
            capture = f"Capture{im['capture']}"
            rows.append({"sequence": f"{capture}/{im['seq_name']}", "camera": f"cam{im['camera']}",
                         "frame": int(im["frame_idx"]), "subject": capture, "motion": im["seq_name"],
                         "split": split, "image": os.path.relpath(path, out), "bbox_x": x, "bbox_y": y,
                         "bbox_w": w, "bbox_h": h, "label": -1, "hand_type": ann.get("hand_type", "")})
    if skipped_invalid or skipped_missing:
        log.info("InterHand2.6M: skipped %d annotations without a valid hand/bbox and %d whose image is missing",
                 skipped_invalid, skipped_missing)
    if not rows:
        raise DataError(f"no usable InterHand2.6M frames under {src} (skipped {skipped_invalid} invalid, "
                        f"{skipped_missing} with missing images under {src / 'images'})")
    meta = {"domain": "hand", "size": None, "source": f"interhand2.6m:{src.resolve()}", "joint_names": [],
            "splits": list(todo)}
    w = _writer(out, meta)
    for row in rows:
        w.add_row(row)
    return w.close()
