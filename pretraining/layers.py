"""Transformer layers timm lacks in the form we need: RoPE-aware attention, a cross-attention decoder block,
2D rotary position embeddings (CroCo v2 style) and fixed 2D sin-cos position embeddings.

Parameter names follow timm's ``Block`` (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``,
``mlp.fc2``) so that timm and CroCo encoder weights load unchanged.

2D RoPE (Su et al., RoFormer, 2021; the 2D form of CroCo v2, Weinzaepfel et al., ICCV 2023): a head of
width ``d`` is split into two halves; the first half is rotated by the token's row ``y``, the second by its
column ``x``. Within a half of width ``h``, channel pairs ``(t_i, t_{i+h/2})`` are rotated by the angle
``pos * base^(-2i/h)``, i = 0 .. h/2-1, i.e. ``t' = t * cos + rotate_half(t) * sin`` with
``rotate_half([a, b]) = [-b, a]``. Prefix tokens (CLS) are not rotated (cos = 1, sin = 0). ``RoPE2D.cos_sin``
returns ``sin`` with the sign of ``rotate_half`` folded in (``-sin`` on the first quarter of each half), so
``apply_rope`` is ``t * cos + swap(t) * sin`` with one quarter swap and no negation or concatenation: fewer
kernels and copies on the hot path (issue 14); q and k are rotated in one call.

2D sin-cos (MAE / CroCo v1 layout): for a grid token at row ``i``, column ``j``, the first ``D/2``
channels encode ``j`` and the last ``D/2`` encode ``i``; each 1D code of width ``h`` is
``[sin(p * w_k), cos(p * w_k)]`` with ``w_k = 10000^(-k/(h/2))``, k = 0 .. h/2-1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

Rope = tuple[torch.Tensor, torch.Tensor]  # (cos, sin): [B or 1, 1, N, head_dim]


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)


# --- position codes --------------------------------------------------------------------------------------
def grid_positions(gh: int, gw: int, device: torch.device | None = None) -> torch.Tensor:
    """Row-major (y, x) positions of a ``gh x gw`` grid: [gh*gw, 2] float."""
    y, x = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    return torch.stack([y.flatten(), x.flatten()], dim=-1).float()


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """pos: [N] -> [N, dim] = [sin(pos*w), cos(pos*w)], w_k = 10000^(-k/(dim/2))."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2))
    out = pos.double()[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1).float()


