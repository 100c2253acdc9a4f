"""Procedural 3-D scenes with exact metric depth: textured planes, boxes and spheres under a pinhole camera.

Every scene is ray-cast in numpy (vectorised over all pixels, one pass per object): a ground plane and a
back wall (both unbounded, so every ray hits something), then 2-8 objects: oriented boxes resting on the
ground, spheres (resting or floating) and free-standing rectangular cards with random tilt. Surfaces are
textured with crops of real photos (the zoo's photo pools minus the Middlebury scenes used for evaluation,
see ``TEXTURE_EXCLUDE``) and Lambert-shaded by one random directional light plus ambient light.

Camera: pinhole, horizontal/vertical field of view ``fov_deg``, principal point at the image centre, x right,
y down, z forward, pitched down by a random angle. Depth is the **z-depth in the camera frame** (metres), the
quantity a depth camera reports, evaluated exactly at each pixel centre; the colour image is rendered with
``supersample``² rays per pixel and box-filtered (anti-aliased), so colour edges are soft but depth is exact.

Contracts:

- ``render(seed, cfg) -> (image uint8 [H, W, 3] RGB, depth float32 [H, W] metres)``, deterministic in ``seed``
  (and the installed photo files).
- ``scene_seed(split, index) -> int``: train / val / test scenes come from disjoint seed streams.
- ``load(split, n, cfg) -> (images uint8 [n, H, W, 3], depths float32 [n, H, W])``: scenes 0..n-1 of a split.
- ``normalize(images) -> float32 [n, 3, H, W]``: the model's input normalisation ((x/255 - 0.5) / 0.5).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from edgecomp.errors import ConfigError

SPLITS = {"train": 0, "val": 1, "test": 2}  # split -> seed-stream id
# Middlebury images that the depth evaluation uses (and the other half of each stereo pair): never textures
TEXTURE_EXCLUDE = ("motorcycle", "aloeL", "aloeR")
TEXTURE_SIZE = 192  # side of each texture crop, texels
MEAN, STD = 0.5, 0.5  # input normalisation on [0, 1] pixels


@dataclass(frozen=True)
class SceneConfig:
    size: int = 64  # output image / depth side, pixels
    supersample: int = 2  # colour rays per pixel side (anti-aliasing); depth uses one ray at the centre
    fov_deg: float = 60.0  # field of view, degrees (square image: horizontal = vertical)
    min_objects: int = 2  # objects besides ground and wall
    max_objects: int = 8

    def __post_init__(self):
        if not (8 <= self.size <= 1024):
            raise ConfigError(f"scene size {self.size} is outside 8..1024 pixels", hint="use e.g. 64")
        if not (1 <= self.supersample <= 8):
            raise ConfigError(f"supersample {self.supersample} is outside 1..8", hint="use 1 or 2")
        if not (10.0 <= self.fov_deg <= 120.0):
            raise ConfigError(f"fov_deg {self.fov_deg} is outside 10..120", hint="use e.g. 60")
        if not (0 <= self.min_objects <= self.max_objects <= 32):
            raise ConfigError(
                f"object counts {self.min_objects}..{self.max_objects} are invalid",
                hint="0 <= min_objects <= max_objects <= 32",
            )

    @property
    def focal_px(self) -> float:
        """Focal length in pixels of the ``size``-pixel image."""
        return self.size / (2.0 * np.tan(np.radians(self.fov_deg) / 2.0))


def scene_seed(split: str, index: int) -> int:
    """A 63-bit seed for scene ``index`` of ``split``; the three splits never share a seed stream."""
    if split not in SPLITS:
        raise ConfigError(f"unknown scene split {split!r}", hint=f"one of {', '.join(SPLITS)}")
    if index < 0:
        raise ConfigError(f"scene index {index} is negative", hint="indices start at 0")
    return int(np.random.SeedSequence([7919, SPLITS[split], index]).generate_state(1, np.uint64)[0] >> 1)


_texture_file: np.ndarray | None = None  # uint8 [n, T, T, 3] set by use_texture_file


def save_texture_file(path) -> None:
    """Write the uint8 texture crops (``.npz``): a machine without the zoo's photo packages (a lent GPU
    training box) renders the same scenes from it."""
    np.savez_compressed(path, crops=np.stack(_photo_crops()))


def use_texture_file(path) -> None:
    """Render with the crops of ``save_texture_file`` instead of reading the photo packages."""
    global _texture_file
    with np.load(path) as f:
        _texture_file = f["crops"]
    textures.cache_clear()


@functools.lru_cache(maxsize=1)
def textures() -> tuple[np.ndarray, ...]:
    """Float32 [T, T, 3] texture crops in [0, 1], four per photo (corners of a centred square), from the
    zoo's eval and calibration photo pools, minus the Middlebury evaluation scenes (or from the texture file,
    the same uint8 crops)."""
    crops = _photo_crops() if _texture_file is None else list(_texture_file)
    out = []
    for c in crops:
        t = c.astype(np.float32) / 255.0
        t.setflags(write=False)
        out.append(t)
    return tuple(out)


def _photo_crops() -> list[np.ndarray]:
    """uint8 [T, T, 3] crops of the photo pools, in ``textures`` order."""
    from PIL import Image

    from edgecomp.zoo.data import photos

    out = []
    for pool in ("eval", "calib"):
        for name, img in photos.load(pool):
            if name in TEXTURE_EXCLUDE:
                continue
            h, w = img.shape[:2]
            side = min(h, w)
            sq = Image.fromarray(img[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2])
            big = np.asarray(sq.resize((2 * TEXTURE_SIZE, 2 * TEXTURE_SIZE), Image.Resampling.BILINEAR))
            for dy in (0, TEXTURE_SIZE):
                for dx in (0, TEXTURE_SIZE):
                    out.append(big[dy : dy + TEXTURE_SIZE, dx : dx + TEXTURE_SIZE])
    return out


# --- primitives: each intersect(o, d) -> (t [R], normal [R, 3], uv [R, 2]); t = inf where missed ----------


def _plane(d, point, normal, a1, a2, half=None):
    """Plane through ``point`` with unit ``normal`` and in-plane unit axes a1, a2; ``half`` = (w, h) bounds a
    rectangle (a card) centred at ``point``. Rays start at the origin."""
    dn = d @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (point @ normal) / dn
    t = np.where(np.abs(dn) > 1e-9, t, np.inf)
    p = t[:, None] * d - point
    uv = np.stack([p @ a1, p @ a2], axis=1)
    ok = t > 1e-6
    if half is not None:
        ok &= (np.abs(uv[:, 0]) <= half[0]) & (np.abs(uv[:, 1]) <= half[1])
    return np.where(ok, t, np.inf), np.broadcast_to(normal, d.shape), uv


def _box(d, center, half, yaw):
    """Box with half extents ``half`` (x, y, z in its own frame), rotated by ``yaw`` about the y axis."""
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # box frame -> camera-world frame
    dl = d @ R  # directions in the box frame (R orthonormal: R^T d)
    ol = -center @ R  # ray origin (0) in the box frame
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - ol) / dl
        t2 = (half - ol) / dl
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    tmin = np.where(np.isnan(tmin), -np.inf, tmin)
    tmax = np.where(np.isnan(tmax), np.inf, tmax)
    axis = np.argmax(tmin, axis=1)
    t_in, t_out = tmin.max(axis=1), tmax.min(axis=1)
    hit = (t_in <= t_out) & (t_in > 1e-6)
    t = np.where(hit, t_in, np.inf)
    rows = np.arange(len(d))
    sign = -np.sign(dl[rows, axis])
    n_local = np.zeros_like(d)
    n_local[rows, axis] = sign
    p = ol + np.where(np.isfinite(t), t, 0.0)[:, None] * dl
    other = np.array([[1, 2], [0, 2], [0, 1]])[axis]
    uv = np.stack([p[rows, other[:, 0]], p[rows, other[:, 1]]], axis=1)
    return t, n_local @ R.T, uv


def _sphere(d, center, radius):
    a = np.einsum("ij,ij->i", d, d)
    b = -2.0 * (d @ center)
    c = center @ center - radius * radius
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
    p = np.where(np.isfinite(t), t, 0.0)[:, None] * d
    n = (p - center) / radius
    uv = np.stack([np.arctan2(n[:, 0], n[:, 2]) * radius, np.arcsin(np.clip(n[:, 1], -1, 1)) * radius], axis=1)
    return t, n, uv


# --- scene sampling ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Surface:
    kind: str  # plane | box | sphere
    args: tuple
    texture: int  # index into textures()
    texels_per_m: float
    offset: tuple[float, float]  # texture offset, texels


def _sample_scene(rng: np.random.Generator, cfg: SceneConfig, n_tex: int):
    """Camera pitch (radians), light direction and the surfaces of one scene."""
    pitch = np.radians(rng.uniform(0.0, 15.0))  # camera looks down by this much
    height = rng.uniform(0.8, 2.2)  # camera above the ground, metres (ground at y = +height)
    wall = rng.uniform(6.0, 20.0)  # back wall distance along the world z axis, metres
    wall_yaw = rng.uniform(-0.35, 0.35)

    def tex():
        return int(rng.integers(n_tex)), float(rng.uniform(30, 160)), tuple(rng.uniform(0, TEXTURE_SIZE, 2))

    ex, ey, ez = np.eye(3)
    surfaces = [_Surface("plane", (np.array([0.0, height, 0.0]), -ey, ex, ez, None), *tex())]
    wn = np.array([np.sin(wall_yaw), 0.0, -np.cos(wall_yaw)])
    surfaces.append(
        _Surface(
            "plane",
            (np.array([0.0, 0.0, wall]), wn, np.array([np.cos(wall_yaw), 0, np.sin(wall_yaw)]), ey, None),
            *tex(),
        )
    )
    tan = np.tan(np.radians(cfg.fov_deg) / 2)
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        z = rng.uniform(1.5, wall - 0.5)
        x = rng.uniform(-1.1, 1.1) * z * tan
        kind = rng.choice(["box", "sphere", "card"], p=[0.45, 0.3, 0.25])
        if kind == "box":
            half = rng.uniform([0.2, 0.2, 0.2], [1.2, 1.5, 1.2])
            center = np.array([x, height - half[1], z])
            surfaces.append(_Surface("box", (center, half, rng.uniform(0, np.pi)), *tex()))
        elif kind == "sphere":
            r = rng.uniform(0.2, 1.0)
            y = height - r - (rng.uniform(0, 1.5) if rng.random() < 0.3 else 0.0)
            surfaces.append(_Surface("sphere", (np.array([x, y, z]), r), *tex()))
        else:
            yaw, tilt = rng.uniform(-1.0, 1.0), rng.uniform(-0.5, 0.5)
            n = np.array([np.sin(yaw) * np.cos(tilt), np.sin(tilt), -np.cos(yaw) * np.cos(tilt)])
            a1 = np.cross(ey, n)
            a1 /= np.linalg.norm(a1)
            a2 = np.cross(n, a1)
            half = (rng.uniform(0.3, 1.5), rng.uniform(0.3, 1.2))
            y = rng.uniform(height - 2.5, height - half[1])
            surfaces.append(_Surface("plane", (np.array([x, y, z]), n, a1, a2, half), *tex()))
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-1.0, -0.4), rng.uniform(-0.8, 0.2)])
    return pitch, light / np.linalg.norm(light), rng.uniform(0.25, 0.5), surfaces


_INTERSECT = {"plane": _plane, "box": _box, "sphere": _sphere}


def _rays(cfg: SceneConfig, samples: int, pitch: float) -> np.ndarray:
    """Ray directions [S*S, 3] in the world frame for an S = size*samples grid of sub-pixel centres, scaled so
    that their camera-frame z component is 1 (then the hit distance t *is* the z-depth)."""
    S = cfg.size * samples
    f = cfg.focal_px * samples
    c = (np.arange(S) + 0.5 - S / 2) / f
    u, v = np.meshgrid(c, c)
    d = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3)
    cp, sp = np.cos(pitch), np.sin(pitch)
    R = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])  # camera -> world: pitched down (towards +y)
    return d @ R.T


def _cast(d, surfaces, light, ambient, tex_bank, shade: bool):
    t_best = np.full(len(d), np.inf)
    color = np.zeros((len(d), 3)) if shade else None
    for s in surfaces:
        t, n, uv = _INTERSECT[s.kind](d, *s.args)
        closer = t < t_best
        if not closer.any():
            continue
        t_best = np.where(closer, t, t_best)
        if shade:
            idx = np.nonzero(closer)[0]
            nn_ = n[idx] * -np.sign(np.einsum("ij,ij->i", n[idx], d[idx]))[:, None]  # face the camera
            lam = ambient + (1 - ambient) * np.clip(nn_ @ -light, 0.0, 1.0)
            tex = tex_bank[s.texture]
            ij = np.floor(uv[idx] * s.texels_per_m + np.asarray(s.offset)).astype(np.int64) % TEXTURE_SIZE
            color[idx] = tex[ij[:, 1], ij[:, 0]] * lam[:, None]
    return t_best, color


def render(seed: int, cfg: SceneConfig = SceneConfig()) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (uint8 [size, size, 3] RGB, float32 [size, size] z-depth in metres), deterministic in seed."""
    bank = textures()
    rng = np.random.default_rng(seed)
    pitch, light, ambient, surfaces = _sample_scene(rng, cfg, len(bank))
    s, n = cfg.supersample, cfg.size
    _, color = _cast(_rays(cfg, s, pitch), surfaces, light, ambient, bank, shade=True)
    image = color.reshape(n, s, n, s, 3).mean(axis=(1, 3))
    depth, _ = _cast(_rays(cfg, 1, pitch), surfaces, light, ambient, bank, shade=False)
    return (np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), depth.reshape(n, n).astype(np.float32))


def load(
    split: str, n: int, cfg: SceneConfig = SceneConfig(), start: int = 0, workers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Scenes ``start .. start+n-1`` of ``split``: (uint8 [n, H, W, 3], float32 [n, H, W] metres).
    ``workers`` > 1 renders in forked processes; the result is the same (each scene depends on its seed only)."""
    if n < 1:
        raise ConfigError(f"asked for {n} scenes", hint="n >= 1")
    seeds = [scene_seed(split, start + i) for i in range(n)]
    if workers > 1:
        import multiprocessing

        textures()  # load once, before the fork, so every worker shares the crops
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pairs = pool.starmap(render, [(s, cfg) for s in seeds], chunksize=64)
    else:
        pairs = [render(s, cfg) for s in seeds]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 [n, H, W, 3] -> float32 [n, 3, H, W], (x / 255 - MEAN) / STD."""
    x = (np.asarray(images, np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
