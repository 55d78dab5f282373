"""The offscreen renderer: camera conventions, masks, part segmentation, buffer updates, platform choice."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import numpy as np
import pytest

from humans.cameras import crop_intrinsics, look_at, project, to_camera
from humans.render import Lighting, Renderer, decode_parts, seg_palette


def _two_part_actor() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two icospheres, part 1 at x = -0.2 and part 2 at x = +0.2 (metres)."""
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=3, radius=0.15)
    v0, f0 = np.asarray(s.vertices), np.asarray(s.faces)
    verts = np.concatenate([v0 + [-0.2, 0, 0], v0 + [0.2, 0, 0]])
    faces = np.concatenate([f0, f0 + len(v0)])
    parts = np.repeat([1, 2], len(v0))
    return verts, faces, parts


def test_palette_blends_stay_ambiguous_free() -> None:
    pal = seg_palette(24).astype(float)
    pts = np.concatenate([np.zeros((1, 3)), pal])
    for w in (0.25, 0.5, 0.75):
        for a in range(len(pts)):
            for b in range(a + 1, len(pts)):
                blend = w * pts[a] + (1 - w) * pts[b]
                assert np.abs(pal - blend).max(axis=1).min() >= 8


def test_decode_fills_blended_pixels_from_neighbours() -> None:
    pal = seg_palette(3)
    seg = np.zeros((4, 6, 3), np.uint8)
    seg[:, :3], seg[:, 3:] = pal[0], pal[2]
    seg[:, 3] = (pal[0].astype(int) + pal[2]) // 2  # a blended column
    mask = np.ones((4, 6), bool)
    mask[0, 0] = False
    parts = decode_parts(seg, mask, 3)
    assert parts[0, 0] == 0 and set(np.unique(parts[:, :3])) <= {0, 1} and set(np.unique(parts[:, 4:])) == {3}
    assert set(np.unique(parts[:, 3])) <= {1, 3}


def test_render_matches_projection_mask_and_parts() -> None:
    verts, faces, parts = _two_part_actor()
    colors = np.where(parts[:, None] == 1, [0.9, 0.2, 0.2], [0.2, 0.2, 0.9])
    E = look_at(np.array([0.1, 0.3, 2.0]), np.zeros(3))
    size = 64
    with Renderer(size) as r:
        r.set_scene([], Lighting(lights=[(np.array([0, -1, -1.0]), np.ones(3), 3.0)]))
        r.set_actor(faces, parts, colors)
        r.update_actor(verts)
        vc = to_camera(verts, E)
        K = crop_intrinsics(vc, size, margin=1.2)
        out = r.render(K, E)
        uv = project(vc, K)
        # the crop is centred: projected vertices span the middle 1/1.2 of the image
        lo, hi = uv.min(0), uv.max(0)
        assert abs((lo + hi).mean() / 2 - (size - 1) / 2) < 0.6
        assert abs(max(hi - lo) - size / 1.2) < 0.6
        # the mask covers the projected vertices (silhouette vertices may fall on a neighbouring pixel: the
        # mask is one multisample, off the pixel centre); part 1 (left sphere) is left of part 2
        from scipy import ndimage

        px = np.clip(np.round(uv).astype(int), 0, size - 1)
        assert out["mask"][px[:, 1], px[:, 0]].mean() > 0.8
        assert ndimage.binary_dilation(out["mask"])[px[:, 1], px[:, 0]].all()
        c1 = np.argwhere(out["parts"] == 1).mean(0)
        c2 = np.argwhere(out["parts"] == 2).mean(0)
        assert c1[1] < c2[1] - 10
        assert abs(c1[0] - c2[0]) < 2
        assert set(np.unique(out["parts"])) == {0, 1, 2}
        assert ((out["parts"] > 0) == (out["mask"] > 0)).all()
        # the mask centroid of each sphere sits on the projection of its centre (half-pixel convention)
        # each sphere's silhouette spans its projected vertices (pixel centres at integer coordinates)
        for p in (1, 2):
            sel = parts == p
            ys, xs = np.nonzero(out["parts"] == p)
            assert abs(xs.min() - uv[sel, 0].min()) < 1 and abs(xs.max() - uv[sel, 0].max()) < 1
            assert abs(ys.min() - uv[sel, 1].min()) < 1 and abs(ys.max() - uv[sel, 1].max()) < 1
        rgb = out["rgb"].astype(int)
        assert rgb[out["parts"] == 1][:, 0].mean() > rgb[out["parts"] == 1][:, 2].mean()
        # moving the vertices updates the render (vertex buffers are re-uploaded, not rebuilt)
        r.update_actor(verts + [0.0, 0.1, 0.0])
        moved = r.render(K, E)
        cy_before = np.argwhere(out["mask"] > 0)[:, 0].mean()
        cy_after = np.argwhere(moved["mask"] > 0)[:, 0].mean()
        assert cy_after < cy_before - 2  # up in the world is up in the image


