"""Deterministic synthetic "radiology-like" pictures whose look depends on the imaging modality.

No real images ship with the bundled sample, so each caption is paired with a picture drawn here.
Every modality has its own motif, so that a tiny model fine-tuned on them can learn the modality
from pixels, while the per-image variation (seeded from the image id) keeps pictures distinct:

- ``ct``: black field, wide elliptic body section with a bright cortical ring, dark textured
  interior, two dark lung fields and a bright vertebra.
- ``mri``: upright soft gray ellipse with smooth gradients and brighter tissue blobs, no ring.
- ``xray``: dark field with a bright segmented vertical spine and curved rib-like bars.
- ``ultrasound``: fan-shaped sector on black, filled with depth-attenuated speckle and a dark cyst.
- ``angiography``: light field crossed by dark branching vessel lines.
- ``other``: plain block noise around mid gray.

Pictures must be bit-identical on every machine (tests compare pixels against the committed
parquet files), so drawing uses only uniform draws from ``numpy.random.Generator`` and
IEEE-exact arithmetic (+, -, *, /, sqrt, comparisons): no sin/exp/log, whose SIMD versions may
differ in the last bit between CPUs, and no Pillow resampling, which may change between releases.
Pictures are drawn at half resolution with 64 gray levels and coarse-grained texture, so the
PNG files stay small.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
from PIL import Image

MODALITIES: tuple[str, ...] = ("ct", "mri", "xray", "ultrasound", "angiography", "other")

Canvas = tuple[np.ndarray, np.ndarray]  # x (1, w) and y (h, 1), both spanning [-1, 1]


def _rng(modality: str, key: str) -> np.random.Generator:
    """A generator seeded from a stable hash (Python's hash() is salted per process)."""
    digest = hashlib.sha256(f"rocobench-synthetic\0{modality}\0{key}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def _canvas(size: tuple[int, int]) -> Canvas:
    w, h = size
    x = ((np.arange(w, dtype=np.float64) + 0.5) * (2.0 / w) - 1.0)[None, :]
    y = ((np.arange(h, dtype=np.float64) + 0.5) * (2.0 / h) - 1.0)[:, None]
    return x, y


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(rng.random())


def _block_noise(rng: np.random.Generator, shape: tuple[int, int], block: int) -> np.ndarray:
    """Uniform noise constant over block x block pixels (coarse grain compresses well in PNG)."""
    h, w = shape
    cells = rng.random((-(-h // block), -(-w // block)))
    return np.repeat(np.repeat(cells, block, axis=0), block, axis=1)[:h, :w]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a random lattice, smoothstep-interpolated (arithmetic only)."""
    h, w = shape
    lattice = rng.random((cells + 1, cells + 1))

    def axis(n: int) -> tuple[np.ndarray, np.ndarray]:
        f = (np.arange(n, dtype=np.float64) + 0.5) * (cells / n)
        i = np.minimum(f.astype(np.int64), cells - 1)
        t = f - i
        return i, t * t * (3.0 - 2.0 * t)

    iy, ty = axis(h)
    ix, tx = axis(w)
    ty, tx = ty[:, None], tx[None, :]
    top = lattice[iy][:, ix] * (1.0 - tx) + lattice[iy][:, ix + 1] * tx
    bottom = lattice[iy + 1][:, ix] * (1.0 - tx) + lattice[iy + 1][:, ix + 1] * tx
    return top * (1.0 - ty) + bottom * ty


def _bump(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Smooth compact bump, 1 at the centre and 0 outside the ellipse (no exp needed)."""
    q = np.clip(1.0 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2, 0.0, 1.0)
    return q * q


def _soft_inside(d: np.ndarray, edge: float = 0.02) -> np.ndarray:
    """Anti-aliased indicator of d < 1 for a normalised elliptic radius d."""
    return np.clip((1.0 - d) / edge + 0.5, 0.0, 1.0)


def _ct(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shape = (y.shape[0], x.shape[1])
    cx, cy = _u(rng, -0.06, 0.06), _u(rng, -0.04, 0.08)
    a, b = _u(rng, 0.72, 0.88), _u(rng, 0.50, 0.66)
    d = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
    body = _soft_inside(d)
    ring = np.clip(1.0 - np.abs(d - (1.0 - _u(rng, 0.04, 0.06))) / _u(rng, 0.035, 0.05), 0.0, 1.0)
    texture = _smooth_noise(rng, shape, 10) * 0.16 + _block_noise(rng, shape, 4) * 0.06
    img = body * (0.24 + texture) + ring * 0.68
    lung_w, lung_h, gap = _u(rng, 0.20, 0.28), _u(rng, 0.26, 0.36), _u(rng, 0.26, 0.34)
    for side in (-1.0, 1.0):
        lung = _bump(x, y, cx + side * gap * a, cy - 0.08, lung_w, lung_h)
        img = img - np.clip(lung * 3.0, 0.0, 1.0) * 0.22
    img = img + np.clip(_bump(x, y, cx, cy + b * 0.62, 0.11, 0.10) * 4.0, 0.0, 1.0) * 0.55
    return 0.02 + img


def _mri(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shape = (y.shape[0], x.shape[1])
    cx, cy = _u(rng, -0.05, 0.05), _u(rng, -0.05, 0.05)
    a, b = _u(rng, 0.58, 0.70), _u(rng, 0.74, 0.88)
    d2 = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2
    body = _soft_inside(np.sqrt(d2), edge=0.05)
    shade = 0.62 - 0.22 * np.clip(d2, 0.0, 1.0) + 0.10 * _smooth_noise(rng, shape, 6)
    img = body * shade
    for _ in range(int(rng.integers(3, 7))):
        bx, by = cx + _u(rng, -0.55, 0.55) * a, cy + _u(rng, -0.6, 0.6) * b
        img = img + body * _bump(x, y, bx, by, _u(rng, 0.10, 0.26), _u(rng, 0.10, 0.26)) * 0.30
    return 0.04 + img


def _xray(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shape = (y.shape[0], x.shape[1])
    img = 0.08 + 0.10 * _smooth_noise(rng, shape, 4)
    sx, half = _u(rng, -0.08, 0.08), _u(rng, 0.06, 0.09)
    period = _u(rng, 0.17, 0.22)
    phase = (y - _u(rng, 0.0, period)) / period
    segment = phase - np.floor(phase)  # position within one vertebra, in [0, 1)
    spine = (np.abs(x - sx) < half) & (segment > 0.12)
    img = img + spine * 0.70
    curve, thick = _u(rng, 0.35, 0.55), _u(rng, 0.030, 0.045)
    top, step = _u(rng, -0.78, -0.62), _u(rng, 0.17, 0.21)
    for k in range(int(rng.integers(6, 9))):
        y0 = top + k * step
        dx = np.abs(x - sx)
        rib = (np.abs(y - (y0 + curve * dx * dx)) < thick) & (dx > half + 0.03) & (dx < 0.85)
        img = img + rib * _u(rng, 0.45, 0.60)
    return img


def _ultrasound(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shape = (y.shape[0], x.shape[1])
    ax, ay = _u(rng, -0.05, 0.05), _u(rng, -1.05, -0.95)
    dx, dy = x - ax, y - ay
    r = np.sqrt(dx * dx + dy * dy)
    r0, r1, slope = _u(rng, 0.10, 0.18), _u(rng, 1.70, 1.95), _u(rng, 0.55, 0.85)
    fan = (r > r0) & (r < r1) & (np.abs(dx) < slope * dy)
    speckle = _block_noise(rng, shape, 2) * _block_noise(rng, shape, 2)
    img = fan * (speckle * (1.05 - 0.45 * r) + 0.08)
    cyst = _bump(x, y, ax + _u(rng, -0.3, 0.3), ay + _u(rng, 0.8, 1.3), _u(rng, 0.12, 0.22), 0.12)
    return img * (1.0 - np.clip(cyst * 3.0, 0.0, 1.0) * 0.85)


def _segment(
    img: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    p: tuple[float, float],
    q: tuple[float, float],
    width: float,
) -> None:
    """Darken pixels within `width` of segment p-q (in place, only inside its bounding box)."""
    w = img.shape[1]
    pad = width + 0.02
    cols = np.nonzero((x[0] >= min(p[0], q[0]) - pad) & (x[0] <= max(p[0], q[0]) + pad))[0]
    rows = np.nonzero((y[:, 0] >= min(p[1], q[1]) - pad) & (y[:, 0] <= max(p[1], q[1]) + pad))[0]
    if cols.size == 0 or rows.size == 0:
        return
    c0, c1, r0, r1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    px, py = x[:, c0:c1] - p[0], y[r0:r1, :] - p[1]
    vx, vy = q[0] - p[0], q[1] - p[1]
    t = np.clip((px * vx + py * vy) / (vx * vx + vy * vy), 0.0, 1.0)
    ex, ey = px - t * vx, py - t * vy
    dist = np.sqrt(ex * ex + ey * ey)
    ink = np.clip((width - dist) / (2.0 / w) + 0.5, 0.0, 1.0)
    np.minimum(img[r0:r1, c0:c1], 1.0 - 0.78 * ink, out=img[r0:r1, c0:c1])


def _angiography(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shape = (y.shape[0], x.shape[1])
    vessels = np.ones(shape)
    # Each stack entry: start point, unit direction, width, depth.
    stack = [((_u(rng, -0.3, 0.3), -1.0), (_u(rng, -0.3, 0.3), 1.0), _u(rng, 0.035, 0.05), 0)]
    drawn = 0
    while stack and drawn < 48:
        (px, py), (dx, dy), width, depth = stack.pop()
        norm = math.sqrt(dx * dx + dy * dy)
        dx, dy = dx / norm, dy / norm
        length = _u(rng, 0.25, 0.45)
        q = (px + dx * length, py + dy * length)
        _segment(vessels, x, y, (px, py), q, width)
        drawn += 1
        if depth >= 5 or abs(q[0]) > 1.0 or abs(q[1]) > 1.0:
            continue
        for bend in (_u(rng, -0.9, -0.2), _u(rng, 0.2, 0.9)):  # two daughters, left and right
            if rng.random() < 0.85:
                stack.append((q, (dx - dy * bend, dy + dx * bend), width * 0.72, depth + 1))
    background = 0.80 + 0.10 * _smooth_noise(rng, shape, 5)
    return background * vessels


def _other(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shape = (y.shape[0], x.shape[1])
    return 0.25 + 0.5 * _block_noise(rng, shape, 4)


_DRAW: dict[str, Callable[[np.random.Generator, np.ndarray, np.ndarray], np.ndarray]] = {
    "ct": _ct,
    "mri": _mri,
    "xray": _xray,
    "ultrasound": _ultrasound,
    "angiography": _angiography,
    "other": _other,
}


def draw_array(modality: str, key: str, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """The picture as a (height, width) uint8 array; see `draw`."""
    if modality not in _DRAW:
        raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    w, h = size
    if w < 8 or h < 8:
        raise ValueError(f"image size {size} is too small (need at least 8x8)")
    rng = _rng(modality, key)
    # Drawn at half resolution, then each pixel doubled: ~3x smaller PNG files, same motifs.
    x, y = _canvas((-(-w // 2), -(-h // 2)))
    gain, offset = _u(rng, 0.92, 1.08), _u(rng, -0.03, 0.03)  # mild exposure jitter
    img = np.clip(_DRAW[modality](rng, x, y) * gain + offset, 0.0, 1.0)
    # 64 gray levels: plenty for the motifs, and it keeps the PNG files small.
    gray = (np.floor(img * 63.999) * (255.0 / 63.0) + 0.5).astype(np.uint8)
    return np.repeat(np.repeat(gray, 2, axis=0), 2, axis=1)[:h, :w]


def draw(modality: str, key: str, size: tuple[int, int] = (224, 224)) -> Image.Image:
    """A deterministic RGB picture (gray content) of `modality` for image id `key`.

    `size` is (width, height) as in Pillow. Unknown modalities raise ValueError.
    """
    gray = draw_array(modality, key, size)
    return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))
