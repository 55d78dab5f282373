"""Task heads shared by the benchmarks: tokens [B, prefix + N, C] from a backbone -> a prediction dict.

- ``ParamMeshHead``: model-based mesh recovery. HMR-style iterative error feedback (Kanazawa et al., CVPR 2018;
  the 4D-Humans/HMR2.0 recipe regresses the same parameters with a transformer decoder): SMPL/MANO joint rotations
  in the continuous 6D representation (Zhou et al., CVPR 2019), shape betas and a weak-perspective camera,
  decoded to vertices and joints through smplx (``humans.models.forward``).
- ``VertexHead``: model-free mesh recovery (vertices directly; METRO/FastMETRO-style coarse-to-fine): a
  small transformer decoder turns K learned queries into K coarse vertices, and a learned K -> V upsampling
  matrix (initialised from template distances) gives the full mesh.
- ``KeypointHead``: 2D keypoints by integral regression (soft-argmax over heatmaps from the patch tokens;
  Sun et al., ECCV 2018), coordinates in [-1, 1] of the crop.
- ``DenseHead``: per-pixel logits (part segmentation) from patch tokens with a light conv upsampler
  (SETR-naive style).
- ``ClassHead``: classification from the CLS token (or the mean patch token).

Every head is independent of the backbone except for ``backbone_info``: embed_dim, num_prefix_tokens,
grid_size, patch_size, img_size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import CpcbenchError
from humans.models import load_model
from tasks.protocols import MANO_TIP_VERTS, MANO_TO_FREIHAND, mano_to_freihand


def split_tokens(tokens: torch.Tensor, num_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens: [B, P + N, C] -> (prefix [B, P, C], patches [B, N, C])."""
    return tokens[:, :num_prefix], tokens[:, num_prefix:]


