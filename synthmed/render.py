"""Painting a :class:`~synthmed.scene.Scene` into an 8-bit image with its modality's look.

Everything is vectorised numpy on float32 canvases ``[S, S, C]`` (``C`` = 1 or 3); shapes are painted only inside
their own windows, and size-dependent constant patterns (rings, bands, vignettes) are cached per size.

Order: tissue field with low-frequency texture -> modality backdrop (spine, skull, fascia, nuclei, ...) -> organs
back to front (so an organ listed earlier in the spec lies on top, matching the exclusive masks; ribs, pigment
network, gland lumens) -> lesions (by style: solid, rim, halo, hazy, dots) -> modality finish (attenuation, vignette,
highlights) -> noise (gaussian, rician or speckle) -> field of view -> uint8.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from statistics import NormalDist

import numpy as np
from PIL import Image

from synthmed.modalities import Color, ModalitySpec
from synthmed.scene import Blob, Lesion, Organ, Raster, Scene, pixel_grid

Canvas = np.ndarray  # float32 [S, S, C]


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise ``float32 [S, S]`` with std about 1: a ``(cells + 1) x (cells + 1)`` Gaussian grid
    upsampled bilinearly."""
    grid = rng.standard_normal((cells + 1, cells + 1), dtype=np.float32)
    up = Image.fromarray(grid).resize((size, size), Image.BILINEAR)
    return np.asarray(up, dtype=np.float32) * np.float32(1.6)  # bilinear averaging shrinks the std to ~0.6


def _color(color: Color) -> np.ndarray:
    return np.asarray(color, dtype=np.float32)


def paint(canvas: Canvas, raster: Raster, color: Color | np.ndarray, alpha: float = 1.0,
          modulation: np.ndarray | None = None) -> None:
    """Blend ``color`` into ``canvas`` inside ``raster`` (in place). ``modulation`` float32 ``[h, w]`` multiplies the
    colour per pixel (texture)."""
    y0, y1, x0, x1 = raster.window
    if y1 <= y0 or x1 <= x0:
        return
    region = canvas[y0:y1, x0:x1]  # view (h, w, C)
    a = raster.alpha if alpha == 1.0 else raster.alpha * np.float32(alpha)
    col = _color(color) if not isinstance(color, np.ndarray) else color
    target = col if modulation is None else modulation[..., None] * col
    region += a[..., None] * (target - region)


def _window_of(tex: np.ndarray, raster: Raster) -> np.ndarray:
    y0, y1, x0, x1 = raster.window
    return tex[y0:y1, x0:x1]


# ---------------------------------------------------------------------------------------------------------------------
# cached size-dependent patterns


@lru_cache(maxsize=16)
def _ellipse_rho(size: int, ry: float, rx: float) -> np.ndarray:
    """Normalised elliptic radius ``float32 [S, S]`` about the image centre."""
    ys, xs = pixel_grid(size)
    c = (size - 1) / 2.0
    rho = np.sqrt(((ys - c) / (ry * size)) ** 2 + ((xs - c) / (rx * size)) ** 2).astype(np.float32)
    rho.flags.writeable = False
    return rho


@lru_cache(maxsize=16)
def _ring(size: int, ry: float, rx: float, inner: float, outer: float) -> np.ndarray:
    """Soft ring ``float32 [S, S, 1]`` between normalised radii ``inner`` and ``outer``."""
    rho = _ellipse_rho(size, ry, rx)
    soft = 1.5 / (min(ry, rx) * size)
    ring = np.clip((rho - inner) / soft + 0.5, 0, 1) * np.clip((outer - rho) / soft + 0.5, 0, 1)
    ring = ring.astype(np.float32)[..., None]
    ring.flags.writeable = False
    return ring


@lru_cache(maxsize=32)
def _soft_field(shape: str, radii: tuple[float, float], size: int, background: Color) -> tuple[np.ndarray, np.ndarray]:
    """Field-of-view weight ``float32 [S, S, 1]`` with a one-pixel soft edge, and the background term
    ``(1 - weight) * background`` ``float32 [S, S, C]`` to add after multiplying by the weight."""
    ys, xs = pixel_grid(size)
    if shape in ("ellipse", "disk"):
        rho = _ellipse_rho(size, radii[0], radii[1])
        weight = np.clip((1.0 - rho) * (min(radii) * size) + 0.5, 0, 1)
    elif shape == "sector":
        dy, dx = ys - 0.02 * size, xs - (size - 1) / 2.0
        radial = np.clip(0.95 * size - np.sqrt(dy * dy + dx * dx) + 0.5, 0, 1)
        angular = np.clip((dy - np.abs(dx)) / math.sqrt(2.0) + 0.5, 0, 1)
        weight = radial * angular
    else:
        raise ValueError(f"no soft field for shape {shape!r}")
    weight = weight.astype(np.float32)[..., None]
    term = ((1.0 - weight) * _color(background)).astype(np.float32)
    weight.flags.writeable = False
    term.flags.writeable = False
    return weight, term


