"""Appearance of the synthetic world: skin tones, clothing per body part, procedural scenery and lighting.

Everything here is plain numpy and draws from a caller's ``np.random.Generator``, so a seed fixes every
colour. Clothing is painted as vertex colours computed on the rest-pose mesh (so a stripe stays on the same
vertices when the body moves); scenery gets procedural textures (checker, stripes, tiles, planks, noise).
Domain randomisation of this kind follows SURREAL (Varol et al., CVPR 2017) and AGORA-style synthetic
humans; the geometry (a room with a floor and walls, or a backdrop sphere) is shared by all cameras of a
sequence, so cross-view pairs see one consistent scene (CroCo-Man, CVPR 2024).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from humans.render import Lighting, TexturedMesh

# sRGB skin tones from very light to very dark (roughly Fitzpatrick I-VI), jittered per subject.
SKIN_TONES = np.array([
    [255, 224, 196], [241, 194, 167], [234, 189, 157], [224, 172, 138], [198, 134, 94],
    [176, 116, 80], [141, 85, 54], [112, 70, 45], [84, 54, 36], [62, 40, 28],
], dtype=np.float64) / 255.0
HAIR_COLOURS = np.array([[20, 16, 14], [45, 30, 20], [90, 60, 35], [150, 110, 60], [200, 170, 110],
                         [120, 40, 20], [160, 160, 160]], dtype=np.float64) / 255.0
# garments people commonly wear: denim, black, grey, white, navy, khaki (mixed with random hues)
COMMON_CLOTH = np.array([[50, 70, 110], [25, 25, 28], [120, 120, 125], [225, 225, 220], [30, 40, 70],
                         [175, 155, 115], [90, 40, 40], [60, 80, 50]], dtype=np.float64) / 255.0

# Garment regions, assigned from part names (SMPL joint names; MANO/other names fall back to "skin").
REGIONS = ("skin", "head", "top", "upper_arm", "forearm", "hips", "shin", "shoes")


def region_of_part(name: str) -> str:
    """Which garment region a body part belongs to, from its name (``left_lower_leg`` or SMPL's ``left_knee``
    -> ``shin``). A torso's lower part is re-assigned to ``hips`` by :func:`body_colours`."""
    n = name.lower()
    rules = (
        (("foot", "ankle", "toe"), "shoes"),
        (("hand", "wrist", "finger", "thumb", "index", "middle", "ring", "pinky", "palm"), "skin"),
        (("head", "neck", "jaw", "eye"), "head"),
        (("elbow", "forearm", "lower_arm"), "forearm"),
        (("shoulder", "upperarm", "upper_arm"), "upper_arm"),
        (("collar", "spine", "chest", "torso", "clavicle"), "top"),
        (("pelvis", "hip", "thigh", "upper_leg"), "hips"),
        (("knee", "calf", "shin", "lower_leg", "leg"), "shin"),
    )
    for keys, region in rules:
        if any(k in n for k in keys):
            return region
    return "skin"


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def random_cloth_colour(rng: np.random.Generator) -> np.ndarray:
    """One garment colour: half the time a common one (denim, black, ...), else a random hue.  -> [3]"""
    if rng.random() < 0.5:
        c = COMMON_CLOTH[rng.integers(len(COMMON_CLOTH))]
        return np.clip(c * rng.uniform(0.85, 1.15), 0, 1)
    return _hsv_to_rgb(rng.random(), rng.uniform(0.25, 0.9), rng.uniform(0.25, 0.95))


def skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A skin tone: a random entry of :data:`SKIN_TONES` with a small jitter.  -> [3]"""
    c = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    return np.clip(c * rng.uniform(0.93, 1.07) + rng.normal(0, 0.015, 3), 0, 1)


def pattern(rng: np.random.Generator, pts: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Paint a garment: solid, horizontal or vertical stripes, checks or spots on rest-pose points.

    pts: [N, 3] rest-pose vertex positions (metres, y up); base: [3] -> colours [N, 3].
    """
    kind = rng.choice(["solid", "solid", "hstripes", "vstripes", "checks", "spots"])
    second = random_cloth_colour(rng) if rng.random() < 0.7 else np.clip(base * 0.55, 0, 1)
    freq = rng.uniform(12, 40)  # stripes per metre * 2pi / 2pi-ish
    if kind == "solid":
        t = np.zeros(len(pts))
    elif kind == "hstripes":
        t = (np.sin(pts[:, 1] * freq + rng.uniform(0, 6.3)) > rng.uniform(-0.3, 0.5)).astype(float)
    elif kind == "vstripes":
        ang = np.arctan2(pts[:, 0], pts[:, 2])
        t = (np.sin(ang * rng.integers(6, 18)) > 0).astype(float)
    elif kind == "checks":
        f = freq / 3
        t = ((np.floor(pts[:, 0] * f) + np.floor(pts[:, 1] * f) + np.floor(pts[:, 2] * f)) % 2).astype(float)
    elif kind == "spots":
        centres = pts[rng.integers(len(pts), size=max(1, len(pts) // 60))]
        d = np.min(np.linalg.norm(pts[:, None] - centres[None], axis=2), axis=1)
        t = (d < rng.uniform(0.015, 0.03)).astype(float)
    else:
        raise ValueError(f"unknown pattern {kind}")
    return base[None] * (1 - t[:, None]) + second[None] * t[:, None]


def body_colours(rng: np.random.Generator, rest_verts: np.ndarray, part_of_vertex: np.ndarray,
                 part_names: Sequence[str]) -> np.ndarray:
    """Per-vertex colours of one clothed subject: skin, hair, top (short or long sleeves), trousers or
    shorts, shoes.  rest_verts: [V, 3] (y up, facing +z); part_of_vertex: [V] in 1..P -> [V, 3] in 0..1.
    """
    skin = skin_colour(rng)
    region = np.array([region_of_part(part_names[p - 1]) for p in part_of_vertex])
    top = region == "top"
    if top.any():  # the lower part of the torso (below the waist) wears the bottom garment
        ty = rest_verts[top, 1]
        waist = ty.min() + rng.uniform(0.2, 0.32) * (ty.max() - ty.min())
        region[top & (rest_verts[:, 1] < waist)] = "hips"
    out = np.tile(skin, (len(rest_verts), 1))
    top = pattern(rng, rest_verts, random_cloth_colour(rng))
    bottom = pattern(rng, rest_verts, random_cloth_colour(rng)) if rng.random() < 0.6 else \
        np.tile(random_cloth_colour(rng), (len(rest_verts), 1))
    shoes = np.tile(random_cloth_colour(rng) * rng.uniform(0.3, 1.0), (len(rest_verts), 1))
    long_sleeves = rng.random() < 0.45
    sleeveless = (not long_sleeves) and rng.random() < 0.15
    trousers = rng.random() < 0.65
    one_piece = rng.random() < 0.12  # dress / overall: bottom takes the top's colours
    if one_piece:
        bottom = top
    for name, colours in (("top", top), ("hips", bottom), ("shoes", shoes)):
        m = region == name
        out[m] = colours[m]
    if not sleeveless:
        out[region == "upper_arm"] = top[region == "upper_arm"]
    if long_sleeves:
        out[region == "forearm"] = top[region == "forearm"]
    if trousers:
        out[region == "shin"] = bottom[region == "shin"]
    head = region == "head"
    if head.any():
        out[head] = _face(rng, rest_verts, head, _hair(rng, rest_verts, head, out[head]))
    if (region == "top").any():
        out = _front_of_top(rng, rest_verts, region == "top", out, skin)
    # soft per-vertex shading noise so that flat colours do not look like plastic
    out *= rng.uniform(0.95, 1.05, size=(len(out), 1))
    return np.clip(out, 0, 1)


def _hair(rng: np.random.Generator, verts: np.ndarray, head: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Paint hair on the upper/back part of the head region (short or long hair, sometimes none)."""
    style = rng.choice(["short", "short", "short", "long", "long", "long", "bald"])
    if style == "bald":
        return colours
    hv = verts[head]
    c = hv.mean(axis=0)
    top_y = hv[:, 1].max()
    height = top_y - hv[:, 1].min()
    front = hv[:, 2] - c[2]
    dy = hv[:, 1] - c[1]
    face = (front > 0.25 * height * 0.5) & (dy < 0.25 * height)
    hair = (dy > -0.05 * height) & ~face
    if style == "long":
        hair |= (front < -0.02 * height)
    out = colours.copy()
    out[hair] = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    return out


def _face(rng: np.random.Generator, verts: np.ndarray, head: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Eyes, brows and mouth on the front (+z) of the head region: a person's front differs from their back."""
    hv = verts[head]
    c = hv.mean(axis=0)
    height = hv[:, 1].max() - hv[:, 1].min()
    width = hv[:, 0].max() - hv[:, 0].min()
    front = hv[:, 2] > c[2] + 0.3 * (hv[:, 2].max() - c[2])
    dx, dy = np.abs(hv[:, 0] - c[0]) / width, (hv[:, 1] - c[1]) / height
    eyes = front & (dy > 0.02) & (dy < 0.1) & (dx > 0.08) & (dx < 0.26)
    brows = front & (dy >= 0.1) & (dy < 0.15) & (dx > 0.07) & (dx < 0.28)
    mouth = front & (dy > -0.2) & (dy < -0.13) & (dx < 0.12)
    out = colours.copy()
    out[eyes] = rng.uniform(0.05, 0.2) * np.ones(3)
    out[brows] = colours[brows] * 0.45
    out[mouth] = colours[mouth] * np.array([0.75, 0.45, 0.45])
    return out


def _front_of_top(rng: np.random.Generator, verts: np.ndarray, top: np.ndarray, colours: np.ndarray,
                  skin: np.ndarray) -> np.ndarray:
    """The front of a top differs from its back: a lower neckline (skin shows), often a chest print or a
    placket/zip down the middle."""
    tv = verts[top]
    c = tv.mean(axis=0)
    y0, y1 = tv[:, 1].min(), tv[:, 1].max()
    h, w = y1 - y0, tv[:, 0].max() - tv[:, 0].min()
    dx = np.abs(verts[:, 0] - c[0]) / w
    up = (verts[:, 1] - y0) / h
    front = top & (verts[:, 2] > c[2])
    out = colours.copy()
    depth = rng.uniform(0.1, 0.25)  # neckline: a V or a scoop below the collar, on the front only
    v_neck = rng.random() < 0.5
    neck = front & (up > 1 - depth * ((1 - dx / 0.22) if v_neck else np.sqrt(np.clip(1 - (dx / 0.22) ** 2, 0, 1))))
    out[neck & (dx < 0.22)] = skin
    r = rng.random()
    if r < 0.45:  # a print on the chest, contrasting with the top
        base = colours[front].mean(axis=0) if front.any() else skin
        ink = np.ones(3) - base if rng.random() < 0.6 else random_cloth_colour(rng)
        cy, half_h, half_w = rng.uniform(0.5, 0.7), rng.uniform(0.08, 0.15), rng.uniform(0.1, 0.22)
        out[front & (np.abs(up - cy) < half_h) & (dx < half_w)] = ink
    elif r < 0.7:  # a placket or zip down the front
        out[front & (dx < 0.025) & (up < 1 - depth)] = colours[front].mean(axis=0) * rng.uniform(0.2, 0.5)
    return out


def hand_colours(rng: np.random.Generator, rest_verts: np.ndarray) -> np.ndarray:
    """Per-vertex colours of a hand: a skin tone with a slightly lighter palm side, or (1 in 6) a glove.
    rest_verts: [V, 3] -> [V, 3] in 0..1.
    """
    if rng.random() < 1 / 6:
        base = random_cloth_colour(rng)
        return np.clip(np.tile(base, (len(rest_verts), 1)) * rng.uniform(0.95, 1.05, (len(rest_verts), 1)), 0, 1)
    skin = skin_colour(rng)
    out = np.tile(skin, (len(rest_verts), 1))
    # MANO's rest hand is flat with the palm facing -y: lighten the palm side a little
    c = rest_verts.mean(axis=0)
    palm = rest_verts[:, 1] < c[1]
    out[palm] = np.clip(skin * 1.08 + 0.03, 0, 1)
    out *= rng.uniform(0.96, 1.04, size=(len(out), 1))
    return np.clip(out, 0, 1)


# -- textures ---------------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a random ``cells``² grid upsampled bicubically to ``size``².  -> [size, size]"""
    from scipy import ndimage

    grid = rng.random((cells, cells))
    z = ndimage.zoom(grid, size / cells, order=3, mode="grid-wrap")[:size, :size]
    return np.clip(z, 0, 1)


def procedural_texture(rng: np.random.Generator, size: int = 256, kind: str | None = None) -> np.ndarray:
    """A random tileable texture: checker, stripes, tiles, planks, noise or blobs.  -> [size, size, 3] uint8"""
    kinds = ("checker", "stripes", "tiles", "planks", "noise", "blobs")
    kind = kind or str(rng.choice(kinds))
    a = random_cloth_colour(rng)
    b = random_cloth_colour(rng) if rng.random() < 0.6 else np.clip(a * rng.uniform(0.5, 0.8), 0, 1)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "checker":
        n = int(rng.choice([2, 4, 8]))
        t = ((np.floor(xx * n) + np.floor(yy * n)) % 2)[..., None]
        img = a * t + b * (1 - t)
    elif kind == "stripes":
        n = int(rng.choice([2, 4, 8, 16]))
        t = (np.sin(2 * np.pi * n * (xx if rng.random() < 0.5 else yy)) > 0)[..., None]
        img = a * t + b * (1 - t)
    elif kind == "tiles":
        n = int(rng.choice([2, 4, 8]))
        grout = (((xx * n) % 1 < 0.05) | ((yy * n) % 1 < 0.05))[..., None]
        img = np.where(grout, np.clip(b * 0.6, 0, 1), a * (0.9 + 0.1 * _smooth_noise(rng, size, 8)[..., None]))
    elif kind == "planks":
        n = int(rng.choice([4, 8]))
        row = np.floor(yy * n)
        offset = (row % 2) * 0.5
        seam = (((xx + offset) * 2) % 1 < 0.02) | ((yy * n) % 1 < 0.03)
        grain = 0.85 + 0.15 * np.sin(2 * np.pi * (yy * n * 6 + 0.3 * _smooth_noise(rng, size, 16)))
        img = a * grain[..., None]
        img[seam] = img[seam] * 0.6
    elif kind == "noise":
        t = (0.6 * _smooth_noise(rng, size, 4) + 0.3 * _smooth_noise(rng, size, 16)
             + 0.1 * _smooth_noise(rng, size, 64))[..., None]
        img = a * t + b * (1 - t)
    elif kind == "blobs":
        t = (_smooth_noise(rng, size, 8) > 0.5)[..., None].astype(float)
        img = a * t + b * (1 - t)
    else:
        raise ValueError(f"unknown texture kind {kind!r}; choose one of {kinds}")
    img = img * (0.97 + 0.06 * rng.random((size, size, 1)))  # grain
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


# -- scenery ----------------------------------------------------------------------------------------------
def floor_mesh(texture: np.ndarray, centre: np.ndarray, y: float, half: float, tile_m: float) -> TexturedMesh:
    """A square floor at height ``y`` (normal +y), texture repeated every ``tile_m`` metres."""
    cx, cz = float(centre[0]), float(centre[2])
    v = np.array([[cx - half, y, cz - half], [cx + half, y, cz - half], [cx + half, y, cz + half],
                  [cx - half, y, cz + half]])
    uv = (v[:, [0, 2]] - v[0, [0, 2]]) / tile_m
    faces = np.array([[0, 2, 1], [0, 3, 2]])
    return TexturedMesh(v, faces, uv, texture, normals=np.tile([0.0, 1.0, 0.0], (4, 1)), roughness=0.8)


def wall_cylinder(texture: np.ndarray, centre: np.ndarray, y0: float, radius: float, height: float,
                  repeats: int = 4, segments: int = 48) -> TexturedMesh:
    """An open cylinder around ``centre`` with normals pointing inwards: the walls of a round room."""
    ang = np.linspace(0, 2 * np.pi, segments + 1)
    x, z = centre[0] + radius * np.cos(ang), centre[2] + radius * np.sin(ang)
    bottom = np.stack([x, np.full_like(x, y0), z], 1)
    top = np.stack([x, np.full_like(x, y0 + height), z], 1)
    v = np.concatenate([bottom, top])
    u = ang / (2 * np.pi) * repeats
    uv = np.concatenate([np.stack([u, np.zeros_like(u)], 1), np.stack([u, np.full_like(u, height / (
        2 * np.pi * radius / repeats))], 1)])
    n = segments + 1
    i = np.arange(segments)
    faces = np.concatenate([np.stack([i, i + 1, n + i + 1], 1), np.stack([i, n + i + 1, n + i], 1)])
    normals = np.concatenate([centre[None] - bottom, centre[None] - top])
    normals[:, 1] = 0
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return TexturedMesh(v, faces, uv, texture, normals=normals, roughness=0.95)


def backdrop_sphere(texture: np.ndarray, centre: np.ndarray, radius: float, repeats: int = 3,
                    segments: int = 32) -> TexturedMesh:
    """A UV sphere seen from inside (normals inwards): the surroundings of a close-up (hand, object)."""
    th = np.linspace(0, np.pi, segments // 2 + 1)
    ph = np.linspace(0, 2 * np.pi, segments + 1)
    T, P = np.meshgrid(th, ph, indexing="ij")
    d = np.stack([np.sin(T) * np.cos(P), np.cos(T), np.sin(T) * np.sin(P)], -1).reshape(-1, 3)
    v = centre[None] + radius * d
    uv = np.stack([P.ravel() / (2 * np.pi) * repeats, T.ravel() / np.pi * repeats / 2], 1)
    nr, nc = T.shape
    r, c = np.meshgrid(np.arange(nr - 1), np.arange(nc - 1), indexing="ij")
    a, b = (r * nc + c).ravel(), (r * nc + c + 1).ravel()
    cc, dd = ((r + 1) * nc + c).ravel(), ((r + 1) * nc + c + 1).ravel()
    faces = np.concatenate([np.stack([a, cc, b], 1), np.stack([b, cc, dd], 1)])
    return TexturedMesh(v, faces, uv, texture, normals=-d, roughness=1.0)


def room(rng: np.random.Generator, centre: np.ndarray, floor_y: float, radius: float = 7.0) -> list[TexturedMesh]:
    """A round room around ``centre``: a textured floor and textured walls (shared by all cameras)."""
    floor_tex = procedural_texture(rng, kind=str(rng.choice(["checker", "tiles", "planks", "noise"])))
    wall_tex = procedural_texture(rng)
    return [floor_mesh(floor_tex, centre, floor_y, radius * 1.2, tile_m=float(rng.uniform(0.8, 3.0))),
            wall_cylinder(wall_tex, centre, floor_y, radius, height=float(rng.uniform(3.0, 6.0)),
                          repeats=int(rng.integers(3, 9)))]


def backdrop(rng: np.random.Generator, centre: np.ndarray, radius: float) -> list[TexturedMesh]:
    """Close-up surroundings: a textured sphere, sometimes with a textured table-top plane below."""
    out = [backdrop_sphere(procedural_texture(rng), centre, radius, repeats=int(rng.integers(2, 6)))]
    return out


def random_lighting(rng: np.random.Generator) -> Lighting:
    """A key light from above at a random azimuth, a weaker fill light, ambient light; warm or cool tints."""
    def tint() -> np.ndarray:
        t = rng.uniform(-1, 1)
        return np.clip(np.array([1.0 + 0.12 * t, 1.0, 1.0 - 0.12 * t]), 0, 1)

    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(25), np.radians(80))
    key = -np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])
    az2, el2 = az + np.pi + rng.uniform(-1, 1), rng.uniform(np.radians(0), np.radians(50))
    fill = -np.array([np.cos(el2) * np.cos(az2), np.sin(el2), np.cos(el2) * np.sin(az2)])
    amb = rng.uniform(0.25, 0.55)
    return Lighting(ambient=tuple(amb * tint()),
                    lights=[(key, tint(), float(rng.uniform(2.0, 4.5))), (fill, tint(), float(rng.uniform(0.5, 1.8)))],
                    background=tuple(rng.uniform(0.3, 0.9, 3)))
