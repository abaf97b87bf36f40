"""RadGraph F1 of generated reports: the F1 computation on RadGraph annotations, and the optional model run.

This module imports nothing from the project (``eval/metrics`` is a leaf).

**Annotations.** One dict per report, in the format the ``radgraph`` package outputs::

    {"entities": {"1": {"tokens": "pneumothorax", "label": "Observation::definitely absent", "relations": []},
                  "3": {"tokens": "tube", "label": "Observation::definitely present",
                        "relations": [["located_at", "2"]]}, ...}}

(``start_ix`` / ``end_ix`` / ``text`` may be there and are not used), or in a compact form: ``{"entities":
[{"tokens" (or "text"): ..., "label": ...}, ...], "relations": [[source_index, target_index, type], ...]}`` with
list indices.

**Scores** (:func:`radgraph_example_scores`), exactly as ``radgraph.rewards.compute_reward`` of the ``radgraph``
package 0.1.18 (Delbrouck et al., 2022, "Improving the Factual Correctness of Radiology Report Generation with
Semantic Rewards"). Each report becomes a *set* of items, the F1 of the prediction's set against the reference's
(precision = share of prediction items in the reference set, recall the converse, 0 where undefined):

- ``simple``: one item ``(tokens, label)`` per entity;
- ``partial``: ``(tokens, label)`` for an entity without relations, ``(tokens, label, True)`` for one with
  relations (an entity matches only when both or neither have relations);
- ``complete``: ``(tokens, label)`` for an entity without relations, and one item ``(tokens, label, relation type,
  target tokens)`` per relation of an entity that has some (tokens lowercased in these, as the package does), so an
  entity counts fully only with all its relations.

A report pair where either side has no entity scores 0 at every level, as in the package. :func:`radgraph_f1` is
the mean over reports. :func:`entity_relation_f1` is the other common reading (Yu et al., 2023, "Evaluating progress
in automatic chest X-ray radiology report generation"): entity F1 on ``(tokens, label)``, relation F1 on
``(source tokens, source label, target tokens, target label, type)``, and their mean.

**Model** (:func:`radgraph_metric`): the annotations come from the ``radgraph`` package's model (DyGIE++ on a
BERT), which needs the package (``pip install radgraph``) and its weights (``radgraph-xl`` by default, from the
Hugging Face repository ``StanfordAIMI/RRG_scorers``, unpacked into ``~/.cache/radgraph/<version>/<model_type>/``
by the package itself on first use) plus the BERT it names. Without them it returns ``{"available": False,
"reason", "fetch"}``: no zeros and no substitute metric.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LEVELS: tuple[str, ...] = ("simple", "partial", "complete")
MODEL_TYPES: tuple[str, ...] = ("radgraph", "radgraph-xl", "modern-radgraph-xl", "echograph")
DEFAULT_MODEL_TYPE = "radgraph-xl"  # the package's default


# ---------------------------------------------------------------------------------------------------------------------
# annotations


def _entities(annotation: Mapping[str, Any]) -> list[tuple[str, str, list[tuple[str, int]]]]:
    """``[(tokens, label, [(relation type, target entity index)])]`` of one annotation (either format)."""
    if not isinstance(annotation, Mapping) or "entities" not in annotation:
        raise ValueError("an annotation must be a dict with 'entities'")
    raw = annotation["entities"]
    if isinstance(raw, Mapping):  # the radgraph package's format: ids -> entity, relations [type, target id]
        ids = list(raw)
        position = {str(k): i for i, k in enumerate(ids)}
        out = []
        for key in ids:
            ent = raw[key]
            relations = []
            for rel in ent.get("relations", []):
                rel_type, target = rel[0], str(rel[1])
                if target not in position:
                    raise ValueError(f"entity {key}: relation to unknown entity {target!r}")
                relations.append((str(rel_type), position[target]))
            out.append((_tokens(ent, key), str(ent["label"]), relations))
        return out
    out = [(_tokens(ent, i), str(ent["label"]), []) for i, ent in enumerate(raw)]
    for rel in annotation.get("relations", []):
        source, target, rel_type = rel
        if not (0 <= int(source) < len(out) and 0 <= int(target) < len(out)):
            raise ValueError(f"relation {rel!r} refers to an entity index outside 0..{len(out) - 1}")
        out[int(source)][2].append((str(rel_type), int(target)))
    return out


def _tokens(entity: Mapping[str, Any], key: object) -> str:
    value = entity.get("tokens", entity.get("text"))
    if not isinstance(value, str):
        raise TypeError(f"entity {key}: 'tokens' (or 'text') must be a string")
    return value


def _items(entities: list[tuple[str, str, list[tuple[str, int]]]], level: str) -> set[tuple]:
    items: set[tuple] = set()
    for tokens, label, relations in entities:
        if level == "simple" or not relations:
            items.add((tokens, label))
        elif level == "partial":
            items.add((tokens, label, True))
        else:  # complete: one item per relation, tokens lowercased as radgraph.rewards does
            items.update(
                (tokens.lower(), label, rel_type, entities[target][0].lower()) for rel_type, target in relations
            )
    return items


def _f1(pred: set, ref: set) -> float:
    precision = sum(1 for x in pred if x in ref) / len(pred) if pred else 0.0
    recall = sum(1 for x in ref if x in pred) / len(ref) if ref else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def radgraph_example_scores(pred_annotation: Mapping[str, Any], ref_annotation: Mapping[str, Any]) -> dict[str, float]:
    """``{"simple", "partial", "complete"}`` RadGraph F1 of one report pair (see the module docstring); 0 at every
    level when either side has no entity."""
    pred, ref = _entities(pred_annotation), _entities(ref_annotation)
    if not pred or not ref:
        return {level: 0.0 for level in LEVELS}
    return {level: _f1(_items(pred, level), _items(ref, level)) for level in LEVELS}


def radgraph_f1(
    pred_annotations: Sequence[Mapping[str, Any]], ref_annotations: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """Mean over reports of :func:`radgraph_example_scores`: ``{"simple", "partial", "complete"}`` (``nan`` for no
    report). Raises ``ValueError`` when the lengths differ or an annotation is malformed."""
    if len(pred_annotations) != len(ref_annotations):
        raise ValueError(f"annotations differ in length: {len(pred_annotations)} and {len(ref_annotations)}")
    scores = [radgraph_example_scores(p, r) for p, r in zip(pred_annotations, ref_annotations)]
    if not scores:
        return {level: float("nan") for level in LEVELS}
    return {level: math.fsum(s[level] for s in scores) / len(scores) for level in LEVELS}


def entity_relation_f1(pred_annotation: Mapping[str, Any], ref_annotation: Mapping[str, Any]) -> dict[str, float]:
    """Yu et al. (2023)'s reading for one report pair: ``entity_f1`` on ``(tokens, label)``, ``relation_f1`` on
    ``(source tokens, source label, target tokens, target label, type)``, and ``radgraph_f1`` their mean. A side
    with no relation and the other with none too gives relation F1 0, as the entity case does."""
    pred, ref = _entities(pred_annotation), _entities(ref_annotation)

    def relations(entities: list) -> set[tuple]:
        return {(t, l, entities[j][0], entities[j][1], r) for t, l, rels in entities for r, j in rels}

    entity = _f1({(t, l) for t, l, _ in pred}, {(t, l) for t, l, _ in ref})
    relation = _f1(relations(pred), relations(ref))
    return {"entity_f1": entity, "relation_f1": relation, "radgraph_f1": (entity + relation) / 2}


# ---------------------------------------------------------------------------------------------------------------------
# the model


def fetch_command(model_type: str = DEFAULT_MODEL_TYPE) -> str:
    """The command that installs the package and fetches the model's weights (and the BERT it uses) where the
    internet is reachable: constructing ``RadGraph`` downloads and unpacks them into the package's cache."""
    return (
        f"pip install radgraph && python -c \"from radgraph import RadGraph; RadGraph(model_type='{model_type}')\""
    )