def sincos_2d(dim: int, gh: int, gw: int) -> torch.Tensor:
    """Fixed 2D sin-cos embedding [gh*gw, dim], row-major tokens; first half encodes x, second half y."""
    if dim % 4:
        raise ValueError(f"2D sin-cos embedding width must be a multiple of 4, got {dim}")
    pos = grid_positions(gh, gw)
    return torch.cat([sincos_1d(dim // 2, pos[:, 1]), sincos_1d(dim // 2, pos[:, 0])], dim=1)


class RoPE2D(nn.Module):
    """2D rotary position embedding (see module docstring). No parameters; ``base`` 100 as CroCo v2's RoPE100."""

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = float(base)

    def cos_sin(self, pos: torch.Tensor, head_dim: int, num_prefix: int = 0) -> Rope:
        """pos: [B, N, 2] (y, x) -> (cos, sin) each [B, 1, num_prefix + N, head_dim]."""
        if head_dim % 4:
            raise ValueError(f"2D RoPE needs a head width divisible by 4, got {head_dim}")
        half = head_dim // 2
        inv_freq = 1.0 / self.base ** (torch.arange(0, half, 2, device=pos.device, dtype=torch.float32) / half)
        fy = pos[..., 0:1].float() * inv_freq  # [B, N, half/2]
        fx = pos[..., 1:2].float() * inv_freq
        ang = torch.cat([fy, fy, fx, fx], dim=-1)  # [B, N, head_dim]
        cos, sin = ang.cos(), ang.sin()
        sign = torch.ones(4, head_dim // 4, device=pos.device)
        sign[0::2] = -1.0  # rotate_half's sign, folded into sin (see module docstring)
        sin = sin * sign.flatten()
        if num_prefix:
            b = pos.shape[0]
            cos = torch.cat([cos.new_ones(b, num_prefix, head_dim), cos], dim=1)
            sin = torch.cat([sin.new_zeros(b, num_prefix, head_dim), sin], dim=1)
        return cos[:, None], sin[:, None]


def apply_rope(t: torch.Tensor, rope: Rope) -> torch.Tensor:
    """t: [..., B, heads, N, d] rotated per axis half: t*cos + rotate_half_per_axis(t)*sin, with ``sin`` signed as
    ``RoPE2D.cos_sin`` gives it; the quarters (a, b, c, d) are swapped to (b, a, d, c) by one flip."""
    cos, sin = rope
    swapped = t.unflatten(-1, (2, 2, -1)).flip(-2).flatten(-3)
    return torch.addcmul(t * cos, swapped, sin)


# --- attention ------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head self-attention with timm's parameter names (``qkv``, ``proj``) and optional RoPE."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        """x: [B, N, C] -> [B, N, C]."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(qkv[:2], rope).unbind(0)  # q and k in one call
            v = qkv[2]
        else:
            q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    """Queries from ``x``, keys/values from ``mem``; optional RoPE on each side with its own positions."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mem: torch.Tensor, rope_x: Rope | None = None,
                rope_mem: Rope | None = None) -> torch.Tensor:
        """x: [B, N, C], mem: [B, M, C] -> [B, N, C]."""
        b, n, c = x.shape
        m = mem.shape[1]
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(mem).reshape(b, m, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if rope_x is not None:
            q = apply_rope(q, rope_x)
        if rope_mem is not None:
            k = apply_rope(k, rope_mem)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


# --- blocks ---------------------------------------------------------------------------------------------
class Block(nn.Module):
    """Pre-norm transformer block (timm ``Block`` names): x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), rope))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DecoderBlock(nn.Module):
    """CroCo decoder block: self-attention over the target tokens, cross-attention to the (normed) reference
    tokens, MLP; each pre-normed with a residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 norm_mem: bool = True) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = layer_norm(dim)
        self.cross_attn = CrossAttention(dim, num_heads, qkv_bias)
        self.norm_mem = layer_norm(dim) if norm_mem else nn.Identity()
        self.norm3 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, mem: torch.Tensor, rope_x: Rope | None = None,
                rope_mem: Rope | None = None) -> torch.Tensor:
        """x: [B, N, C] target tokens; mem: [B, M, C] reference tokens -> [B, N, C]."""
        x = x + self.attn(self.norm1(x), rope_x)
        x = x + self.cross_attn(self.norm2(x), self.norm_mem(mem), rope_x, rope_mem)
        return x + self.mlp(self.norm3(x))


class ConvStem(nn.Module):
    """A convolutional patch embedding (ViT_C of Xiao et al., "Early Convolutions Help Transformers See Better",
    NeurIPS 2021): log2(patch) 3x3 stride-2 convolutions, each with a GroupNorm and a ReLU, widths doubling up to
    ``dim`` (``dim / 2**(k-1)`` ... ``dim``), then a 1x1 convolution to ``dim``; the same [B, C, H/p, W/p] map as a
    ``patch x patch`` stride-``patch`` convolution. GroupNorm rather than the paper's BatchNorm: the stem's output
    then never depends on the batch (masked pairs, EMA teachers, one-image feature extraction all see the same
    function). ``forward(x [B, 3, H, W]) -> [B, dim, H / patch, W / patch]``."""

    def __init__(self, patch: int, dim: int, in_chans: int = 3) -> None:
        super().__init__()
        k = patch.bit_length() - 1
        if patch < 2 or 2 ** k != patch:
            raise ValueError(f"a convolutional stem needs a power-of-two patch size >= 2, got {patch}")
        layers: list[nn.Module] = []
        c = in_chans
        for i in range(k):
            w = max(8, dim // 2 ** (k - 1 - i))
            layers += [nn.Conv2d(c, w, 3, 2, 1, bias=False), nn.GroupNorm(math.gcd(8, w), w), nn.ReLU(inplace=True)]
            c = w
        layers.append(nn.Conv2d(c, dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def init_weights(module: nn.Module) -> None:
    """MAE/CroCo initialisation: xavier-uniform linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
