"""Independent ray-casting renderer for the scorer tests (shares no code with the scorer).

A scene is a set of textured rectangles (a room: back wall, floor, ceiling, side walls, plus a
box). Each pixel's ray (pixel (u, v) centred at (u, v), OpenCV camera, camera-from-world [R | t])
is intersected analytically with every rectangle; the nearest hit wins (a per-pixel z-buffer over
surfaces) and is coloured by bilinear texture lookup. Returns frames, z-depth and cameras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Quad:
    origin: np.ndarray  # [3]
    a: np.ndarray  # [3] edge (texture s axis)
    b: np.ndarray  # [3] edge (texture t axis), orthogonal to a
    texture: np.ndarray  # float [h, w, 3] in [0, 1]


def load_texture(name: str, size: int, crop_seed: int) -> np.ndarray:
    """A random square crop of a fixture photograph, resized to ``size`` (float [size, size, 3])."""
    img = np.asarray(Image.open(FIXTURES / "images" / name).convert("RGB"))
    rng = np.random.default_rng(crop_seed)
    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 0.9))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(img[top : top + side, left : left + side]).resize((size, size), Image.BICUBIC)
    return np.asarray(crop).astype(np.float64) / 255.0


def _box_quads(center, size, textures) -> list[Quad]:
    c = np.asarray(center, float)
    h = size / 2.0
    ex, ey, ez = np.eye(3) * size
    faces = [
        (c + [-h, -h, -h], ex, ey),  # front (z = c - h), faces the camera
        (c + [-h, -h, h], ex, ey),  # back
        (c + [-h, -h, -h], ez, ey),  # left (x = c - h)
        (c + [h, -h, -h], ez, ey),  # right
        (c + [-h, -h, -h], ex, ez),  # top (y = c - h; y points down)
        (c + [-h, h, -h], ex, ez),  # bottom
    ]
    return [Quad(np.asarray(o), a, b, textures[i % len(textures)]) for i, (o, a, b) in enumerate(faces)]


def make_scene(seed: int, tex_size: int = 40, box_textures: list[np.ndarray] | None = None) -> list[Quad]:
    """A closed room (walls textured with photo crops) with a textured box inside."""
    rng = np.random.default_rng(seed)
    names = ["chelsea.png", "coffee.png"]
    tex = [load_texture(names[i % 2], tex_size, seed * 100 + i) for i in range(6)]
    W, Hh, Z0, Z1 = 3.0, 1.6, -1.0, 6.0 + rng.uniform(-0.5, 0.5)
    quads = [
        Quad(np.array([-W, -Hh, Z1]), np.array([2 * W, 0, 0]), np.array([0, 2 * Hh, 0]), tex[0]),  # back wall
        Quad(np.array([-W, Hh, Z0]), np.array([2 * W, 0, 0]), np.array([0, 0, Z1 - Z0]), tex[1]),  # floor
        Quad(np.array([-W, -Hh, Z0]), np.array([2 * W, 0, 0]), np.array([0, 0, Z1 - Z0]), tex[2]),  # ceiling
        Quad(np.array([-W, -Hh, Z0]), np.array([0, 0, Z1 - Z0]), np.array([0, 2 * Hh, 0]), tex[3]),  # left
        Quad(np.array([W, -Hh, Z0]), np.array([0, 0, Z1 - Z0]), np.array([0, 2 * Hh, 0]), tex[3]),  # right
    ]
    center = [rng.uniform(-0.6, 0.6), rng.uniform(0.2, 0.8), rng.uniform(3.0, 4.0)]
    size = rng.uniform(0.8, 1.2)
    quads += _box_quads(center, size, box_textures if box_textures is not None else [tex[4], tex[5]])
    return quads


def look_at(cam_pos, target, up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """Camera-from-world [R | t] (OpenCV: x right, y down, z forward) looking at ``target``."""
    cam_pos, target = np.asarray(cam_pos, float), np.asarray(target, float)
    z = target - cam_pos
    z /= np.linalg.norm(z)
    down = -np.asarray(up, float)
    x = np.cross(down, z)  # right-handed: x = y x z with y (down) and z (forward)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in world coords
    t = -R @ cam_pos
    return np.concatenate([R, t[:, None]], axis=1)


def camera_path(seed: int, num_frames: int) -> np.ndarray:
    """Smooth arc: lateral + vertical translation, looking at a point near the box. [T, 3, 4]."""
    rng = np.random.default_rng(seed + 7)
    amp = rng.uniform(0.4, 0.8) * rng.choice([-1, 1])
    lift = rng.uniform(-0.2, 0.2)
    target = np.array([rng.uniform(-0.3, 0.3), rng.uniform(0.2, 0.6), 3.5])
    out = []
    for tau in np.linspace(0.0, 1.0, num_frames):
        pos = np.array([amp * np.sin(np.pi * (tau - 0.5)), lift * tau, 0.4 * tau])
        out.append(look_at(pos, target))
    return np.stack(out)


def intrinsics(height: int, width: int, fov_deg: float = 60.0) -> np.ndarray:
    f = (width / 2.0) / np.tan(np.deg2rad(fov_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def _bilinear(tex: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    h, w = tex.shape[:2]
    x = np.clip(s, 0, 1) * (w - 1)
    y = np.clip(t, 0, 1) * (h - 1)
    x0 = np.clip(np.floor(x).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    return (
        tex[y0, x0] * (1 - fx) * (1 - fy)
        + tex[y0, x0 + 1] * fx * (1 - fy)
        + tex[y0 + 1, x0] * (1 - fx) * fy
        + tex[y0 + 1, x0 + 1] * fx * fy
    )


def render(quads: list[Quad], extrinsic: np.ndarray, K: np.ndarray, height: int, width: int):
    """Ray-cast one frame. Returns (uint8 image [H, W, 3], z-depth [H, W] (inf = no hit))."""
    R, tvec = extrinsic[:, :3], extrinsic[:, 3]
    C = -R.T @ tvec
    v, u = np.meshgrid(np.arange(height, dtype=float), np.arange(width, dtype=float), indexing="ij")
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d_world = d_cam @ R  # = (R^T d_cam) per pixel; z_cam of C + lam * d_world is lam
    best = np.full((height, width), np.inf)
    color = np.zeros((height, width, 3))
    for q in quads:
        n = np.cross(q.a, q.b)
        denom = d_world @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = ((q.origin - C) @ n) / denom
        hit = C + lam[..., None] * d_world
        rel = hit - q.origin
        s = rel @ q.a / (q.a @ q.a)
        t = rel @ q.b / (q.b @ q.b)
        ok = np.isfinite(lam) & (lam > 1e-6) & (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1) & (lam < best)
        if ok.any():
            best[ok] = lam[ok]
            color[ok] = _bilinear(q.texture, s[ok], t[ok])
    img = np.clip(color * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return img, best


def render_video(
    seed: int, num_frames: int = 8, height: int = 64, width: int = 64, box_textures=None, tex_size: int = 40
):
    """Render a scene along its camera path.

    Returns dict: frames uint8 [T, H, W, 3], depth float [T, H, W], extrinsic [T, 3, 4],
    intrinsic [T, 3, 3], quads.
    """
    quads = make_scene(seed, tex_size=tex_size, box_textures=box_textures)
    E = camera_path(seed, num_frames)
    K = intrinsics(height, width)
    frames, depth = zip(*(render(quads, E[i], K, height, width) for i in range(num_frames)))
    return {
        "frames": np.stack(frames),
        "depth": np.stack(depth),
        "extrinsic": E,
        "intrinsic": np.repeat(K[None], num_frames, 0),
        "quads": quads,
    }
