"""Offscreen rendering of the synthetic world with pyrender (EGL, OSMesa as the fallback).

One :class:`Renderer` per process holds one OpenGL context, one scene and one mesh node per body part, and
is reused for every frame: building a scene costs far more than rasterising it
(``shared/reference/environment.md``), so per frame only the vertex buffers (positions, normals) are
re-uploaded with ``glBufferSubData`` and the camera intrinsics and pose are changed.

Conventions (the frame contract of ``humans/frames.py``):

- ``extrinsics`` is world->camera in the OpenCV convention (x right, y down, z forward), metres.
- ``K`` is a pinhole intrinsics matrix in pixels with pixel centres at integer coordinates (OpenCV):
  pixel ``(row i, column j)`` covers ``u in [j - 0.5, j + 0.5]``. pyrender/OpenGL put pixel centres at
  ``j + 0.5``, so the renderer shifts the principal point by half a pixel.
- Every body part is its own scene node; the part segmentation is pyrender's ``SEG`` pass with one palette
  colour per node. The offscreen framebuffer is multisampled, so boundary pixels are blends of two colours;
  the palette is chosen so that no blend is near a palette colour, and blended pixels take the label of
  their nearest unambiguous neighbour. The person mask is the depth of the same pass (not blended).

The platform is taken from ``PYOPENGL_PLATFORM`` when set, otherwise probed once (EGL, then OSMesa) in a
subprocess, since PyOpenGL binds its platform at first import and cannot switch afterwards. triton is
imported before the first GL context (see ``_load_triton_first``): both bundle an LLVM, and the other order
crashes the process when torchvision/timm are imported after rendering.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import CpcbenchError

PLATFORMS = ("egl", "osmesa")
_PROBE = (
    "import os, numpy as np; np.infty = np.inf; import pyrender; "
    "r = pyrender.OffscreenRenderer(8, 8); s = pyrender.Scene(); "
    "s.add(pyrender.PerspectiveCamera(yfov=1.0)); r.render(s); r.delete()"
)
# OpenCV camera axes -> OpenGL camera axes (y up, looking down -z).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


class RenderError(CpcbenchError):
    """Offscreen rendering is unavailable or failed."""


def choose_platform() -> str:
    """The PyOpenGL platform to render with: ``$PYOPENGL_PLATFORM``, else the first of EGL/OSMesa that works.

    The choice is written back to ``os.environ`` so that worker processes inherit it.
    """
    env = os.environ.get("PYOPENGL_PLATFORM")
    if env:
        return env
    errors = []
    for cand in PLATFORMS:
        proc = subprocess.run([sys.executable, "-c", _PROBE], env={**os.environ, "PYOPENGL_PLATFORM": cand},
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode == 0:
            os.environ["PYOPENGL_PLATFORM"] = cand
            return cand
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        errors.append(f"{cand}: {tail}")
    raise RenderError("no headless OpenGL platform works (" + "; ".join(errors) + "); install Mesa's EGL "
                      "(apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri) or OSMesa (libosmesa6), "
                      "or run `make setup`")


def import_pyrender() -> Any:
    """Import pyrender after choosing the platform and restoring ``np.infty`` (removed in numpy 2)."""
    if not hasattr(np, "infty"):
        np.infty = np.inf  # pyrender 0.1.45 still uses it in Mesh.bounds
    choose_platform()
    _load_triton_first()
    import pyrender

    return pyrender


def _load_triton_first() -> None:
    """Load triton's LLVM before Mesa's. Mesa's llvmpipe (EGL/OSMesa on the CPU) and triton each bring an LLVM;
    importing triton (torchvision -> torch._dynamo does, e.g. via timm) *after* a GL context exists segfaults
    the process, the other order works. So a process that renders can still build timm models afterwards."""
    import contextlib
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        with contextlib.suppress(ImportError):
            import triton  # noqa: F401


@functools.lru_cache(maxsize=4)
def seg_palette(n: int, seed: int = 7) -> np.ndarray:
    """``n`` uint8 RGB colours (row p-1 = part p) such that no 1/4, 1/2 or 3/4 blend of two palette colours
    (or of one with black, the background) lies within 8 levels (L-inf) of any palette colour.  [n, 3]
    """
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    weights = np.array([0.25, 0.5, 0.75])[:, None]
    for _ in range(20000):
        if len(chosen) == n:
            break
        c = rng.integers(40, 256, size=3).astype(np.float64)
        pts = np.array([np.zeros(3)] + chosen)
        if len(chosen) and np.abs(np.array(chosen) - c).max(axis=1).min() < 24:
            continue
        # blends of the candidate with existing colours must stay away from every palette colour (old and new)
        new_pal = np.array(chosen + [c])
        blends = (weights[None] * c + (1 - weights[None]) * pts[:, None]).reshape(-1, 3)
        if len(chosen) >= 2:  # blends among existing colours must stay away from the candidate
            a, b = np.triu_indices(len(chosen), 1)
            ch = np.array(chosen)
            old = (weights[None] * ch[a][:, None] + (1 - weights[None]) * ch[b][:, None]).reshape(-1, 3)
            blends = np.concatenate([blends, old])
        d = np.abs(blends[:, None] - new_pal[None]).max(axis=2)
        if d.min() < 8:
            continue
        chosen.append(c)
    if len(chosen) < n:
        raise RenderError(f"cannot build a segmentation palette of {n} colours")
    return np.array(chosen, dtype=np.uint8)


def decode_parts(seg_rgb: np.ndarray, mask: np.ndarray, num_parts: int) -> np.ndarray:
    """Part ids from a (multisample-blended) ``SEG`` render.  seg_rgb: [H, W, 3] uint8; mask: [H, W] bool
    -> [H, W] uint8 (0 background, 1..num_parts). Pixels whose colour is exactly a palette colour take its
    id; blended pixels inside the mask take the id of a clean neighbour (3x3, else the nearest clean pixel).
    """
    from scipy import ndimage

    pal = seg_palette(num_parts).astype(np.int64)
    keys = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(keys)
    rgb = seg_rgb.astype(np.int64)
    key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    pos = np.clip(np.searchsorted(keys[order], key), 0, len(keys) - 1)
    clean = (keys[order][pos] == key) & mask
    labels = np.where(clean, order[pos] + 1, 0).astype(np.uint8)
    todo = mask & ~clean
    if todo.any() and clean.any():
        near = ndimage.maximum_filter(labels, size=3)
        labels[todo] = near[todo]
        left = mask & (labels == 0)
        if left.any():
            _, (ii, jj) = ndimage.distance_transform_edt(~clean, return_indices=True)
            labels[left] = labels[ii[left], jj[left]]
    return labels


def vertex_normals(verts: np.ndarray, faces: np.ndarray, adjacency: Any = None) -> np.ndarray:
    """Area-weighted unit vertex normals.  verts: [V, 3]; faces: [F, 3] -> [V, 3] float32.

    ``adjacency`` is the sparse [V, F] incidence matrix (:func:`face_incidence`), built if not given.
    """
    if adjacency is None:
        adjacency = face_incidence(faces, len(verts))
    v = verts.astype(np.float32, copy=False)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    vn = adjacency @ fn
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return (vn / np.maximum(norm, 1e-12)).astype(np.float32)


def face_incidence(faces: np.ndarray, num_verts: int) -> Any:
    """Sparse [V, F] matrix with a 1 where vertex v belongs to face f."""
    import scipy.sparse as sp

    nf = len(faces)
    return sp.csr_matrix((np.ones(3 * nf, np.float32), (faces.T.ravel(), np.tile(np.arange(nf), 3))),
                         shape=(num_verts, nf))


@dataclass
class TexturedMesh:
    """A static, textured piece of scenery (floor, wall, backdrop) in world coordinates.

    vertices: [N, 3]; faces: [F, 3]; uv: [N, 2] (repeats allowed: textures wrap); texture: [H, W, 3] uint8.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    texture: np.ndarray
    normals: np.ndarray | None = None
    roughness: float = 0.9