@lru_cache(maxsize=8)
def _xray_bands(size: int) -> np.ndarray:
    """Mediastinum/spine brightening and darker flanks, ``float32 [1, S, 1]``."""
    xs = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) / size
    band = 0.16 * np.exp(-((xs / 0.06) ** 2)) - 0.22 * np.clip(np.abs(xs) - 0.40, 0, None) / 0.1
    band = band.astype(np.float32).reshape(1, size, 1)
    band.flags.writeable = False
    return band


@lru_cache(maxsize=8)
def _ultrasound_depth(size: int) -> np.ndarray:
    """Depth attenuation ``float32 [S, S, 1]``: 1 at the probe, 0.6 at the far end."""
    ys, xs = pixel_grid(size)
    dist = np.sqrt((ys - 0.02 * size) ** 2 + (xs - (size - 1) / 2.0) ** 2) / (0.95 * size)
    gain = (1.0 - 0.4 * np.clip(dist, 0, 1)).astype(np.float32)[..., None]
    gain.flags.writeable = False
    return gain


@lru_cache(maxsize=8)
def _ultrasound_layers(size: int) -> np.ndarray:
    """Bright horizontal fascia lines near the probe, ``float32 [S, 1, 1]``."""
    ys = np.arange(size, dtype=np.float32) / size
    lines = sum(np.exp(-(((ys - y0) / 0.006) ** 2)) for y0 in (0.10, 0.15, 0.19))
    lines = (0.35 * lines).astype(np.float32).reshape(size, 1, 1)
    lines.flags.writeable = False
    return lines


@lru_cache(maxsize=8)
def _vignette(size: int, strength: float, power: float) -> np.ndarray:
    """Radial gain ``float32 [S, S, 1]``: 1 at the centre, ``1 - strength`` at the rim of the centred disk."""
    rho = _ellipse_rho(size, 0.48, 0.48)
    gain = (1.0 - strength * np.clip(rho, 0, 1) ** power).astype(np.float32)[..., None]
    gain.flags.writeable = False
    return gain


_RIB_PERIOD = 1.0 / 7.0  # of the image height


@lru_cache(maxsize=8)
def _rib_pattern(size: int, center_x: float) -> np.ndarray:
    """Rib brightening ``float32 [S + period, S]`` for a lung centred at ``center_x`` (fraction); slice rows
    ``shift : shift + S`` for a vertical shift of the ribs."""
    period = int(_RIB_PERIOD * size) + 1
    ys = np.arange(size + period, dtype=np.float32).reshape(-1, 1)
    xs = np.arange(size, dtype=np.float32).reshape(1, -1)
    u = (ys + 0.9 * (xs - center_x * size) ** 2 / size) / size
    ribs = (1.1 * (0.5 + 0.5 * np.sin(2 * np.pi * u / _RIB_PERIOD)) ** 4).astype(np.float32)
    ribs.flags.writeable = False
    return ribs


@lru_cache(maxsize=8)
def _net_pattern(size: int) -> np.ndarray:
    """Pigment network for nevi, ``float32 [S, S]`` in [0, 1]."""
    ys, xs = pixel_grid(size)
    period = max(4.0, size / 22.0)
    net = (0.5 + 0.5 * np.sin(2 * np.pi * ys / period) * np.sin(2 * np.pi * xs / period)).astype(np.float32)
    net.flags.writeable = False
    return net


# ---------------------------------------------------------------------------------------------------------------------
# modality backdrops (between the tissue field and the organs)


