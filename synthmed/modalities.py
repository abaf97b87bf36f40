"""The seven SynthMed modalities: organ layout, lesion vocabulary and look.

Everything here is data; :mod:`synthmed.scene` turns a :class:`ModalitySpec` into organs and lesions and
:mod:`synthmed.render` paints them with the modality's :class:`Look`.

Coordinates are fractions of the image size, ``(y, x)`` with ``y`` down and ``x`` to the right of the image.

Laterality convention. ``left``/``right`` in an organ name is always the *patient's* side. For the cross-sectional and
projection modalities (``xray``, ``ct``, ``mri``, ``ultrasound``) images are shown in the radiological convention: the
patient faces the viewer, so the patient's right organ appears on the *image's left* (``x < 0.5``). The other
modalities (pathology, endoscopy, dermoscopy) have no patient side; their organs are named by image position
("upper gland", "lower fold"), where "upper" means the top of the image.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

RADIOLOGICAL = "radiological"
NO_LATERALITY = "none"

LATERALITY_NOTE = (
    "left/right in organ names is the patient's side. For xray, ct, mri and ultrasound the image follows the "
    "radiological convention: the patient's right organ appears on the image's left (x < 0.5). Pathology, endoscopy "
    "and dermoscopy have no patient side: their organs are named by image position (upper = top of the image)."
)

Color = tuple[float, ...]  # one value per channel, in [0, 1]


@dataclass(frozen=True)
class OrganSpec:
    """One organ of a modality's layout.

    ``center`` and ``radii`` are fractions of the image size, ``(y, x)``; ``angle`` in degrees (counter-clockwise
    rotation of the ellipse); ``side`` is the patient side (``left``/``right``) or ``None``; ``base`` is the organ
    without its side or position ("lung" for "left lung"), used by the ORGAN questions.
    """

    name: str
    base: str
    center: tuple[float, float]
    radii: tuple[float, float]
    angle: float = 0.0
    side: str | None = None
    plural: bool = False  # grammatical number of the name ("the ventricles are")


@dataclass(frozen=True)
class LesionSpec:
    """A lesion type: its names and the organs it may sit in (its parents in the organ -> lesion hierarchy).

    ``style`` says how :mod:`synthmed.render` paints it: ``solid`` (uniform), ``rim`` (bright rim, darker core),
    ``hazy`` (soft edge), ``dots`` (a cluster of small dots) or ``halo`` (darker centre, lighter edge).
    ``irregularity`` is the amplitude of the boundary harmonics (0 = ellipse).
    """

    name: str
    plural: str
    parents: tuple[str, ...]
    style: str = "solid"
    irregularity: float = 0.04

    @property
    def article(self) -> str:
        return "an" if self.name[0] in "aeiou" else "a"

    @property
    def indefinite(self) -> str:
        """``"a nodule"``, ``"an ulcer"``."""
        return f"{self.article} {self.name}"


@dataclass(frozen=True)
class Look:
    """How a modality looks. Colours are per channel in [0, 1] (one value for grey modalities, three for RGB).

    ``field_shape``: ``full`` (whole image), ``ellipse`` (a body or head outline), ``disk`` (round optics),
    ``sector`` (ultrasound fan from the top centre). ``noise``: ``gaussian``, ``rician`` (MRI magnitude) or
    ``speckle`` (multiplicative, ultrasound). ``texture`` is the amplitude of the low-frequency tissue texture and
    ``texture_cells`` its grid (more cells = finer).
    """

    background: Color
    field: Color
    field_shape: str
    organ_colors: Mapping[str, Color]
    lesion_colors: Mapping[str, Color]
    texture: float
    texture_cells: int
    noise: str
    noise_level: float
    blur_edges: float = 1.0  # width of the soft organ edge in pixels at 256 px
    field_radii: tuple[float, float] = (0.48, 0.48)  # (ry, rx) of an ``ellipse`` or ``disk`` field, centred


@dataclass(frozen=True)
class ModalitySpec:
    """A modality: layout (organs, in mask priority order: an earlier organ lies on top of a later one and is cut
    out of its mask), lesion vocabulary and look."""

    name: str
    display: str
    channels: int
    body_region: str
    laterality: str
    organs: tuple[OrganSpec, ...]
    lesions: tuple[LesionSpec, ...]
    look: Look
    _organ_index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._organ_index.update({o.name: i for i, o in enumerate(self.organs)})
        for lesion in self.lesions:
            unknown = [p for p in lesion.parents if p not in self._organ_index]
            if unknown:
                raise ValueError(f"{self.name}: lesion {lesion.name!r} has unknown parent organs {unknown}")
            if len(lesion.parents) < 2:
                # a lesion type with one possible organ would give its location away from the question text
                raise ValueError(f"{self.name}: lesion {lesion.name!r} needs at least two parent organs")
        if len(self.lesions) < 3:
            raise ValueError(f"{self.name}: needs at least three lesion types (focus, count and presence)")
        missing = {o.name for o in self.organs} - set(self.look.organ_colors)
        missing |= {les.name for les in self.lesions} - set(self.look.lesion_colors)
        if missing:
            raise ValueError(f"{self.name}: look has no colour for {sorted(missing)}")

    def organ(self, name: str) -> OrganSpec:
        return self.organs[self._organ_index[name]]

    def organ_position(self, name: str) -> int:
        return self._organ_index[name]

    def lesion(self, name: str) -> LesionSpec:
        for lesion in self.lesions:
            if lesion.name == name:
                return lesion
        raise KeyError(f"{self.name}: unknown lesion type {name!r}")

    def lesions_of(self, organ: str) -> tuple[str, ...]:
        """Lesion types that may sit in ``organ``, in vocabulary order."""
        return tuple(les.name for les in self.lesions if organ in les.parents)


# Size classes by the lesion's equivalent diameter (diameter of the disc of equal area) as a fraction of the image
# size. Absolute, so "large" means the same thing in every organ and image; every organ is laid out big enough to
# hold a large lesion.
SIZE_CLASSES: dict[str, tuple[float, float]] = {
    "small": (0.035, 0.050),
    "medium": (0.065, 0.080),
    "large": (0.095, 0.115),
}
SIZES: tuple[str, ...] = tuple(SIZE_CLASSES)


def _grey(v: float) -> Color:
    return (v,)


XRAY = ModalitySpec(
    name="xray",
    display="x-ray",
    channels=1,
    body_region="CHEST",
    laterality=RADIOLOGICAL,
    organs=(
        OrganSpec("heart", "heart", (0.62, 0.56), (0.15, 0.14), angle=-20.0),
        OrganSpec("right lung", "lung", (0.46, 0.29), (0.29, 0.15), angle=4.0, side="right"),
        OrganSpec("left lung", "lung", (0.46, 0.71), (0.29, 0.15), angle=-4.0, side="left"),
    ),
    lesions=(
        LesionSpec("nodule", "nodules", ("right lung", "left lung"), "solid", 0.03),
        LesionSpec("mass", "masses", ("right lung", "left lung", "heart"), "rim", 0.12),
        LesionSpec("calcification", "calcifications", ("right lung", "left lung", "heart"), "solid", 0.08),
        LesionSpec("opacity", "opacities", ("right lung", "left lung"), "hazy", 0.10),
    ),
    look=Look(
        background=_grey(0.05),
        field=_grey(0.62),
        field_shape="full",
        organ_colors={"heart": _grey(0.82), "right lung": _grey(0.16), "left lung": _grey(0.16)},
        lesion_colors={
            "nodule": _grey(0.62), "mass": _grey(0.70), "calcification": _grey(0.97), "opacity": _grey(0.50),
        },
        texture=0.10,
        texture_cells=10,
        noise="gaussian",
        noise_level=0.035,
        blur_edges=2.5,
    ),
)

CT = ModalitySpec(
    name="ct",
    display="ct",
    channels=1,
    body_region="ABD",
    laterality=RADIOLOGICAL,
    organs=(
        OrganSpec("right kidney", "kidney", (0.67, 0.30), (0.125, 0.10), angle=-15.0, side="right"),
        OrganSpec("left kidney", "kidney", (0.67, 0.70), (0.125, 0.10), angle=15.0, side="left"),
        OrganSpec("liver", "liver", (0.38, 0.33), (0.20, 0.19), angle=-10.0),
        OrganSpec("spleen", "spleen", (0.37, 0.73), (0.14, 0.115), angle=25.0),
    ),
    lesions=(
        LesionSpec("cyst", "cysts", ("liver", "spleen", "right kidney", "left kidney"), "solid", 0.02),
        LesionSpec("mass", "masses", ("liver", "spleen", "right kidney", "left kidney"), "rim", 0.12),
        LesionSpec("calcification", "calcifications", ("liver", "spleen", "right kidney", "left kidney"), "solid",
                   0.08),
        LesionSpec("stone", "stones", ("right kidney", "left kidney"), "solid", 0.10),
    ),
    look=Look(
        background=_grey(0.0),
        field=_grey(0.42),
        field_shape="ellipse",
        field_radii=(0.44, 0.47),
        organ_colors={
            "liver": _grey(0.58), "spleen": _grey(0.54), "right kidney": _grey(0.68), "left kidney": _grey(0.68),
        },
        lesion_colors={"cyst": _grey(0.24), "mass": _grey(0.40), "calcification": _grey(0.95), "stone": _grey(1.0)},
        texture=0.05,
        texture_cells=24,
        noise="gaussian",
        noise_level=0.025,
    ),
)

MRI = ModalitySpec(
    name="mri",
    display="mri",
    channels=1,
    body_region="HEAD",
    laterality=RADIOLOGICAL,
    organs=(
        OrganSpec("ventricles", "ventricles", (0.47, 0.50), (0.13, 0.10), plural=True),
        OrganSpec("right hemisphere", "hemisphere", (0.50, 0.325), (0.34, 0.16), side="right"),
        OrganSpec("left hemisphere", "hemisphere", (0.50, 0.675), (0.34, 0.16), side="left"),
    ),
    lesions=(
        LesionSpec("tumor", "tumors", ("right hemisphere", "left hemisphere", "ventricles"), "rim", 0.12),
        LesionSpec("infarct", "infarcts", ("right hemisphere", "left hemisphere"), "hazy", 0.10),
        LesionSpec("hemorrhage", "hemorrhages", ("right hemisphere", "left hemisphere", "ventricles"), "halo", 0.08),
        LesionSpec("cyst", "cysts", ("right hemisphere", "left hemisphere", "ventricles"), "solid", 0.02),
    ),
    look=Look(
        background=_grey(0.0),
        field=_grey(0.30),
        field_shape="ellipse",
        field_radii=(0.45, 0.38),
        organ_colors={"ventricles": _grey(0.88), "right hemisphere": _grey(0.46), "left hemisphere": _grey(0.46)},
        lesion_colors={"tumor": _grey(0.74), "infarct": _grey(0.66), "hemorrhage": _grey(0.10), "cyst": _grey(1.0)},
        texture=0.08,
        texture_cells=16,
        noise="rician",
        noise_level=0.03,
    ),
)

ULTRASOUND = ModalitySpec(
    name="ultrasound",
    display="ultrasound",
    channels=1,
    body_region="NECK",
    laterality=RADIOLOGICAL,
    organs=(
        OrganSpec("thyroid isthmus", "thyroid isthmus", (0.30, 0.50), (0.10, 0.13)),
        OrganSpec("right thyroid lobe", "thyroid lobe", (0.50, 0.32), (0.14, 0.13), angle=20.0, side="right"),
        OrganSpec("left thyroid lobe", "thyroid lobe", (0.50, 0.68), (0.14, 0.13), angle=-20.0, side="left"),
    ),
    lesions=(
        LesionSpec("nodule", "nodules", ("right thyroid lobe", "left thyroid lobe", "thyroid isthmus"), "halo", 0.05),
        LesionSpec("cyst", "cysts", ("right thyroid lobe", "left thyroid lobe", "thyroid isthmus"), "solid", 0.02),
        LesionSpec("calcification", "calcifications",
                   ("right thyroid lobe", "left thyroid lobe", "thyroid isthmus"), "solid", 0.10),
    ),
    look=Look(
        background=_grey(0.0),
        field=_grey(0.34),
        field_shape="sector",
        organ_colors={
            "thyroid isthmus": _grey(0.56), "right thyroid lobe": _grey(0.58), "left thyroid lobe": _grey(0.58),
        },
        lesion_colors={"nodule": _grey(0.30), "cyst": _grey(0.03), "calcification": _grey(1.0)},
        texture=0.12,
        texture_cells=12,
        noise="speckle",
        noise_level=0.9,
    ),
)

PATHOLOGY = ModalitySpec(
    name="pathology",
    display="pathology",
    channels=3,
    body_region="TISSUE",
    laterality=NO_LATERALITY,
    organs=(
        OrganSpec("blood vessel", "blood vessel", (0.33, 0.78), (0.12, 0.12)),
        OrganSpec("upper gland", "gland", (0.28, 0.36), (0.16, 0.22), angle=10.0),
        OrganSpec("lower gland", "gland", (0.71, 0.58), (0.16, 0.22), angle=-10.0),
    ),
    lesions=(
        LesionSpec("tumor", "tumors", ("upper gland", "lower gland", "blood vessel"), "dots", 0.15),
        LesionSpec("necrotic focus", "necrotic foci", ("upper gland", "lower gland", "blood vessel"), "hazy", 0.12),
        LesionSpec("inflammatory focus", "inflammatory foci", ("upper gland", "lower gland", "blood vessel"), "dots",
                   0.10),
    ),
    look=Look(
        background=(0.96, 0.90, 0.94),
        field=(0.93, 0.68, 0.80),
        field_shape="full",
        organ_colors={
            "blood vessel": (0.86, 0.30, 0.36), "upper gland": (0.66, 0.46, 0.74), "lower gland": (0.66, 0.46, 0.74),
        },
        lesion_colors={
            "tumor": (0.34, 0.18, 0.52), "necrotic focus": (0.96, 0.58, 0.66),
            "inflammatory focus": (0.20, 0.16, 0.50),
        },
        texture=0.08,
        texture_cells=32,
        noise="gaussian",
        noise_level=0.02,
    ),
)

ENDOSCOPY = ModalitySpec(
    name="endoscopy",
    display="endoscopy",
    channels=3,
    body_region="GI",
    laterality=NO_LATERALITY,
    organs=(
        OrganSpec("lumen", "lumen", (0.50, 0.50), (0.14, 0.15)),
        OrganSpec("upper fold", "fold", (0.23, 0.50), (0.11, 0.28)),
        OrganSpec("lower fold", "fold", (0.77, 0.50), (0.11, 0.28)),
    ),
    lesions=(
        LesionSpec("polyp", "polyps", ("upper fold", "lower fold", "lumen"), "halo", 0.05),
        LesionSpec("ulcer", "ulcers", ("upper fold", "lower fold"), "rim", 0.10),
        LesionSpec("hemorrhage", "hemorrhages", ("upper fold", "lower fold", "lumen"), "solid", 0.12),
    ),
    look=Look(
        background=(0.0, 0.0, 0.0),
        field=(0.80, 0.40, 0.32),
        field_shape="disk",
        organ_colors={"lumen": (0.18, 0.05, 0.04), "upper fold": (0.92, 0.55, 0.45), "lower fold": (0.92, 0.55, 0.45)},
        lesion_colors={"polyp": (0.98, 0.74, 0.62), "ulcer": (0.95, 0.92, 0.72), "hemorrhage": (0.48, 0.02, 0.04)},
        texture=0.12,
        texture_cells=8,
        noise="gaussian",
        noise_level=0.015,
        blur_edges=2.0,
    ),
)

DERMOSCOPY = ModalitySpec(
    name="dermoscopy",
    display="dermoscopy",
    channels=3,
    body_region="SKIN",
    laterality=NO_LATERALITY,
    organs=(
        OrganSpec("satellite nevus", "nevus", (0.26, 0.73), (0.11, 0.11)),
        OrganSpec("central nevus", "nevus", (0.53, 0.44), (0.24, 0.27), angle=15.0),
    ),
    lesions=(
        LesionSpec("globule", "globules", ("central nevus", "satellite nevus"), "solid", 0.04),
        LesionSpec("blue-white veil", "blue-white veils", ("central nevus", "satellite nevus"), "hazy", 0.12),
        LesionSpec("regression area", "regression areas", ("central nevus", "satellite nevus"), "hazy", 0.14),
    ),
    look=Look(
        background=(0.10, 0.07, 0.06),
        field=(0.90, 0.74, 0.64),
        field_shape="disk",
        organ_colors={"satellite nevus": (0.52, 0.34, 0.22), "central nevus": (0.50, 0.32, 0.20)},
        lesion_colors={
            "globule": (0.20, 0.10, 0.06), "blue-white veil": (0.52, 0.62, 0.78), "regression area": (0.95, 0.93, 0.92),
        },
        texture=0.06,
        texture_cells=20,
        noise="gaussian",
        noise_level=0.012,
        blur_edges=2.0,
    ),
)

MODALITIES: dict[str, ModalitySpec] = {
    m.name: m for m in (XRAY, CT, MRI, ULTRASOUND, PATHOLOGY, ENDOSCOPY, DERMOSCOPY)
}
MODALITY_NAMES: tuple[str, ...] = tuple(MODALITIES)


def get_modality(name: str) -> ModalitySpec:
    """The spec of a modality by its name (``xray``, ``ct``, ...); raises ``KeyError`` listing the known names."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise KeyError(f"unknown modality {name!r}; known: {', '.join(MODALITY_NAMES)}") from None
