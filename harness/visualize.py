"""``cpcbench eval --visualize``: a PNG of a few test predictions drawn over their input crops.

Mesh tasks: the predicted (root-relative) mesh is placed at the ground-truth root and rendered with pyrender
(``humans.render.Renderer``, the renderer of the synthetic world) through the crop's intrinsics, then blended
over the image, next to the ground-truth mesh rendered the same way. 2D keypoints: predicted (red) and
ground-truth (green) points. Part segmentation: predicted and ground-truth label maps. Classification:
predicted and true class in the title.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CpcbenchError

log = logging.getLogger("cpcbench.eval")


def _denormalize(image: Any) -> np.ndarray:
    """[3, H, W] ImageNet-normalised tensor -> uint8 [H, W, 3]."""
    from humans.frames import IMAGENET_MEAN, IMAGENET_STD

    x = np.asarray(image, dtype=np.float32).transpose(1, 2, 0)
    x = x * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def _mesh_overlays(kind: str, images: list[np.ndarray], verts: list[np.ndarray], roots: list[np.ndarray],
                   Ks: list[np.ndarray], color: tuple[float, float, float]) -> list[np.ndarray]:
    """Render each mesh (camera coordinates = verts + root) through K and blend it over its image."""
    from humans.models import model_info
    from humans.render import Lighting, Renderer

    info = model_info(kind)
    faces = np.asarray(info["faces"])
    pov = np.asarray(info.get("part_of_vertex", np.ones(len(verts[0]), np.int64)))
    if pov.min() < 1:
        pov = pov - pov.min() + 1
    size = images[0].shape[0]
    out = []
    with Renderer(size) as r:
        r.set_scene([], Lighting(ambient=(0.45, 0.45, 0.45),
                                 lights=[(np.array([0.3, 0.6, 1.0]), np.ones(3), 3.0)]))
        r.set_actor(faces, pov, np.tile(np.asarray(color, np.float32), (len(pov), 1)))
        for img, v, root, K in zip(images, verts, roots, Ks, strict=True):
            r.update_actor(np.asarray(v, np.float32) + np.asarray(root, np.float32))
            res = r.render(np.asarray(K, np.float64), np.eye(4), parts=False)
            a = 0.7 * res["mask"][..., None].astype(np.float32)
            out.append((img * (1 - a) + res["rgb"] * a).astype(np.uint8))
    return out


def render_predictions(task: Any, dataset: Any, arrays: Mapping[str, np.ndarray], png: str | Path,
                       n: int = 6) -> Path:
    """Draw ``n`` test samples (evenly spaced) with their predictions into ``png``; returns the path.

    arrays: the task's ``predictions`` over ``dataset`` in dataset order (``pred/<name>``, ``gt/<name>``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = len(dataset)
    idx = np.unique(np.linspace(0, total - 1, min(n, total)).round().astype(int))
    items = [dataset[int(i)] for i in idx]
    images = [_denormalize(it["image"].numpy()) for it in items]
    panels: list[tuple[str, list[np.ndarray]]] = [("input", images)]
    titles: list[str] = [""] * len(idx)
    if "pred/verts" in arrays and all(k in items[0] for k in ("root", "K")):
        kind = "smpl" if task.domain == "body" else "mano"
        roots = [it["root"].numpy() for it in items]
        Ks = [it["K"].numpy() for it in items]
        panels.append(("predicted mesh", _mesh_overlays(kind, images, [arrays["pred/verts"][i] for i in idx], roots,
                                                        Ks, (0.35, 0.6, 0.95))))
        panels.append(("ground truth", _mesh_overlays(kind, images, [arrays["gt/verts"][i] for i in idx], roots,
                                                      Ks, (0.4, 0.85, 0.45))))
    elif "pred/joints2d" in arrays:
        size = images[0].shape[0]
        panels.append(("keypoints: pred red, GT green", images))
        pts = [((arrays["pred/joints2d"][i] + 1) * size / 2 - 0.5, (arrays["gt/joints2d"][i] + 1) * size / 2 - 0.5)
               for i in idx]
    elif "pred/parts" in arrays:
        panels.append(("predicted parts", [arrays["pred/parts"][i] for i in idx]))
        panels.append(("ground-truth parts", [arrays["gt/parts"][i] for i in idx]))
    elif "pred/label" in arrays:
        titles = [f"pred {int(arrays['pred/label'][i])} / true {int(arrays['gt/label'][i])}" for i in idx]
    else:
        raise CpcbenchError(f"--visualize: no drawing for the predictions of task {task.name!r} "
                            f"({sorted(arrays)})")
    rows, cols = len(panels), len(idx)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    for r, (label, imgs) in enumerate(panels):
        for c, img in enumerate(imgs):
            ax = axes[r][c]
            if img.ndim == 2:
                ax.imshow(img, cmap="tab20", interpolation="nearest", vmin=0, vmax=19)
            else:
                ax.imshow(img)
            if label.startswith("keypoints"):
                p, g = pts[c]
                ax.scatter(g[:, 0], g[:, 1], s=6, c="lime")
                ax.scatter(p[:, 0], p[:, 1], s=6, c="red")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0 and titles[c]:
                ax.set_title(titles[c], fontsize=8)
    fig.suptitle(f"{task.name}: test samples {', '.join(map(str, idx))}", fontsize=9)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