def _installed_version() -> str | None:
    if importlib.util.find_spec("radgraph") is None:
        return None
    try:
        return importlib.metadata.version("radgraph")
    except importlib.metadata.PackageNotFoundError:
        return None


def default_cache_dir(version: str) -> Path:
    """The package's model cache: ``appdirs.user_cache_dir("radgraph")/<version>`` (on Linux
    ``$XDG_CACHE_HOME/radgraph/<version>``, default ``~/.cache/radgraph/<version>``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "radgraph" / version


def _model_cache_dir(model_path: str | os.PathLike | None, model_type: str, version: str) -> Path:
    """The folder to hand to ``RadGraph(model_cache_dir=...)``: it holds ``<model_type>/config.json``.
    ``model_path`` may be that folder or the ``<model_type>`` folder itself."""
    if model_path is None:
        return default_cache_dir(version)
    path = Path(model_path).expanduser()
    if (path / "config.json").is_file() and path.name == model_type:
        return path.parent
    return path


def _weights_present(cache_dir: Path, model_type: str) -> bool:
    model_dir = cache_dir / model_type
    return (model_dir / "config.json").is_file() and (model_dir / "weights.th").is_file()


def radgraph_metric(
    predictions: Sequence[str],
    references: Sequence[str],
    model_path: str | os.PathLike | None = None,
    model_type: str = DEFAULT_MODEL_TYPE,
) -> dict[str, Any]:
    """RadGraph F1 of generated reports with the ``radgraph`` package's model: ``{"available": True, "simple",
    "partial", "complete", "model_type"}`` (means over reports; a pair with an empty report scores 0, as the
    package's ``F1RadGraph`` does).

    ``model_path``: the model cache folder (holding ``<model_type>/config.json`` and ``weights.th``) or the
    ``<model_type>`` folder itself; default the package's own cache. When the package is not installed, the weights
    are not there, or the model cannot be built offline (its BERT not cached), returns ``{"available": False,
    "reason": ..., "fetch": <command>}`` instead. Raises ``ValueError`` when the lengths differ or the model type is
    unknown."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}: expected one of {', '.join(MODEL_TYPES)}")
    if len(predictions) != len(references):
        raise ValueError(f"predictions and references differ in length: {len(predictions)} and {len(references)}")
    fetch = fetch_command(model_type)
    version = _installed_version()
    if version is None:
        return {"available": False, "reason": "the radgraph package is not installed", "fetch": fetch}
    cache_dir = _model_cache_dir(model_path, model_type, version)
    if not _weights_present(cache_dir, model_type):
        return {
            "available": False,
            "reason": f"no {model_type} weights in {cache_dir / model_type} (config.json and weights.th)",
            "fetch": fetch,
        }
    try:
        from radgraph import RadGraph

        model = RadGraph(model_type=model_type, model_cache_dir=str(cache_dir))
    except Exception as err:  # noqa: BLE001 - the package raises bare Exceptions for a missing BERT or download
        return {"available": False, "reason": f"the {model_type} model could not be built: {err}", "fetch": fetch}

    keep = [i for i, (p, r) in enumerate(zip(predictions, references)) if p and r]
    scores = [{level: 0.0 for level in LEVELS} for _ in predictions]
    if keep:
        annotations = model([predictions[i] for i in keep] + [references[i] for i in keep])
        for n, i in enumerate(keep):
            # the package leaves out a report it failed on: no entities, so 0, as its F1RadGraph would fail to score
            empty = {"entities": {}}
            pred, ref = annotations.get(str(n), empty), annotations.get(str(n + len(keep)), empty)
            scores[i] = radgraph_example_scores(pred, ref)
    out: dict[str, Any] = {"available": True, "model_type": model_type}
    for level in LEVELS:
        out[level] = math.fsum(s[level] for s in scores) / len(scores) if scores else float("nan")
    return out