@dataclass
class Lighting:
    """Ambient colour, directional lights (unit direction the light travels, world coords; RGB colour;
    intensity) and the colour of pixels nothing covers."""

    ambient: tuple[float, float, float] = (0.3, 0.3, 0.3)
    lights: list[tuple[np.ndarray, np.ndarray, float]] = field(default_factory=list)
    background: tuple[float, float, float] = (0.5, 0.5, 0.5)


def _look_along(direction: np.ndarray) -> np.ndarray:
    """A pose (4x4) whose -z axis points along ``direction`` (pyrender lights shine down their -z)."""
    z = -np.asarray(direction, np.float64)
    z /= np.linalg.norm(z)
    up = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.95 else np.array([1.0, 0.0, 0.0])
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = x, y, z
    return pose


def _rank(node: Any) -> tuple[int, int]:
    return getattr(node, "_cpc_rank", (9, 0))


@functools.lru_cache(maxsize=1)
def _ordered_scene_class(pr: Any) -> type:
    """A pyrender Scene whose lights iterate in a fixed order. pyrender keeps nodes in sets (order = memory
    addresses), and the order of light sums and of drawing equal-depth surfaces changes pixels: frames must
    not depend on what a process rendered before."""

    class OrderedScene(pr.Scene):
        @property
        def light_nodes(self) -> list[Any]:
            return sorted(super().light_nodes, key=_rank)

    return OrderedScene


