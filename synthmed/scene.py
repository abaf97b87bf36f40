"""Scenes: organs and lesions as shapes with exact masks and boxes.

A shape is a :class:`Blob`, an ellipse with a wavy boundary, rasterised only inside its own window of the image.
Organs are laid out from the modality's spec with jitter; an organ's mask is its blob minus the blobs of the organs
listed before it (which lie on top), so organ masks never overlap. Lesions are placed inside their parent organ's mask
with a margin and without touching each other, so every lesion mask is inside its organ mask and every lesion box
inside its organ box.

Arrays: masks are ``bool [S, S]`` (``S`` = image size), windows are ``(y0, y1, x0, x1)`` half-open pixel ranges,
boxes are COCO ``(x, y, w, h)`` in whole pixels (``w = x_max - x_min + 1``, as ``pycocotools.mask.toBbox``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from synthmed.modalities import SIZE_CLASSES, LesionSpec, ModalitySpec, OrganSpec

Window = tuple[int, int, int, int]
BoxXYWH = tuple[int, int, int, int]

# Organ jitter (fractions of the image size / relative factors).
CENTER_JITTER = 0.025
RADIUS_JITTER = 0.07
ANGLE_JITTER_DEG = 8.0
ORGAN_WAVINESS = 0.035
MIN_LESION_RADIUS_PX = 1.5
PLACEMENT_TRIES = 40
LAYOUT_TRIES = 30


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: ``ys [S, 1]`` and ``xs [1, S]`` (float32, read-only), for broadcasting."""
    ys = np.arange(size, dtype=np.float32).reshape(size, 1)
    xs = np.arange(size, dtype=np.float32).reshape(1, size)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