def test_closing_one_renderer_keeps_the_others_working() -> None:
    """pyrender's EGL teardown terminates the process-wide display; our close() must not break a live renderer
    (the cached one of humans.world, a visualisation's own), whether the other is closed or just dropped."""
    import gc

    verts, faces, parts = _two_part_actor()
    E = look_at(np.array([0.1, 0.3, 2.0]), np.zeros(3))
    K = crop_intrinsics(to_camera(verts, E), 32, margin=1.2)

    def actor(r: Renderer) -> Renderer:
        r.set_scene([], Lighting(lights=[(np.array([0, -1, -1.0]), np.ones(3), 3.0)]))
        r.set_actor(faces, parts, np.full((len(verts), 3), 0.7))
        r.update_actor(verts)
        return r

    with actor(Renderer(32)) as keep:
        before = keep.render(K, E)["mask"]
        actor(Renderer(32)).close()
        actor(Renderer(32))  # dropped unclosed: collected at once
        gc.collect()
        after = keep.render(K, E)["mask"]
        assert before.sum() > 0 and np.array_equal(before, after)
    with Renderer(32) as fresh:  # and a renderer opened after all were closed still works
        assert actor(fresh).render(K, E)["mask"].sum() > 0


def test_platform_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from humans.render import choose_platform

    monkeypatch.setenv("PYOPENGL_PLATFORM", "osmesa")
    assert choose_platform() == "osmesa"


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is None, reason="libOSMesa not installed")
def test_osmesa_fallback_renders() -> None:
    code = ("import numpy as np; from humans.render import Renderer, Lighting; from humans.cameras import look_at;"
            "r = Renderer(32); r.set_scene([], Lighting());"
            "import trimesh; s = trimesh.creation.icosphere(2, radius=0.3);"
            "r.set_actor(np.asarray(s.faces), np.ones(len(s.vertices), int), np.ones((len(s.vertices), 3)));"
            "r.update_actor(np.asarray(s.vertices)); K = np.array([[40., 0, 15.5], [0, 40., 15.5], [0, 0, 1]]);"
            "out = r.render(K, look_at(np.array([0, 0, 2.0]), np.zeros(3))); assert out['mask'].sum() > 50")
    env = {**os.environ, "PYOPENGL_PLATFORM": "osmesa"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_half_pixel_convention_from_antialiased_coverage() -> None:
    """A flat square facing the camera: the anti-aliased coverage centre must sit on the projected centre
    (pixel centres at integer coordinates) to a small fraction of a pixel, and its width on the projected width."""
    q = np.array([[-0.3, -0.2, 0.0], [0.25, -0.2, 0.0], [0.25, 0.35, 0.0], [-0.3, 0.35, 0.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    E = look_at(np.array([0.0, 0.0, 2.0]), np.zeros(3))
    size = 48
    K = np.array([[60.0, 0, 20.3], [0, 60.0, 25.7], [0, 0, 1]])
    with Renderer(size) as r:
        r.set_scene([], Lighting(ambient=(1.0, 1.0, 1.0), lights=[], background=(0.0, 0.0, 0.0)))
        r.set_actor(faces, np.ones(4, int), np.ones((4, 3)))
        r.update_actor(q)
        rgb = r.render(K, E)["rgb"].astype(float)[..., 1]
    cov = rgb / rgb.max()
    uv = project(to_camera(q, E), K)
    ys, xs = np.mgrid[0:size, 0:size]
    cx, cy = (cov * xs).sum() / cov.sum(), (cov * ys).sum() / cov.sum()
    assert abs(cx - uv[:, 0].mean()) < 0.15 and abs(cy - uv[:, 1].mean()) < 0.15
    assert abs(cov.sum(1).max() - (uv[:, 0].max() - uv[:, 0].min())) < 0.5


def test_timm_imports_after_rendering() -> None:
    """Mesa's llvmpipe and triton both bundle LLVM: importing timm after a GL context must not crash."""
    code = ("import numpy as np; from humans.render import Renderer; r = Renderer(16); import timm; "
            "m = timm.create_model('vit_tiny_patch16_224', img_size=32, num_classes=0); print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