def _backdrop_xray(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    canvas += _xray_bands(scene.size)


def _backdrop_ct(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    look = scene.modality.look
    fat = _ring(scene.size, look.field_radii[0], look.field_radii[1], 0.90, 1.02)
    canvas += fat * (np.float32(0.22) - canvas)
    size = scene.size
    spine = Blob(0.79 * size + rng.uniform(-1, 1), 0.5 * size + rng.uniform(-1, 1), 0.055 * size, 0.06 * size)
    paint(canvas, spine.raster(size, edge=1.0), (0.92,))
    paint(canvas, spine.scaled(0.6).raster(size, edge=1.0), (0.62,))


def _backdrop_mri(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    look = scene.modality.look
    ry, rx = look.field_radii
    scalp = _ring(scene.size, ry, rx, 0.93, 1.02)
    bone = _ring(scene.size, ry, rx, 0.87, 0.93)
    canvas += scalp * (np.float32(0.85) - canvas)
    canvas += bone * (np.float32(0.06) - canvas)


def _backdrop_ultrasound(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    canvas += _ultrasound_layers(scene.size)
    size = scene.size
    for cx in (0.085, 0.915):  # carotid arteries: anechoic circles lateral to the lobes, not annotated
        vessel = Blob(0.56 * size + rng.uniform(-1, 1), cx * size, 0.045 * size, 0.045 * size)
        paint(canvas, vessel.raster(size, edge=1.0), (0.04,))


@lru_cache(maxsize=8)
def _disc_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets ``(dy, dx)`` (int64 ``[P]`` each) of a disc of ``radius`` pixels."""
    r = int(math.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dy * dy + dx * dx <= radius * radius + 0.25
    return dy[inside].ravel(), dx[inside].ravel()


def stamp_discs(canvas: Canvas, centers_y: np.ndarray, centers_x: np.ndarray, radius: float, color: Color,
                alpha: float) -> None:
    """Blend discs of ``radius`` pixels at integer centres (``int [K]`` each) into ``canvas`` (in place); a few
    thousand pixels gathered and scattered at once instead of full-image passes."""
    size = canvas.shape[0]
    dy, dx = _disc_offsets(radius)
    ys = np.clip(centers_y[:, None] + dy[None, :], 0, size - 1).ravel()
    xs = np.clip(centers_x[:, None] + dx[None, :], 0, size - 1).ravel()
    pixels = canvas[ys, xs]  # (K * P, C)
    canvas[ys, xs] = pixels + np.float32(alpha) * (_color(color) - pixels)


def _backdrop_pathology(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    # stromal nuclei: small purple discs scattered at random
    size = scene.size
    count = int(0.0025 * size * size)
    centers = rng.integers(0, size, size=(2, count))
    stamp_discs(canvas, centers[0], centers[1], max(1.0, 1.8 * size / 256.0), (0.42, 0.22, 0.58), 0.85)


def _backdrop_endoscopy(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    # mucosa close to the lens is brighter than the far wall around the lumen
    rho = _ellipse_rho(scene.size, 0.48, 0.48)[..., None]
    canvas *= np.float32(0.7) + np.float32(0.45) * np.clip(rho, 0, 1)


def _backdrop_none(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    return None


BACKDROPS: dict[str, Callable[[Canvas, Scene, np.random.Generator], None]] = {
    "xray": _backdrop_xray,
    "ct": _backdrop_ct,
    "mri": _backdrop_mri,
    "ultrasound": _backdrop_ultrasound,
    "pathology": _backdrop_pathology,
    "endoscopy": _backdrop_endoscopy,
    "dermoscopy": _backdrop_none,
}


# ---------------------------------------------------------------------------------------------------------------------
# organs


def _paint_organ(canvas: Canvas, organ: Organ, scene: Scene, tex: np.ndarray, rng: np.random.Generator) -> None:
    look = scene.modality.look
    name, base = organ.spec.name, organ.spec.base
    color = look.organ_colors[name]
    modulation = 1.0 + np.float32(look.texture) * _window_of(tex, organ.raster)
    modality = scene.modality.name
    if modality == "xray" and base == "lung":
        # ribs: curved bright bands across the lung fields, shifted up or down at random
        period = _RIB_PERIOD * scene.size
        shift = int(rng.integers(0, max(1, int(period))))
        y0, y1, x0, x1 = organ.raster.window
        ribs = _rib_pattern(scene.size, organ.spec.center[1])[y0 + shift : y1 + shift, x0:x1]
        modulation = modulation + ribs
    elif modality == "dermoscopy":
        network = _window_of(_net_pattern(scene.size), organ.raster)
        modulation = modulation * (np.float32(1.0) - np.float32(0.25) * network)
    paint(canvas, organ.raster, color, modulation=modulation)
    if modality == "pathology" and base == "gland":
        paint(canvas, organ.blob.scaled(0.55).raster(scene.size, edge=1.5), (0.97, 0.93, 0.95))  # gland lumen
    elif modality == "pathology" and base == "blood vessel":
        paint(canvas, organ.blob.scaled(0.78).raster(scene.size, edge=1.0), (0.80, 0.08, 0.14))  # red cells
    elif modality == "endoscopy" and base == "fold":
        crest = organ.blob.scaled(0.45)
        paint(canvas, crest.raster(scene.size, edge=3.0), (1.0, 0.72, 0.62), alpha=0.5)


# ---------------------------------------------------------------------------------------------------------------------
# lesions


def _paint_lesion(canvas: Canvas, lesion: Lesion, scene: Scene, tex: np.ndarray, rng: np.random.Generator) -> None:
    look = scene.modality.look
    color = _color(look.lesion_colors[lesion.kind])
    organ_color = _color(look.organ_colors[lesion.organ])
    size = scene.size
    style = lesion.spec.style
    modulation = 1.0 + np.float32(0.5 * look.texture) * _window_of(tex, lesion.raster)
    if style == "hazy":
        soft = lesion.blob.raster(size, edge=max(2.0, 0.25 * lesion.blob.equivalent_radius))
        paint(canvas, soft, color, alpha=0.85, modulation=_window_of(tex, soft) * np.float32(0.5 * look.texture) + 1)
    elif style == "rim":
        paint(canvas, lesion.raster, color, modulation=modulation)
        core = lesion.blob.scaled(0.6).raster(size, edge=max(1.0, size / 256.0))
        paint(canvas, core, 0.55 * color + 0.45 * organ_color)
    elif style == "halo":
        paint(canvas, lesion.raster, color, modulation=modulation)
        center = lesion.blob.scaled(0.55).raster(size, edge=max(1.0, 0.2 * lesion.blob.equivalent_radius))
        paint(canvas, center, np.clip(color * 1.25 + 0.05, 0, 1), alpha=0.7)
    elif style == "dots":
        paint(canvas, lesion.raster, color, alpha=0.45, modulation=modulation)
        # a cluster of dark dots (nuclei, cells) on lesion pixels: about one per 12 pixels of area
        y0, y1, x0, x1 = lesion.raster.window
        inside = np.flatnonzero(lesion.raster.mask)
        picks = inside[rng.integers(0, inside.size, size=max(1, inside.size // 12))]
        width = x1 - x0
        stamp_discs(canvas, y0 + picks // width, x0 + picks % width, max(0.8, 1.2 * size / 256.0),
                    tuple(float(c) for c in color * np.float32(0.7)), 0.9)
    else:  # solid
        paint(canvas, lesion.raster, color, modulation=modulation)


# ---------------------------------------------------------------------------------------------------------------------
# finishes (after the lesions, before the field of view and the noise)


def _finish_ultrasound(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    canvas *= _ultrasound_depth(scene.size)


def _finish_endoscopy(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    size = scene.size
    canvas *= _vignette(size, 0.55, 3.0)
    for _ in range(3):  # specular highlights on the wet mucosa
        r = rng.uniform(0.006, 0.014) * size
        spot = Blob(rng.uniform(0.15, 0.85) * size, rng.uniform(0.15, 0.85) * size, r, 1.8 * r, rng.uniform(0, 3.1))
        paint(canvas, spot.raster(size, edge=1.0), (1.0, 1.0, 1.0), alpha=0.9)


def _finish_dermoscopy(canvas: Canvas, scene: Scene, rng: np.random.Generator) -> None:
    canvas *= _vignette(scene.size, 0.35, 4.0)


FINISHES: dict[str, Callable[[Canvas, Scene, np.random.Generator], None]] = {
    "ultrasound": _finish_ultrasound,
    "endoscopy": _finish_endoscopy,
    "dermoscopy": _finish_dermoscopy,
}


# ---------------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _noise_table(kind: str) -> np.ndarray:
    """256 equiprobable quantiles of a noise distribution, float32 ``[256]``: ``gaussian`` (standard normal) or
    ``rayleigh`` (speckle amplitude, scaled to mean 1)."""
    u = (np.arange(256, dtype=np.float64) + 0.5) / 256.0
    if kind == "gaussian":
        dist = NormalDist()
        table = np.array([dist.inv_cdf(float(p)) for p in u])
    elif kind == "rayleigh":
        table = np.sqrt(-2.0 * np.log1p(-u)) / math.sqrt(math.pi / 2.0)
    else:
        raise ValueError(kind)
    table = table.astype(np.float32)
    table.flags.writeable = False
    return table


def draw_noise(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """Noise ``float32 shape`` drawn by inverse-CDF lookup of random bytes (256 quantiles of ``kind``).

    Several times cheaper than ``rng.standard_normal`` and indistinguishable once the image is quantised to 8 bits
    (the quantiles reach +-2.66 sigma).
    """
    codes = np.frombuffer(rng.bytes(math.prod(shape)), dtype=np.uint8)
    return _noise_table(kind).take(codes).reshape(shape)


def _add_noise(canvas: Canvas, spec: ModalitySpec, rng: np.random.Generator) -> np.ndarray:
    look = spec.look
    size = canvas.shape[0]
    sigma = np.float32(look.noise_level)
    if look.noise == "gaussian":
        noise = draw_noise(rng, "gaussian", (size, size, 1))  # one luminance noise for RGB
        noise *= sigma
        canvas += noise
        return canvas
    if look.noise == "rician":  # magnitude of a complex signal with Gaussian noise in both parts
        real = draw_noise(rng, "gaussian", (size, size, 1))
        imag = draw_noise(rng, "gaussian", (size, size, 1))
        real *= sigma
        real += canvas
        real *= real
        imag *= sigma
        imag *= imag
        real += imag
        return np.sqrt(real, out=real)
    if look.noise == "speckle":  # multiplicative Rayleigh grain, correlated over ~2 px (half resolution, upsampled)
        half = max(2, size // 2)
        grain = draw_noise(rng, "rayleigh", (half, half))
        grain = np.asarray(Image.fromarray(grain).resize((size, size), Image.BILINEAR), dtype=np.float32)
        factor = grain * sigma  # 1 + sigma * (grain - 1)
        factor += np.float32(1.0) - sigma
        canvas *= factor[..., None]
        return canvas
    raise ValueError(f"unknown noise {look.noise!r}")


@lru_cache(maxsize=32)
def _output_scale(shape: str, radii: tuple[float, float], size: int,
                  background: Color) -> tuple[np.ndarray, np.ndarray]:
    """``(gain, offset)`` taking the [0, 1] canvas to 0-255 (+0.5 for rounding) and blending in the background
    outside the field of view in the same two passes: ``gain = 255 * weight``,
    ``offset = 255 * (1 - weight) * background + 0.5``."""
    weight, term = _soft_field(shape, radii, size, background)
    gain = (weight * np.float32(255.0)).astype(np.float32)
    offset = (term * np.float32(255.0) + np.float32(0.5)).astype(np.float32)
    gain.flags.writeable = False
    offset.flags.writeable = False
    return gain, offset


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Paint ``scene``: returns ``uint8 [S, S]`` for grey modalities or ``uint8 [S, S, 3]`` for RGB ones."""
    spec = scene.modality
    look = spec.look
    size = scene.size
    tex = smooth_noise(rng, size, look.texture_cells)  # [S, S], shared by the field, organs and lesions
    field = np.float32(look.texture) * tex
    field += np.float32(1.0)
    canvas = np.empty((size, size, spec.channels), dtype=np.float32)
    np.multiply(field[..., None], _color(look.field), out=canvas)  # textured tissue field in one pass
    BACKDROPS[spec.name](canvas, scene, rng)
    for organ in reversed(scene.organs):  # back to front: earlier organs lie on top
        _paint_organ(canvas, organ, scene, tex, rng)
    for lesion in scene.lesions:
        _paint_lesion(canvas, lesion, scene, tex, rng)
    finish = FINISHES.get(spec.name)
    if finish is not None:
        finish(canvas, scene, rng)
    canvas = _add_noise(canvas, spec, rng)
    # to 0-255; after the noise, so that (as on a display) there is no noise outside the field of view
    if look.field_shape != "full":
        gain, offset = _output_scale(look.field_shape, look.field_radii, size, look.background)
        canvas *= gain
        canvas += offset
    else:
        canvas *= np.float32(255.0)
        canvas += np.float32(0.5)
    np.clip(canvas, 0.0, 255.0, out=canvas)
    out = canvas.astype(np.uint8)
    return out[..., 0] if spec.channels == 1 else out
