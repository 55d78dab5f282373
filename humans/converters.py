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
  ``Capture<c>/<seq_name>``, the subject is the image record's ``subject`` (``subject<id>``; releases without
  the field fall back to the capture, logged), the split is InterHand's (train, val, test).

Malformed input (a non-integer frame, an empty or non-numeric box value, a record without a required field, a
``null`` box) is a ``DataError`` naming the file and the row or record, never a traceback or a silent
truncation (``frame=3.5`` is an error, not frame 3).

Image paths in the manifest are relative to the output directory (``../`` allowed), so the manifest may
live beside or away from the images. Nothing is copied.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

from core.errors import DataError
from humans.frames import FrameWriter

log = logging.getLogger("cpcbench.data")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
INTERHAND_SPLITS = ("train", "val", "test")


def _frame_index(name: str) -> int:
    digits = re.findall(r"\d+", Path(name).stem)
    if not digits:
        raise DataError(f"cannot read a frame index from image name {name!r}: expected digits such as 000123.jpg")
    return int(digits[-1])


def _integer(value: Any, where: str) -> int:
    """``value`` as an int (``3``, ``"3"``, ``3.0``); a ``DataError`` naming ``where`` otherwise (``3.5``, ``abc``)."""
    if isinstance(value, bool):
        raise DataError(f"{where} is {value!r}, expected an integer")
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = math.nan
    if not (math.isfinite(f) and f.is_integer()):
        raise DataError(f"{where} is {value!r}, expected an integer")
    return int(f)


def _number(value: Any, where: str) -> float:
    """``value`` as a finite float; a ``DataError`` naming ``where`` otherwise (empty, text, NaN, null)."""
    try:
        f = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        f = math.nan
    if not math.isfinite(f):
        raise DataError(f"{where} is {value!r}, expected a finite number")
    return f


def _writer(out: Path, meta: dict[str, Any]):
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
    boxes: dict[tuple[str, str, int], dict[str, Any]] = {}
    for line, rec in enumerate(bb.to_dict("records"), start=2):  # line 1 is the header
        where = f"{bbox_path} line {line}"
        key = (str(rec["sequence"]), str(rec["camera"]), _integer(rec["frame"], f"{where}: frame"))
        rec["x"], rec["y"], rec["w"], rec["h"] = (_number(rec[k], f"{where}: {k}") for k in ("x", "y", "w", "h"))
        if key in boxes:
            raise DataError(f"{where} repeats the box of sequence {key[0]}, camera {key[1]}, frame {key[2]} "
                            f"(first given on line {boxes[key]['_line']}); keep one row per image")
        boxes[key] = {**rec, "_line": line}
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
        x, y, w, h = r["x"], r["y"], r["w"], r["h"]
        if not (w > 0 and h > 0):
            raise DataError(f"bbox of {p.relative_to(src)} in {bbox_path} line {r['_line']} has no area "
                            f"(w={w}, h={h})")
        label = r.get("label", "")
        rows.append({"sequence": seq, "camera": cam, "frame": key[2],
                     "subject": str(r.get("subject", "") or seq), "motion": seq,
                     "split": str(r.get("split", "") or "train"), "image": os.path.relpath(p, out),
                     "bbox_x": x, "bbox_y": y, "bbox_w": w, "bbox_h": h,
                     "label": -1 if str(label) == "" else _integer(label, f"{bbox_path} line {r['_line']}: label")})
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


_IMAGE_FIELDS = ("id", "file_name", "capture", "seq_name", "camera", "frame_idx")


def _interhand_images(records: Any, json_path: Path) -> dict[Any, dict[str, Any]]:
    """InterHand2.6M image records by id, each checked for the fields the manifest needs (``frame_idx`` an int)."""
    if not isinstance(records, list):
        raise DataError(f"{json_path}: 'images' is not a list of records")
    images: dict[Any, dict[str, Any]] = {}
    for k, im in enumerate(records):
        where = f"{json_path} image #{k}" + (f" (id {im['id']})" if isinstance(im, dict) and "id" in im else "")
        if not isinstance(im, dict):
            raise DataError(f"{where} is not a record")
        missing = [f for f in _IMAGE_FIELDS if im.get(f) is None]
        if missing:
            raise DataError(f"{where} lacks {missing}; InterHand2.6M image records have {list(_IMAGE_FIELDS)}")
        if not isinstance(im["file_name"], str):
            raise DataError(f"{where}: file_name is {im['file_name']!r}, expected a path such as "
                            "Capture0/ROM01_No_Interaction_2_Hand/cam400002/image2140.jpg")
        images[im["id"]] = {**im, "frame_idx": _integer(im["frame_idx"], f"{where}: frame_idx")}
    return images


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
    skipped_invalid = skipped_missing = no_subject = 0
    for split in todo:
        if split not in INTERHAND_SPLITS:
            raise DataError(f"unknown InterHand2.6M split {split!r}; choose from {INTERHAND_SPLITS}")
        json_path = ann_root / split / f"InterHand2.6M_{split}_data.json"
        data = _load_json(json_path)
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise DataError(f"{json_path} is not COCO style (needs 'images' and 'annotations')")
        images = _interhand_images(data["images"], json_path)
        if not isinstance(data["annotations"], list):
            raise DataError(f"{json_path}: 'annotations' is not a list of records")
        for k, ann in enumerate(data["annotations"]):
            where = f"{json_path} annotation #{k}" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann
                                                         else "")
            if not isinstance(ann, dict) or "image_id" not in ann:
                raise DataError(f"{where} has no 'image_id'")
            im = images.get(ann["image_id"])
            if im is None:
                raise DataError(f"{where} points at unknown image {ann['image_id']!r}")
            box = ann.get("bbox")
            if not isinstance(box, list | tuple) or len(box) != 4:
                raise DataError(f"{where}: bbox is {box!r}, expected [x, y, w, h]")
            x, y, w, h = (_number(v, f"{where}: bbox") for v in box)
            if not ann.get("hand_type_valid", 1) or w <= 0 or h <= 0:
                skipped_invalid += 1
                continue
            path = src / "images" / split / im["file_name"]
            if require_images and not path.is_file():
                skipped_missing += 1
                continue
            capture = f"Capture{im['capture']}"
            if im.get("subject") is not None:
                subject = f"subject{im['subject']}"
            else:
                subject, no_subject = capture, no_subject + 1
            rows.append({"sequence": f"{capture}/{im['seq_name']}", "camera": f"cam{im['camera']}",
                         "frame": im["frame_idx"], "subject": subject, "motion": im["seq_name"],
                         "split": split, "image": os.path.relpath(path, out), "bbox_x": x, "bbox_y": y,
                         "bbox_w": w, "bbox_h": h, "label": -1, "hand_type": ann.get("hand_type", "")})
    if no_subject:
        log.warning("InterHand2.6M: %d image records have no 'subject' field; their subject is the capture id "
                    "(a subject may span several captures: subject-disjoint splits are not guaranteed)", no_subject)
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