@dataclass(frozen=True)
class Raster:
    """A rasterised shape inside ``window``: ``alpha`` float32 ``[h, w]`` in [0, 1] (soft edge, for painting) and
    ``mask`` bool ``[h, w]`` (the exact inside, ``alpha >= 0.5``)."""

    window: Window
    alpha: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Blob:
    """An ellipse with a wavy boundary, in pixels.

    ``(cy, cx)`` centre, ``(ry, rx)`` semi-axes, ``angle`` rotation in radians; the boundary radius at polar angle
    ``t`` (in the ellipse's normalised frame) is ``1 + sum(a * cos(k * t + phase))`` over ``harmonics`` rows
    ``(k, a, phase)``.
    """

    cy: float
    cx: float
    ry: float
    rx: float
    angle: float = 0.0
    harmonics: tuple[tuple[int, float, float], ...] = ()

    @property
    def equivalent_radius(self) -> float:
        """Radius of the disc of (approximately) equal area, in pixels."""
        return math.sqrt(self.ry * self.rx)

    def scaled(self, factor: float) -> Blob:
        """The same blob shrunk or grown about its centre."""
        return Blob(self.cy, self.cx, self.ry * factor, self.rx * factor, self.angle, self.harmonics)

    def window(self, size: int, grow: float = 0.0) -> Window:
        """The pixel window holding the (grown) blob: its rotated bounding box plus 2 px, clipped to the image."""
        cos_a, sin_a = math.cos(self.angle), math.sin(self.angle)
        ry, rx = (self.ry + grow) * (1.0 + self.waviness), (self.rx + grow) * (1.0 + self.waviness)
        half_h = math.hypot(rx * sin_a, ry * cos_a) + 2.0
        half_w = math.hypot(rx * cos_a, ry * sin_a) + 2.0
        y0 = max(0, int(math.floor(self.cy - half_h)))
        y1 = min(size, int(math.ceil(self.cy + half_h)) + 1)
        x0 = max(0, int(math.floor(self.cx - half_w)))
        x1 = min(size, int(math.ceil(self.cx + half_w)) + 1)
        return y0, max(y0, y1), x0, max(x0, x1)

    def _frame(self, size: int, grow: float, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates of ``window`` in the ellipse's normalised frame, ``un, vn`` float32 ``[h, w]``."""
        y0, y1, x0, x1 = window
        ys, xs = pixel_grid(size)
        dy = ys[y0:y1] - np.float32(self.cy)  # (h, 1)
        dx = xs[:, x0:x1] - np.float32(self.cx)  # (1, w)
        cos_a, sin_a = math.cos(self.angle), math.sin(self.angle)
        ry, rx = self.ry + grow, self.rx + grow
        un = dx * np.float32(cos_a / rx) - dy * np.float32(sin_a / rx)
        vn = dx * np.float32(sin_a / ry) + dy * np.float32(cos_a / ry)
        return un, vn

    def ellipse_mask(self, size: int, grow: float = 0.0) -> tuple[Window, np.ndarray]:
        """The plain (harmonics ignored) ellipse grown by ``grow`` pixels: its window and ``bool [h, w]`` mask.
        Cheaper than :meth:`raster`; used for placement checks."""
        window = self.window(size, grow)
        un, vn = self._frame(size, grow, window)
        un *= un
        vn *= vn
        un += vn
        return window, un <= np.float32(1.0)

    def raster(self, size: int, grow: float = 0.0, edge: float = 1.0, wavy: bool = True) -> Raster:
        """Rasterise into the blob's window.

        ``grow`` adds pixels to both semi-axes (a guard band for placement checks); ``edge`` is the width of the soft
        edge of ``alpha`` in pixels; ``wavy=False`` ignores the harmonics (a plain ellipse, cheaper).
        """
        y0, y1, x0, x1 = self.window(size, grow)
        un, vn = self._frame(size, grow, (y0, y1, x0, x1))
        ry, rx = self.ry + grow, self.rx + grow
        rho = np.sqrt(un * un + vn * vn)
        mean_r = math.sqrt(ry * rx)
        dist = np.float32(1.0) - rho  # signed distance to the boundary in units of the mean radius
        wave = self.waviness if wavy else 0.0
        if wave > 0:
            # the waves only move the boundary by +-wave: compute them in that band (plus the soft edge) only
            slack = np.float32(wave + (abs(edge) + 1.0) / mean_r)
            band = np.abs(dist) < slack
            u, v, r = un[band], vn[band], rho[band]
            inv = np.float32(1.0) / np.maximum(r, np.float32(1e-6))
            c1, s1 = u * inv, v * inv  # cos t, sin t without atan2
            ck, sk = c1, s1
            k = 1
            boundary = np.ones_like(r)
            for order, amp, phase in sorted(self.harmonics):
                while k < order:  # cos/sin of (k+1)t from kt by the angle-sum formulas
                    ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
                    k += 1
                boundary += ck * np.float32(amp * math.cos(phase)) - sk * np.float32(amp * math.sin(phase))
            dist[band] = boundary - r
        mask = dist >= 0
        dist *= np.float32(mean_r / max(edge, 1e-3))
        dist += np.float32(0.5)
        alpha = np.clip(dist, 0.0, 1.0, out=dist)
        return Raster((y0, y1, x0, x1), alpha, mask)

    @property
    def waviness(self) -> float:
        """Largest relative excursion of the boundary from the ellipse (sum of harmonic amplitudes)."""
        return sum(abs(a) for _, a, _ in self.harmonics)


def bbox_of(mask: np.ndarray, y0: int = 0, x0: int = 0) -> BoxXYWH:
    """COCO box ``(x, y, w, h)`` of a non-empty ``bool [h, w]`` mask whose top-left pixel is ``(y0, x0)``."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return (int(x0 + cols[0]), int(y0 + rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


@dataclass
class Organ:
    """An organ in a scene. ``mask`` bool ``[S, S]`` is the visible organ (organs on top cut out); ``raster`` is the
    whole blob (for painting, which goes back to front)."""

    spec: OrganSpec
    blob: Blob
    raster: Raster
    mask: np.ndarray
    box: BoxXYWH
    _pixels: np.ndarray | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pixels(self) -> np.ndarray:
        """Flat indices of the organ's pixels ``int64 [P]`` (cached)."""
        if self._pixels is None:
            self._pixels = np.flatnonzero(self.mask)
        return self._pixels


@dataclass
class Lesion:
    """A lesion in a scene: its type, parent organ, size class, shape, ``mask`` bool ``[S, S]`` (inside the parent's
    mask) and box."""

    spec: LesionSpec
    organ: str
    size: str
    blob: Blob
    raster: Raster
    mask: np.ndarray
    box: BoxXYWH

    @property
    def kind(self) -> str:
        return self.spec.name

    @property
    def phrase(self) -> str:
        return lesion_phrase(self.kind, self.organ)


@dataclass
class Scene:
    """A modality's organs and lesions in an ``S x S`` image; ``fov`` bool ``[S, S]`` is the field of view."""

    modality: ModalitySpec
    size: int
    fov: np.ndarray
    organs: list[Organ]
    lesions: list[Lesion]

    def organ(self, name: str) -> Organ:
        for organ in self.organs:
            if organ.name == name:
                return organ
        raise KeyError(name)

    def lesions_of_kind(self, kind: str) -> list[Lesion]:
        return [les for les in self.lesions if les.kind == kind]


class SceneDoesNotFit(RuntimeError):
    """The requested lesions did not fit into any of the layouts tried (rare; likelier at small image sizes)."""


@dataclass(frozen=True)
class LesionRequest:
    """A lesion the scene must contain: its type, the organs it may go in and its size classes (preferred first).

    Every organ in ``organs`` and every size in ``sizes`` must give the same answers to the questions asked about
    this lesion, so the builder may fall back to a later one when the preferred organ has no room.
    """

    kind: str
    organs: tuple[str, ...]
    sizes: tuple[str, ...]
    role: str = ""


def lesion_phrase(kind: str, organ: str) -> str:
    """The grounding phrase of a lesion: ``"nodule in the left lung"``."""
    return f"{kind} in the {organ}"


@lru_cache(maxsize=32)
def field_of_view(shape: str, radii: tuple[float, float], size: int) -> np.ndarray:
    """The field of view ``bool [S, S]`` (read-only): ``full``, a centred ``ellipse``/``disk`` with ``radii``
    (fractions), or an ultrasound ``sector`` (apex at the top centre, +-45 degrees, radius 0.95)."""
    ys, xs = pixel_grid(size)
    if shape == "full":
        fov = np.ones((size, size), dtype=bool)
    elif shape in ("ellipse", "disk"):
        c = (size - 1) / 2.0
        fov = ((ys - c) / (radii[0] * size)) ** 2 + ((xs - c) / (radii[1] * size)) ** 2 <= 1.0
    elif shape == "sector":
        ay, ax = 0.02 * size, (size - 1) / 2.0
        dy, dx = ys - ay, xs - ax
        fov = (dy * dy + dx * dx <= (0.95 * size) ** 2) & (np.abs(dx) <= dy)
    else:
        raise ValueError(f"unknown field shape {shape!r}")
    fov.flags.writeable = False
    return fov


def _harmonics(rng: np.random.Generator, orders: tuple[int, ...],
               amplitude: float) -> tuple[tuple[int, float, float], ...]:
    amps = rng.uniform(0.3, 1.0, size=len(orders)) * amplitude
    phases = rng.uniform(0.0, 2.0 * math.pi, size=len(orders))
    return tuple((k, float(a), float(p)) for k, a, p in zip(orders, amps, phases))


def layout_organs(rng: np.random.Generator, spec: ModalitySpec, size: int) -> list[Organ]:
    """Jittered organs of ``spec`` with exclusive masks, in the spec's (priority) order."""
    fov = field_of_view(spec.look.field_shape, spec.look.field_radii, size)
    edge = max(0.7, spec.look.blur_edges * size / 256.0)
    organs: list[Organ] = []
    taken = np.zeros((size, size), dtype=bool)
    for ospec in spec.organs:
        jitter = rng.uniform(-CENTER_JITTER, CENTER_JITTER, size=2)
        scale = rng.uniform(1.0 - RADIUS_JITTER, 1.0 + RADIUS_JITTER, size=2)
        angle = ospec.angle + rng.uniform(-ANGLE_JITTER_DEG, ANGLE_JITTER_DEG)
        blob = Blob(
            cy=(ospec.center[0] + jitter[0]) * size,
            cx=(ospec.center[1] + jitter[1]) * size,
            ry=ospec.radii[0] * scale[0] * size,
            rx=ospec.radii[1] * scale[1] * size,
            angle=math.radians(angle),
            harmonics=_harmonics(rng, (2, 3), ORGAN_WAVINESS),
        )
        raster = blob.raster(size, edge=edge)
        y0, y1, x0, x1 = raster.window
        visible = raster.mask & ~taken[y0:y1, x0:x1] & fov[y0:y1, x0:x1]  # organs listed earlier lie on top
        taken[y0:y1, x0:x1] |= raster.mask
        if not visible.any():
            raise RuntimeError(f"{spec.name}: organ {ospec.name!r} is empty at size {size}")
        mask = np.zeros((size, size), dtype=bool)
        mask[y0:y1, x0:x1] = visible
        organs.append(Organ(ospec, blob, raster, mask, bbox_of(visible, y0, x0)))
    return organs


def lesion_shape(rng: np.random.Generator, spec: LesionSpec, size_class: str, size: int) -> Blob:
    """A lesion shape of ``size_class`` (equivalent diameter drawn from :data:`SIZE_CLASSES`), centred at (0, 0)."""
    lo, hi = SIZE_CLASSES[size_class]
    radius = max(MIN_LESION_RADIUS_PX, 0.5 * rng.uniform(lo, hi) * size)
    aspect = rng.uniform(0.75, 1.0)
    return Blob(
        cy=0.0,
        cx=0.0,
        ry=radius / math.sqrt(aspect),
        rx=radius * math.sqrt(aspect),
        angle=rng.uniform(0.0, math.pi),
        harmonics=_harmonics(rng, (3, 4, 5), spec.irregularity) if spec.irregularity > 0 else (),
    )


def _candidate_center(rng: np.random.Generator, organ: Organ, reach: float, size: int,
                      inner: bool) -> tuple[float, float]:
    """A lesion centre: uniform in the organ's ellipse shrunk by ``reach`` pixels (``inner``), or a uniformly drawn
    organ pixel (needed when the shrunk ellipse is empty, or the organ is cut by another one)."""
    blob = organ.blob
    shrink = 1.0 - blob.waviness
    sy, sx = blob.ry * shrink - reach, blob.rx * shrink - reach
    if inner and sy > 0 and sx > 0:
        r = math.sqrt(rng.uniform())
        t = rng.uniform(0.0, 2.0 * math.pi)
        u, v = r * math.cos(t) * sx, r * math.sin(t) * sy  # in the organ's rotated frame, pixels
        cos_a, sin_a = math.cos(blob.angle), math.sin(blob.angle)
        return blob.cy - u * sin_a + v * cos_a, blob.cx + u * cos_a + v * sin_a
    pixels = organ.pixels
    flat = int(pixels[rng.integers(pixels.size)])
    return flat // size + rng.uniform(-0.5, 0.5), flat % size + rng.uniform(-0.5, 0.5)


def place_lesion(
    rng: np.random.Generator,
    spec: LesionSpec,
    organ: Organ,
    size_class: str,
    occupied: np.ndarray,
    size: int,
    edge: float,
    tries: int = PLACEMENT_TRIES,
) -> Lesion | None:
    """Try to put a lesion inside ``organ`` with a margin, not touching ``occupied`` (bool ``[S, S]``).

    Returns ``None`` when no position fits in ``tries`` attempts.
    """
    margin = max(1.0, 2.0 * size / 256.0)
    for attempt in range(tries):
        shape = lesion_shape(rng, spec, size_class, size)
        reach = max(shape.ry, shape.rx) * (1.0 + shape.waviness) + margin
        cy, cx = _candidate_center(rng, organ, reach, size, inner=attempt < tries // 2)
        iy, ix = int(round(cy)), int(round(cx))
        if not (0 <= iy < size and 0 <= ix < size) or not organ.mask[iy, ix] or occupied[iy, ix]:
            continue  # cheap rejection before rasterising
        blob = replace(shape, cy=cy, cx=cx)
        if attempt < tries // 2:
            # quick guard: a plain ellipse grown by the margin and the boundary waves (contains the wavy blob + margin)
            (y0, y1, x0, x1), guard = blob.ellipse_mask(size, grow=margin + blob.waviness * max(blob.ry, blob.rx))
        else:
            # exact guard, for tight fits (a large irregular lesion in a small organ)
            exact = blob.raster(size, grow=margin, edge=edge)
            (y0, y1, x0, x1), guard = exact.window, exact.mask
        # the guard band must sit inside the organ and away from other lesions; clipped at the border = outside
        if guard[0].any() or guard[-1].any() or guard[:, 0].any() or guard[:, -1].any():
            continue
        if (guard & ~organ.mask[y0:y1, x0:x1]).any() or (guard & occupied[y0:y1, x0:x1]).any():
            continue
        raster = blob.raster(size, edge=edge)
        wy0, wy1, wx0, wx1 = raster.window
        inside = raster.mask & organ.mask[wy0:wy1, wx0:wx1]
        if not inside.any():
            continue
        mask = np.zeros((size, size), dtype=bool)
        mask[wy0:wy1, wx0:wx1] = inside
        return Lesion(spec, organ.name, size_class, blob, raster, mask, bbox_of(inside, wy0, wx0))
    return None


def build_scene(
    rng: np.random.Generator, spec: ModalitySpec, requests: tuple[LesionRequest, ...] | list[LesionRequest], size: int
) -> Scene:
    """Lay out ``spec``'s organs and place the requested lesions (in order; for each, the first size and organ that
    fit).

    When a request cannot be placed, the whole layout is drawn again; after :data:`LAYOUT_TRIES` layouts it raises
    :class:`SceneDoesNotFit`.
    """
    fov = field_of_view(spec.look.field_shape, spec.look.field_radii, size)
    edge = max(0.7, size / 256.0)
    for _ in range(LAYOUT_TRIES):
        organs = layout_organs(rng, spec, size)
        by_name = {o.name: o for o in organs}
        occupied = np.zeros((size, size), dtype=bool)
        lesions: list[Lesion] = []
        for request in requests:
            lspec = spec.lesion(request.kind)
            placed = None
            for size_class in request.sizes:
                for organ_name in request.organs:
                    if organ_name not in lspec.parents:
                        raise ValueError(f"{spec.name}: {request.kind!r} cannot sit in {organ_name!r}")
                    placed = place_lesion(rng, lspec, by_name[organ_name], size_class, occupied, size, edge)
                    if placed is not None:
                        break
                if placed is not None:
                    break
            if placed is None:
                break
            occupied |= placed.mask
            lesions.append(placed)
        else:
            return Scene(spec, size, fov, organs, lesions)
    raise SceneDoesNotFit(f"{spec.name}: could not place {requests} at size {size} after {LAYOUT_TRIES} layouts")
