"""Med-GLIP's label hierarchy: organs and the lesions that sit inside them.

YAML layout (SynthMed writes one; ``configs/hierarchies/chest.yaml`` covers the COVID lung set)::

    xray:                 # modality (or "any")
      left lung: [nodule, mass, opacity]
      right lung: [nodule, mass, opacity]
      heart: []

SynthMed's richer ``hierarchy.yaml`` (``modalities: {name: {organs: {organ: {lesions: {lesion: {...}}}}}}`` next to
``version`` and conventions) is read as well: only the organ -> lesion names are kept.

The hierarchy is used in three places: prompts can carry the parent ("nodule in the left lung"), the consistency loss
keeps a lesion's score below its organ's, and prediction links each lesion region to the organ region containing it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

ANY_MODALITY = "any"


@dataclass
class LabelHierarchy:
    """``organs[modality][organ] = [lesion, ...]``; names are lower-case."""

    organs: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> LabelHierarchy:
        if not isinstance(data, dict):
            raise ValueError(f"a label hierarchy is a mapping modality -> organ -> lesions, got {type(data).__name__}")
        if _is_synthmed_document(data):
            data = {m: entry["organs"] for m, entry in data["modalities"].items()}
        organs: dict[str, dict[str, list[str]]] = {}
        for modality, table in data.items():
            if not isinstance(table, dict):
                raise ValueError(f"hierarchy entry {modality!r} must map organs to lesion lists")
            organs[str(modality).lower()] = {
                str(organ).lower(): _lesion_names(lesions) for organ, lesions in table.items()
            }
        return cls(organs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> LabelHierarchy:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"cannot read label hierarchy {path}: {err}") from err
        try:
            return cls.from_dict(data or {})
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.organs, sort_keys=True), encoding="utf-8")

    def _tables(self, modality: str | None) -> list[dict[str, list[str]]]:
        if modality is not None and modality.lower() in self.organs:
            return [self.organs[modality.lower()]]
        if modality is not None and ANY_MODALITY in self.organs:
            return [self.organs[ANY_MODALITY]]
        return list(self.organs.values())

    def organ_names(self, modality: str | None = None) -> list[str]:
        """Organs of a modality (all modalities when ``None``), in file order, without duplicates."""
        return list(dict.fromkeys(o for t in self._tables(modality) for o in t))

    def lesion_names(self, modality: str | None = None) -> list[str]:
        return list(dict.fromkeys(les for t in self._tables(modality) for lesions in t.values() for les in lesions))

    def level(self, name: str, modality: str | None = None) -> str:
        """``organ`` or ``lesion`` for a label; a phrase such as "nodule in the left lung" counts as a lesion."""
        name = name.lower()
        if name in self.organ_names(modality):
            return "organ"
        if self.split_phrase(name, modality)[0] is not None:
            return "lesion"
        return "organ"

    def parents(self, lesion: str, modality: str | None = None) -> list[str]:
        """Organs that may contain ``lesion``."""
        lesion = lesion.lower()
        return [o for t in self._tables(modality) for o, lesions in t.items() if lesion in lesions]

    def split_phrase(self, phrase: str, modality: str | None = None) -> tuple[str | None, str | None]:
        """``"nodule in the left lung"`` or ``"left lung nodule"`` -> ``("nodule", "left lung")``; a bare lesion ->
        ``(lesion, None)``; anything else -> ``(None, None)``."""
        phrase = phrase.lower().strip()
        for lesion in sorted(self.lesion_names(modality), key=len, reverse=True):
            if phrase == lesion:
                return lesion, None
            if phrase.startswith(lesion + " "):
                rest = phrase[len(lesion) :].strip()
                for organ in sorted(self.parents(lesion, modality), key=len, reverse=True):
                    if rest.endswith(organ):
                        return lesion, organ
            if phrase.endswith(" " + lesion):  # "left lung nodule" (SynthMed's category names)
                rest = phrase[: -len(lesion)].strip()
                for organ in self.parents(lesion, modality):
                    if rest == organ:
                        return lesion, organ
        return None, None

    def prompt_phrase(self, lesion: str, organ: str) -> str:
        """The phrase that carries the parent context: ``nodule in the left lung``."""
        return f"{lesion} in the {organ}"

    def parent_indices(self, phrases: list[str], modality: str | None = None) -> list[int]:
        """For each phrase of a prompt, the index of its parent organ's phrase in the same list, or -1.

        ``"nodule in the left lung"`` points at ``"left lung"``; a bare lesion (``"nodule"``) points at the first of
        its possible organs that the list contains; organs, unknown phrases and lesions whose organ is not in the
        list get -1. This is what the hierarchy loss (``parent_index`` targets) and the prediction's parent links take.
        """
        position: dict[str, int] = {}
        for i, phrase in enumerate(phrases):
            position.setdefault(phrase.lower().strip(), i)
        out = []
        for phrase in phrases:
            lesion, organ = self.split_phrase(phrase, modality)
            if lesion is None:
                out.append(-1)
                continue
            candidates = [organ] if organ is not None else self.parents(lesion, modality)
            out.append(next((position[o] for o in candidates if o in position), -1))
        return out


def _is_synthmed_document(data: dict) -> bool:
    modalities = data.get("modalities")
    return isinstance(modalities, dict) and bool(modalities) and all(
        isinstance(entry, dict) and isinstance(entry.get("organs"), dict) for entry in modalities.values()
    )


def _lesion_names(lesions: object) -> list[str]:
    """An organ's lesions: a list of names, a mapping lesion -> details, or an organ entry with ``lesions``."""
    if isinstance(lesions, dict) and "lesions" in lesions:
        lesions = lesions["lesions"]
    if lesions is None:
        return []
    if isinstance(lesions, (list, tuple, dict)):
        return [str(lesion).lower() for lesion in lesions]
    raise ValueError(f"lesions must be a list or a mapping, got {type(lesions).__name__}")
