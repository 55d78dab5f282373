"""Reader of SPIN's preprocessed npz files (nkolot/SPIN ``datasets/base_dataset.py``, ``config.py`` DATASET_FILES):
``h36m_valid_protocol{1,2}.npz`` (Human3.6M test), ``h36m_train.npz``, ``coco_2014_train.npz``, ``mpii_train.npz``,
``3dpw_test.npz`` ... all share one key set:

    imgname [N] str (relative to the data set's image root), center [N, 2] px, scale [N] (= box side / 200),
    S [N, 24, 4] (3D joints, metres, root-centred, conf in column 4; SPIN's 24 "GT" joints), part [N, 24, 3]
    (2D joints + conf), pose [N, 72], shape [N, 10], has_smpl [N], openpose [N, 25, 3], gender [N] 'm'/'f'

Only ``imgname``, ``center`` and ``scale`` are always present; a reader asks for what its task needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import DataError
from tasks.real.common import as_array, center_scale_to_bbox, load_npz

#: SPIN's 24 GT joints -> H36M-17 (regressor order). SPIN stored the 17 H36M joints at
#: ``global_idx = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]`` (``datasets/preprocess/h36m.py``),
#: so ``S24[:, SPIN24_TO_H36M17]`` gives them back; then ``H36M_TO_J14`` equals SPIN's ``J24_TO_J14``.
SPIN24_TO_H36M17: tuple[int, ...] = (14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6)

OPTIONAL = ("S", "part", "pose", "shape", "has_smpl", "openpose", "gender")


@dataclass
class SpinNpz:
    """Parsed SPIN npz. imgname: N strings; bbox: [N, 4] square boxes (x, y, w, h); other keys as present."""

    path: Path
    imgname: list[str]
    bbox: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.imgname)

    def joints_h36m17(self) -> np.ndarray:
        """[N, 17, 3] metres, H36M regressor order, from ``S`` (every one of the 17 must have confidence 1)."""
        if "S" not in self.arrays:
            raise DataError(f"{self.path}: no 3D joints (key S); this file cannot be used for 3D evaluation")
        s = self.arrays["S"][:, list(SPIN24_TO_H36M17)]
        if not (s[..., 3] > 0).all():
            bad = int((~(s[..., 3] > 0).all(1)).sum())
            raise DataError(f"{self.path}: {bad} frames lack some of the 17 H36M joints in S (confidence 0)")
        return np.ascontiguousarray(s[..., :3])


def read_spin_npz(path: Path, require: tuple[str, ...] = ()) -> SpinNpz:
    """Parse and validate one SPIN npz; ``require`` names optional keys the caller needs (e.g. ``("S",)``)."""
    z = load_npz(path, ("imgname", "center", "scale", *require))
    src = str(path)
    names = z["imgname"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(f"{src}: imgname has dtype {names.dtype} and shape {names.shape}, expected N strings")
    n = names.shape[0]
    center = as_array(z["center"], "center", src, (n, 2))
    scale = np.asarray(z["scale"], np.float32)
    if scale.ndim == 2 and scale.shape[1] == 2:  # 4D-Humans stores (w, h); SPIN a single side
        scale = scale.max(1)
    scale = as_array(scale, "scale", src, (n,))
    if (scale <= 0).any():
        raise DataError(f"{src}: scale must be positive (box side / 200)")
    shapes = {"S": (n, 24, 4), "part": (n, 24, 3), "pose": (n, 72), "shape": (n, 10), "has_smpl": (n,),
              "openpose": (n, 25, 3)}
    arrays: dict[str, np.ndarray] = {}
    for k, shp in shapes.items():
        if k in z:
            arrays[k] = as_array(z[k], k, src, shp)
    if "gender" in z:
        arrays["gender"] = np.asarray(z["gender"]).astype(str)
    return SpinNpz(path=path, imgname=[str(s.decode() if isinstance(s, bytes) else s) for s in names],
                   bbox=center_scale_to_bbox(center, scale), arrays=arrays)