#: the open renderers of this process (weak: a renderer that is garbage-collected unclosed drops out)
_LIVE: weakref.WeakSet = weakref.WeakSet()


class Renderer:
    """A reusable offscreen renderer: one scenery, one actor (a mesh split into part nodes), any cameras.

    Usage: ``set_scene(scenery, lighting)``, ``set_actor(faces, part_of_vertex, colors)``, then per time step
    ``update_actor(verts)`` and per camera ``render(K, extrinsics)``. Call :meth:`close` when done.
    """

    def __init__(self, size: int, znear: float = 0.02, zfar: float = 100.0) -> None:
        self.size = int(size)
        self.znear, self.zfar = znear, zfar
        self._pr = import_pyrender()
        pr = self._pr
        try:
            self._r = pr.OffscreenRenderer(self.size, self.size)
        except Exception as e:  # noqa: BLE001 - any GL/EGL failure becomes one actionable line
            raise RenderError(f"cannot open an offscreen {os.environ.get('PYOPENGL_PLATFORM')} context ({e}); "
                              "set PYOPENGL_PLATFORM=osmesa or install Mesa's EGL (make setup)") from e
        _LIVE.add(self)
        self._scene = _ordered_scene_class(pr)(bg_color=[0.5, 0.5, 0.5, 1.0], ambient_light=[0.3, 0.3, 0.3])
        # draw in a fixed order (pyrender sorts by node distance, ties in set order): scenery, then parts
        self._r._renderer._sorted_mesh_nodes = lambda scene: sorted(scene.mesh_nodes, key=_rank)
        self._cam_node = self._scene.add(pr.IntrinsicsCamera(100.0, 100.0, self.size / 2, self.size / 2,
                                                             znear=znear, zfar=zfar))
        self._scenery_nodes: list[Any] = []
        self._light_nodes: list[Any] = []
        self._part_nodes: list[Any] = []
        self._part_vidx: list[np.ndarray] = []
        self._part_colors: list[np.ndarray] = []
        self._faces: np.ndarray | None = None
        self._adj: Any = None
        self._num_parts = 0
        self._seg_map: dict[Any, np.ndarray] = {}

    # -- scene ---------------------------------------------------------------------------------------------
    def set_scene(self, scenery: list[TexturedMesh], lighting: Lighting) -> None:
        """Replace the scenery meshes and lights."""
        pr = self._pr
        for n in self._scenery_nodes + self._light_nodes:
            self._scene.remove_node(n)
        self._scenery_nodes, self._light_nodes = [], []
        for m in scenery:
            tex = pr.Texture(source=np.ascontiguousarray(m.texture), source_channels="RGB",
                             sampler=pr.Sampler(magFilter=9729, minFilter=9987))  # LINEAR, LINEAR_MIPMAP_LINEAR
            mat = pr.MetallicRoughnessMaterial(baseColorTexture=tex, metallicFactor=0.0,
                                               roughnessFactor=m.roughness)
            normals = m.normals if m.normals is not None else vertex_normals(m.vertices, m.faces)
            prim = pr.Primitive(positions=m.vertices.astype(np.float32), normals=normals.astype(np.float32),
                                texcoord_0=m.uv.astype(np.float32), indices=m.faces.astype(np.uint32),
                                material=mat)
            node = self._scene.add(pr.Mesh([prim]))
            node._cpc_rank = (1, len(self._scenery_nodes))
            self._scenery_nodes.append(node)
        for direction, color, intensity in lighting.lights:
            light = pr.DirectionalLight(color=np.asarray(color, np.float64), intensity=float(intensity))
            node = self._scene.add(light, pose=_look_along(direction))
            node._cpc_rank = (0, len(self._light_nodes))
            self._light_nodes.append(node)
        self._scene.ambient_light = np.asarray(lighting.ambient, np.float64)
        self._scene.bg_color = np.array([*lighting.background, 1.0])

    def set_actor(self, faces: np.ndarray, part_of_vertex: np.ndarray, colors: np.ndarray,
                  roughness: float = 0.75) -> None:
        """Replace the actor. faces: [F, 3]; part_of_vertex: [V] ints 1..P; colors: [V, 3] floats in 0..1."""
        pr = self._pr
        for n in self._part_nodes:
            self._scene.remove_node(n)
        faces = np.asarray(faces, np.int64)
        pov = np.asarray(part_of_vertex, np.int64)
        num_verts = len(pov)
        self._faces = faces
        self._adj = face_incidence(faces, num_verts)
        self._num_parts = int(pov.max())
        # a face belongs to the part most of its vertices belong to (ties: its first vertex's part)
        fp = pov[faces]
        face_part = np.where(fp[:, 1] == fp[:, 2], fp[:, 1], fp[:, 0])
        palette = seg_palette(self._num_parts)
        rgba = np.concatenate([np.clip(colors, 0, 1), np.ones((num_verts, 1))], axis=1).astype(np.float32)
        self._part_nodes, self._part_vidx, self._part_colors, self._seg_map = [], [], [], {}
        mat = pr.MetallicRoughnessMaterial(metallicFactor=0.0, roughnessFactor=roughness)
        for p in range(1, self._num_parts + 1):
            pf = faces[face_part == p]
            if len(pf) == 0:
                continue
            vidx, local = np.unique(pf, return_inverse=True)
            local = local.reshape(-1, 3).astype(np.uint32)
            prim = pr.Primitive(positions=np.zeros((len(vidx), 3), np.float32),
                                normals=np.tile(np.float32([0, 0, 1]), (len(vidx), 1)),
                                color_0=rgba[vidx], indices=local, material=mat)
            node = self._scene.add(pr.Mesh([prim]))
            node._cpc_rank = (2, p)
            self._part_nodes.append(node)
            self._part_vidx.append(vidx)
            self._part_colors.append(rgba[vidx])
            self._seg_map[node] = palette[p - 1]

    def update_actor(self, verts: np.ndarray) -> None:
        """New vertex positions for the actor (world coords).  verts: [V, 3]"""
        from OpenGL.GL import GL_ARRAY_BUFFER, glBindBuffer, glBufferSubData

        if self._faces is None:
            raise RenderError("Renderer.update_actor called before set_actor")
        verts = np.asarray(verts, np.float32)
        normals = vertex_normals(verts, self._faces, self._adj)
        made_current = False
        for node, vidx, rgba in zip(self._part_nodes, self._part_vidx, self._part_colors, strict=True):
            prim = node.mesh.primitives[0]
            pos, nrm = verts[vidx], normals[vidx]
            prim.positions = pos
            prim.normals = nrm
            if prim._vaid is not None and prim._buffers:  # already uploaded: overwrite the interleaved buffer
                if not made_current:
                    self._r._platform.make_current()
                    made_current = True
                data = np.ascontiguousarray(np.concatenate([pos, nrm, rgba], axis=1), dtype=np.float32)
                glBindBuffer(GL_ARRAY_BUFFER, prim._buffers[0])
                glBufferSubData(GL_ARRAY_BUFFER, 0, data.nbytes, data)

    # -- rendering -----------------------------------------------------------------------------------------
    def _set_camera(self, K: np.ndarray, extrinsics: np.ndarray) -> None:
        cam = self._cam_node.camera
        cam.fx, cam.fy = float(K[0, 0]), float(K[1, 1])
        cam.cx, cam.cy = float(K[0, 2]) + 0.5, float(K[1, 2]) + 0.5
        self._scene.set_pose(self._cam_node, np.linalg.inv(np.asarray(extrinsics, np.float64)) @ _CV_TO_GL)

    def render(self, K: np.ndarray, extrinsics: np.ndarray, parts: bool = True) -> dict[str, np.ndarray]:
        """Render the current scene from one camera.  K: [3, 3]; extrinsics: [4, 4] world->camera (OpenCV).

        Returns ``rgb`` [S, S, 3] uint8, ``mask`` [S, S] uint8 (1 = actor visible) and, with ``parts``,
        ``parts`` [S, S] uint8 (0 background, 1..P).
        """
        pr = self._pr
        self._set_camera(K, extrinsics)
        rgb, _ = self._r.render(self._scene, flags=pr.RenderFlags.NONE)
        out = {"rgb": np.ascontiguousarray(rgb[:, :, :3])}
        if self._part_nodes:  # the SEG pass draws only the nodes in seg_node_map: the actor's parts
            seg, depth = self._r.render(self._scene, flags=pr.RenderFlags.SEG, seg_node_map=self._seg_map)
            mask = depth > 0
            out["mask"] = mask.astype(np.uint8)
            if parts:
                out["parts"] = decode_parts(seg, mask, self._num_parts)
        return out

    def close(self) -> None:
        """Free this renderer's GL resources. pyrender's EGL teardown terminates the EGL display, which every
        renderer of the process shares (eglGetDisplay returns one handle), so while other renderers are open only
        this one's context is destroyed: closing one renderer never breaks another (e.g. the cached renderer of
        ``humans.world`` and the one ``cpcbench eval --visualize`` opens)."""
        r = getattr(self, "_r", None)  # unset if opening the context failed
        if r is None or getattr(r, "_platform", None) is None:
            return
        _LIVE.discard(self)
        plat = r._platform
        if len(_LIVE) and hasattr(plat, "_egl_display") and hasattr(plat, "_egl_context"):
            def destroy_context_only() -> None:
                from OpenGL.EGL import eglDestroyContext

                if plat._egl_display is not None and plat._egl_context is not None:
                    eglDestroyContext(plat._egl_display, plat._egl_context)
                plat._egl_context = plat._egl_display = None

            plat.delete_context = destroy_context_only
        r.delete()

    def __del__(self) -> None:  # an unclosed renderer must not terminate the display under the others either
        with contextlib.suppress(Exception):  # at interpreter shutdown there is nothing left to protect
            self.close()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
