"""Rendered depth scenes: exact ray-primitive depths, determinism, disjoint splits, config validation."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.errors import ConfigError
from edgecomp.zoo.data import depth_scenes as ds


@pytest.fixture(autouse=True)
def _need_photos(or_skip):
    or_skip(ds.textures)


def test_plane_depth_is_exact():
    # ground plane y = 1.5 under an unpitched camera: the ray (0, v, 1) hits at z = 1.5 / v
    d = np.array([[0.0, 0.1, 1.0], [0.3, 0.25, 1.0], [0.0, -0.2, 1.0]])
    t, n, _ = ds._plane(d, np.array([0.0, 1.5, 0.0]), np.array([0.0, -1.0, 0.0]), np.eye(3)[0], np.eye(3)[2])
    assert t[:2] == pytest.approx([15.0, 6.0])
    assert np.isinf(t[2])  # looking up never meets the ground


def test_sphere_and_box_depth_are_exact():
    d = np.array([[0.0, 0.0, 1.0], [0.5, 0.0, 1.0]])
    t, _, _ = ds._sphere(d, np.array([0.0, 0.0, 5.0]), 1.0)
    assert t[0] == pytest.approx(4.0) and np.isinf(t[1])
    t, n, _ = ds._box(d, np.array([0.0, 0.0, 5.0]), np.array([1.0, 1.0, 1.0]), 0.0)
    assert t[0] == pytest.approx(4.0) and np.isinf(t[1])
    assert n[0] == pytest.approx([0.0, 0.0, -1.0])
    t, _, _ = ds._box(d[:1], np.array([0.0, 0.0, 5.0]), np.array([1.0, 1.0, 1.0]), np.pi / 4)
    assert t[0] == pytest.approx(5.0 - np.sqrt(2.0))  # rotated 45°: the front edge is at 5 - √2


def test_render_is_deterministic_finite_and_seeded():
    cfg = ds.SceneConfig(size=32)
    a_img, a_d = ds.render(ds.scene_seed("test", 3), cfg)
    b_img, b_d = ds.render(ds.scene_seed("test", 3), cfg)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_d, b_d)
    assert a_img.shape == (32, 32, 3) and a_img.dtype == np.uint8
    assert a_d.shape == (32, 32) and a_d.dtype == np.float32
    assert np.isfinite(a_d).all() and (a_d > 0.1).all() and (a_d < 100).all()
    c_img, _ = ds.render(ds.scene_seed("test", 4), cfg)
    assert not np.array_equal(a_img, c_img)


def test_splits_use_disjoint_seeds():
    seeds = {s: {ds.scene_seed(s, i) for i in range(500)} for s in ds.SPLITS}
    assert all(len(v) == 500 for v in seeds.values())
    assert not (seeds["train"] & seeds["test"]) and not (seeds["train"] & seeds["val"])
    assert not (seeds["val"] & seeds["test"])


def test_depth_is_the_z_depth_at_pixel_centres():
    # the bottom rows see the ground: with depth z and pitch p, the ground point's height below the camera
    # is z * (sin p + cos p * v/f) ... so the inferred camera height is the same for every bottom-row pixel
    cfg = ds.SceneConfig(size=32, min_objects=0, max_objects=0)
    seed = ds.scene_seed("val", 0)
    pitch, *_ = ds._sample_scene(np.random.default_rng(seed), cfg, len(ds.textures()))
    _, depth = ds.render(seed, cfg)
    v = (np.arange(32) + 0.5 - 16) / cfg.focal_px
    height = depth[:, 16] * (np.sin(pitch) + np.cos(pitch) * v)
    bottom = height[-6:]
    assert bottom == pytest.approx(np.full(6, bottom[0]), rel=1e-5)


def test_textures_exclude_the_middlebury_scenes():
    assert {"motorcycle", "aloeL", "aloeR"} <= set(ds.TEXTURE_EXCLUDE)


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError):
        ds.SceneConfig(size=4)
    with pytest.raises(ConfigError):
        ds.SceneConfig(min_objects=5, max_objects=2)
    with pytest.raises(ConfigError):
        ds.scene_seed("holdout", 0)
    with pytest.raises(ConfigError):
        ds.load("test", 0)


def test_normalize_layout():
    img = np.full((2, 4, 4, 3), 255, np.uint8)
    x = ds.normalize(img)
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32 and np.allclose(x, 1.0)


def test_texture_file_renders_the_same_scenes(tmp_path, monkeypatch):
    cfg = ds.SceneConfig(size=24)
    seed = ds.scene_seed("train", 5)
    img, depth = ds.render(seed, cfg)
    ds.save_texture_file(tmp_path / "crops.npz")
    with np.load(tmp_path / "crops.npz") as f:
        np.savez(tmp_path / "inverted.npz", crops=255 - f["crops"])
    monkeypatch.setattr(ds, "_texture_file", None)  # restored after the test; the cache is cleared below
    try:
        ds.use_texture_file(tmp_path / "crops.npz")
        same = ds.render(seed, cfg)
        ds.use_texture_file(tmp_path / "inverted.npz")
        inverted = ds.render(seed, cfg)
    finally:
        ds.textures.cache_clear()
    assert np.array_equal(same[0], img) and np.array_equal(same[1], depth)
    # the file is what is read: other crops change the colours, never the geometry
    assert not np.array_equal(inverted[0], img) and np.array_equal(inverted[1], depth)


def test_forked_workers_render_the_same_scenes():
    cfg = ds.SceneConfig(size=16)
    one = ds.load("val", 5, cfg, start=2)
    two = ds.load("val", 5, cfg, start=2, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