def pooled(tokens: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """[B, P + N, C] -> [B, C]: the mean patch token (robust for every pretraining method, incl. MAE)."""
    return tokens[:, num_prefix:].mean(1)


def patch_grid(tokens: torch.Tensor, num_prefix: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """[B, P + N, C] -> [B, C, h, w] feature map."""
    _, patches = split_tokens(tokens, num_prefix)
    b, n, c = patches.shape
    h, w = grid_size
    if h * w != n:
        raise CpcbenchError(f"backbone gave {n} patch tokens, grid_size {grid_size} needs {h * w}")
    return patches.transpose(1, 2).reshape(b, c, h, w)


def _grid(info: Mapping[str, Any]) -> tuple[int, int]:
    g = info["grid_size"]
    return (int(g), int(g)) if isinstance(g, int) else (int(g[0]), int(g[1]))


# ---------------------------------------------------------------------------------------------- rotations
def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """[..., 6] (two columns of R, Zhou et al. 2019) -> [..., 3, 3] by Gram-Schmidt."""
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def rotmat_to_rot6d(r: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> [..., 6] (first two columns)."""
    return torch.cat([r[..., :, 0], r[..., :, 1]], dim=-1)


def mean_rotation(r: torch.Tensor) -> torch.Tensor:
    """Chordal L2 mean of rotations: [N, ..., 3, 3] -> [..., 3, 3] (the arithmetic mean projected onto SO(3))."""
    u, _, vh = torch.linalg.svd(r.double().mean(0))
    d = torch.det(u @ vh)
    fix = torch.ones_like(u[..., 0, :])
    fix[..., -1] = d
    return (u * fix[..., None, :] @ vh).to(r.dtype)


class AttentionPool(nn.Module):
    """One learned query cross-attends to all tokens through a small transformer decoder (HMR2.0's SMPL head):
    tokens [B, N, C] -> feature [B, width]. Keeps the spatial layout that mean pooling averages away."""

    def __init__(self, embed_dim: int, width: int = 256, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.width = width
        self.proj = nn.Linear(embed_dim, width)
        self.query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        layer = nn.TransformerDecoderLayer(width, heads, dim_feedforward=width * 2, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, depth)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mem = self.proj(tokens)
        return self.decoder(self.query.to(mem.dtype).expand(tokens.shape[0], -1, -1), mem)[:, 0]


# ---------------------------------------------------------------------------------------------- model-based
class ParamMeshHead(nn.Module):
    """HMR-style iterative regression of body/hand model parameters from pooled tokens.

    Predicts the root orientation and the ``n_joints - 1`` relative joint rotations in 6D, ``n_betas`` shape
    coefficients and a weak-perspective camera (s, tx, ty), starting from the mean (identity pose, zero
    shape), refined ``n_iter`` times from [features, current estimate]. Decoding to vertices/joints is done
    by the task (through smplx), so the head stays free of model files.

    forward(tokens [B, P+N, C]) -> {"rotmat": [B, n_joints, 3, 3], "betas": [B, n_betas], "cam": [B, 3]}
    """

    def __init__(self, embed_dim: int, num_prefix_tokens: int, n_joints: int, n_betas: int = 10,
                 n_iter: int = 3, hidden: int = 512, init_rotmat: torch.Tensor | None = None,
                 init_betas: torch.Tensor | None = None, init_cam: torch.Tensor | None = None,
                 pool: str = "mean") -> None:
        super().__init__()
        self.num_prefix, self.n_joints, self.n_betas, self.n_iter = num_prefix_tokens, n_joints, n_betas, n_iter
        n_params = n_joints * 6 + n_betas + 3
        if pool == "mean":
            self.pool: nn.Module | None = None
            feat_dim = embed_dim
        elif pool == "attn":  # HMR2.0: one query token cross-attends to all tokens (a small transformer decoder)
            self.pool = AttentionPool(embed_dim)
            feat_dim = self.pool.width
        else:
            raise CpcbenchError(f"ParamMeshHead: pool must be 'mean' or 'attn', got {pool!r}")
        self.norm = nn.LayerNorm(feat_dim)
        self.mlp = nn.Sequential(nn.Linear(feat_dim + n_params, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU())
        self.out = nn.Linear(hidden, n_params)
        nn.init.xavier_uniform_(self.out.weight, gain=0.01)  # start near the mean estimate (HMR/HMR2.0 decoders)
        nn.init.zeros_(self.out.bias)
        # the starting estimate: the training set's mean parameters when given (HMR's mean SMPL parameters), else
        # the identity pose, zero shape and a centred camera
        rot = init_rotmat.float() if init_rotmat is not None else torch.eye(3).expand(n_joints, 3, 3)
        init = torch.cat([rotmat_to_rot6d(rot).reshape(-1),
                          init_betas.float().reshape(n_betas) if init_betas is not None else torch.zeros(n_betas),
                          init_cam.float().reshape(3) if init_cam is not None else torch.tensor([0.9, 0.0, 0.0])])
        self.register_buffer("init_params", init, persistent=False)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.norm(pooled(tokens, self.num_prefix) if self.pool is None else self.pool(tokens))
        est = self.init_params.to(feat.dtype).expand(feat.shape[0], -1)
        for _ in range(self.n_iter):
            est = est + self.out(self.mlp(torch.cat([feat, est], dim=1)))
        j6 = self.n_joints * 6
        rot6d = est[:, :j6].reshape(-1, self.n_joints, 6)
        return {"rotmat": rot6d_to_rotmat(rot6d), "betas": est[:, j6:j6 + self.n_betas],
                "cam": est[:, j6 + self.n_betas:]}


# ---------------------------------------------------------------------------------------------- model-free
def coarse_upsampling(template: torch.Tensor, n_coarse: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Farthest-point-sampled coarse vertex ids [K] and a row-stochastic upsampling matrix [V, K].

    template: [V, 3]. Each full vertex is a Gaussian-weighted mix of its nearby coarse vertices (sigma = the
    median coarse spacing), a smooth initialisation that the head then learns.
    """
    v = template.shape[0]
    k = min(n_coarse, v)
    ids = torch.zeros(k, dtype=torch.long)
    d = torch.full((v,), float("inf"))
    for i in range(1, k):
        d = torch.minimum(d, (template - template[ids[i - 1]]).norm(dim=1))
        ids[i] = int(d.argmax())
    dist = torch.cdist(template, template[ids])  # [V, K]
    spacing = dist.topk(2, dim=0, largest=False).values[1].median().clamp_min(1e-6)
    w = torch.softmax(-(dist / spacing) ** 2, dim=1)
    return ids, w


class VertexHead(nn.Module):
    """Model-free mesh head: K learned queries cross-attend to the tokens (2 decoder layers) -> K coarse 3D
    vertices (offsets from the template's coarse vertices) -> learned [V, K] upsampling -> V vertices.

    forward(tokens [B, P+N, C]) -> {"verts": [B, V, 3], "verts_coarse": [B, K, 3]} (root-relative, metres)
    """

    def __init__(self, embed_dim: int, template: torch.Tensor, n_coarse: int = 128, width: int = 128,
                 depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        ids, up = coarse_upsampling(template.float(), n_coarse)
        self.register_buffer("template_coarse", template.float()[ids].clone(), persistent=False)
        self.upsample = nn.Parameter(up)  # [V, K]
        self.proj = nn.Linear(embed_dim, width)
        self.queries = nn.Parameter(torch.randn(len(ids), width) * 0.02)
        layer = nn.TransformerDecoderLayer(width, heads, dim_feedforward=width * 2, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, depth)
        self.out = nn.Linear(width, 3)
        nn.init.xavier_uniform_(self.out.weight, gain=0.01)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        mem = self.proj(tokens)
        q = self.queries.to(mem.dtype).expand(tokens.shape[0], -1, -1)
        coarse = self.template_coarse.to(mem.dtype) + self.out(self.decoder(q, mem))
        return {"verts": self.upsample.to(mem.dtype) @ coarse, "verts_coarse": coarse}


# ---------------------------------------------------------------------------------------------- 2D keypoints
def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """[B, J, H, W] logits -> [B, J, 2] expected (x, y) in [-1, 1] (pixel centres, align_corners=False)."""
    b, j, h, w = heatmaps.shape
    p = heatmaps.flatten(2).float().softmax(-1).reshape(b, j, h, w)
    xs = (torch.arange(w, device=p.device, dtype=p.dtype) + 0.5) / w * 2 - 1
    ys = (torch.arange(h, device=p.device, dtype=p.dtype) + 0.5) / h * 2 - 1
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], dim=-1)


class KeypointHead(nn.Module):
    """Heatmaps from the patch grid (conv, x2 deconv) + soft-argmax.

    forward(tokens) -> {"heatmaps": [B, J, 2h, 2w], "kp2d": [B, J, 2] in [-1, 1] of the crop}
    """

    def __init__(self, embed_dim: int, num_prefix_tokens: int, grid_size: tuple[int, int], n_joints: int,
                 width: int = 128) -> None:
        super().__init__()
        self.num_prefix, self.grid = num_prefix_tokens, grid_size
        self.net = nn.Sequential(
            nn.Conv2d(embed_dim, width, 1), nn.GELU(),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.GroupNorm(8, width), nn.GELU(),
            nn.Conv2d(width, n_joints, 3, padding=1))

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        hm = self.net(patch_grid(tokens, self.num_prefix, self.grid))
        return {"heatmaps": hm, "kp2d": soft_argmax(hm)}


# ---------------------------------------------------------------------------------------------- dense
class DenseHead(nn.Module):
    """Per-pixel logits from the patch grid: conv + two x2 deconvs, then bilinear to the image size.

    forward(tokens) -> {"logits": [B, n_classes, img_size, img_size]}
    """

    def __init__(self, embed_dim: int, num_prefix_tokens: int, grid_size: tuple[int, int], img_size: int,
                 n_classes: int, width: int = 96) -> None:
        super().__init__()
        self.num_prefix, self.grid, self.img_size = num_prefix_tokens, grid_size, img_size
        self.net = nn.Sequential(
            nn.Conv2d(embed_dim, width, 1), nn.GroupNorm(8, width), nn.GELU(),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.GroupNorm(8, width), nn.GELU(),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.GroupNorm(8, width), nn.GELU(),
            nn.Conv2d(width, n_classes, 3, padding=1))

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.net(patch_grid(tokens, self.num_prefix, self.grid))
        return {"logits": F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)}


# ---------------------------------------------------------------------------------------------- classification
class ClassHead(nn.Module):
    """LayerNorm + linear on the CLS token (the mean patch token when the backbone has none).

    forward(tokens) -> {"logits": [B, n_classes]}
    """

    def __init__(self, embed_dim: int, num_prefix_tokens: int, n_classes: int, use_cls: bool = False) -> None:
        super().__init__()
        self.num_prefix, self.use_cls = num_prefix_tokens, use_cls and num_prefix_tokens > 0
        self.norm = nn.LayerNorm(embed_dim)
        self.fc = nn.Linear(embed_dim, n_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        f = tokens[:, 0] if self.use_cls else pooled(tokens, self.num_prefix)
        return {"logits": self.fc(self.norm(f))}


def check_backbone_info(info: Mapping[str, Any]) -> tuple[int, int, tuple[int, int], int]:
    """(embed_dim, num_prefix_tokens, grid_size, img_size) from ``backbone_info``, or a clear error."""
    missing = [k for k in ("embed_dim", "num_prefix_tokens", "grid_size", "img_size") if k not in info]
    if missing:
        raise CpcbenchError(f"backbone_info lacks {missing}; expected embed_dim, num_prefix_tokens, grid_size, "
                            "patch_size, img_size")
    img = info["img_size"]
    img_size = int(img if isinstance(img, int) else img[0])
    return int(info["embed_dim"]), int(info["num_prefix_tokens"]), _grid(info), img_size


# ---------------------------------------------------------------------------------------------- smplx decoding
class ModelDecoder(nn.Module):
    """SMPL / MANO through smplx: joint rotations + shape -> vertices and joints, differentiable.

    The model files come from ``humans.models.load_model`` (the embedded SMPL/MANO-format models, or the real
    ones from ``$CPCBENCH_MODELS``); skinning is smplx's own ``lbs`` with rotation matrices (``pose2rot=False``),
    so a 6D head needs no lossy matrix -> axis-angle conversion.

    forward(rotmat [B, J, 3, 3], betas [B, n_betas]) -> (verts [B, V, 3], joints [B, K, 3]) in model coordinates:
    body K = 24 SMPL joints; hand K = 21 keypoints in FreiHAND order (16 MANO joints + 5 fingertip vertices).
    """

    def __init__(self, kind: str, n_betas: int = 10) -> None:
        super().__init__()
        if kind not in ("smpl", "mano"):
            raise CpcbenchError(f"ModelDecoder: unknown model kind {kind!r}; use 'smpl' or 'mano'")
        model = load_model(kind, "neutral", batch_size=1)
        self.kind = kind
        nb = min(n_betas, int(model.shapedirs.shape[-1]))
        self.n_betas = nb
        self.register_buffer("v_template", model.v_template.detach().float().clone(), persistent=False)
        self.register_buffer("shapedirs", model.shapedirs[..., :nb].detach().float().clone(), persistent=False)
        self.register_buffer("posedirs", model.posedirs.detach().float().clone(), persistent=False)
        self.register_buffer("J_regressor", model.J_regressor.detach().float().clone(), persistent=False)
        self.register_buffer("lbs_weights", model.lbs_weights.detach().float().clone(), persistent=False)
        self.register_buffer("parents", model.parents.detach().long().clone(), persistent=False)
        self.n_joints = int(self.J_regressor.shape[0])

    def forward(self, rotmat: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from smplx.lbs import lbs

        b = rotmat.shape[0]
        betas = betas[:, :self.n_betas]
        if betas.shape[1] < self.n_betas:
            betas = F.pad(betas, (0, self.n_betas - betas.shape[1]))
        verts, joints = lbs(betas.float(), rotmat.float().reshape(b, self.n_joints, 3, 3), self.v_template,
                            self.shapedirs, self.posedirs, self.J_regressor, self.parents, self.lbs_weights,
                            pose2rot=False)
        if self.kind == "mano":
            joints = mano_to_freihand(joints, verts)
        return verts, joints

    def template(self) -> torch.Tensor:
        """The mean-shape rest mesh [V, 3], relative to the root joint (joint 0 of ``forward``'s joints)."""
        eye = torch.eye(3).expand(1, self.n_joints, 3, 3)
        with torch.no_grad():
            verts, joints = self(eye, torch.zeros(1, self.n_betas))
        return (verts - joints[:, :1])[0]

    def joint_regressor(self) -> torch.Tensor:
        """[K, V]: the joints of ``forward`` as a linear function of the posed vertices (body: 24 SMPL joints;
        hand: 16 MANO joints + tip vertices in FreiHAND order)."""
        if self.kind == "smpl":
            return self.J_regressor.clone()
        tips = torch.zeros(len(MANO_TIP_VERTS), self.J_regressor.shape[1])
        tips[torch.arange(len(MANO_TIP_VERTS)), torch.tensor(MANO_TIP_VERTS)] = 1.0
        return torch.cat([self.J_regressor, tips])[list(MANO_TO_FREIHAND)]


class MeshRegressor(nn.Module):
    """ParamMeshHead + smplx decoding: tokens -> {rotmat, betas, cam, verts, joints3d} (root-relative, metres)."""

    def __init__(self, head: ParamMeshHead, decoder: ModelDecoder) -> None:
        super().__init__()
        self.head, self.decoder = head, decoder

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        p = self.head(tokens)
        verts, joints = self.decoder(p["rotmat"], p["betas"])
        root = joints[:, :1]
        return {**p, "verts": verts - root, "joints3d": joints - root}


class VertexRegressor(nn.Module):
    """VertexHead + the model's joint regressor: tokens -> {verts, joints3d} (root-relative, metres)."""

    def __init__(self, head: VertexHead, decoder: ModelDecoder) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("regressor", decoder.joint_regressor(), persistent=False)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        p = self.head(tokens)
        joints = self.regressor.to(p["verts"].dtype) @ p["verts"]
        root = joints[:, :1]
        return {**p, "verts": p["verts"] - root, "joints3d": joints - root}
