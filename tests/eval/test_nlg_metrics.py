"""Report-generation text metrics: hand-worked BLEU / ROUGE-L / CIDEr-D / METEOR, equality with pycocoevalcap's
scorers on real IU-Xray report pairs, the Python PTB tokenisation against the Java PTBTokenizer, the evaluate
wrapper."""
from __future__ import annotations

import ast
import math
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from eval.metrics import nlg
from eval.metrics.bootstrap import bootstrap_ci
from eval.metrics.nlg import METRIC_KEYS, example_scores, lcs_length, nlg_metrics
from eval.metrics.nlg_tokenize import (
    PTB_PUNCTUATIONS,
    ptb_tokenize,
    ptb_tokenize_keep_punctuation,
    r2gen_clean,
    r2gen_tokenize,
)
from eval.metrics.nltk_data import NLTKDataMissingError, nltk_data_ready

REPO = Path(__file__).resolve().parents[2]
PROJECT = {"grounding", "fusion", "vqa", "reportgen", "synthmed"}


def test_new_metric_modules_are_leaves():
    for name in ("nlg.py", "nlg_tokenize.py", "chexpert_labeler.py", "radgraph_f1.py"):
        tree = ast.parse((REPO / "eval" / "metrics" / name).read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        roots = {n.split(".")[0] for n in names}
        assert not roots & PROJECT, name
        assert all(n.startswith("eval.metrics") for n in names if n.startswith("eval")), name


# ------------------------------------------------------------------ tokenisation


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The heart is normal.", ["the", "heart", "is", "normal"]),
        ("No focal consolidation, effusion; or pneumothorax!", ["no", "focal", "consolidation", "effusion", "or",
                                                                "pneumothorax"]),
        ("Left-sided PICC (stable).", ["left-sided", "picc", "-lrb-", "stable", "-rrb-"]),  # -lrb- kept, as there
        ("Nodule 0.5cm, 2cm and 1,000 ml at 10:30.", ["nodule", "0.5", "cm", "2cm", "and", "1,000", "ml", "at",
                                                     "10:30"]),
        ("The patient's heart can't be seen; cannot exclude.", ["the", "patient", "'s", "heart", "ca", "n't", "be",
                                                               "seen", "can", "not", "exclude"]),
        ("and/or ectasia/tortuosity 19/33", ["and/or", "ectasia/tortuosity", "19/33"]),
        ("Prior CT. No change. e.g. this", ["prior", "ct.", "no", "change", "e.g.", "this"]),
        ("limits.The lungs", ["limits.the", "lungs"]),
        ('"quoted" -- ... - x', ["quoted", "x"]),
        ("previously<BR>described", ["previously", "<br>", "described"]),
        ("5% [stable]", ["5", "%", "-lsb-", "stable", "-rsb-"]),
        ("", []),
    ],
)
def test_ptb_tokenize_by_hand(text, tokens):
    assert ptb_tokenize(text) == tokens


def test_keep_punctuation_adds_the_sentence_final_abbreviation_period():
    assert ptb_tokenize_keep_punctuation("prior CT. No focal") == ["prior", "ct.", ".", "no", "focal"]
    assert ptb_tokenize_keep_punctuation("see No. 5") == ["see", "no.", "5"]
    assert ptb_tokenize_keep_punctuation("the end. no.") == ["the", "end", ".", "no", "."]


def test_r2gen_clean_by_hand():
    text = "1. The heart is normal. 2. Lungs are clear (no effusion)..  XXXX's left-sided"
    # R2Gen's character class ":-\[" is a range, so "-" itself stays
    assert r2gen_clean(text) == "the heart is normal . lungs are clear no effusion . xxxxs left-sided ."
    assert r2gen_tokenize("Heart normal.") == ["heart", "normal", "."]


def _java_ptb(texts: list[str], tmp_path: Path) -> list[list[str]]:
    """pycocoevalcap's PTBTokenizer, run the way it runs it (one caption per line), punctuation dropped."""
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    jar = Path(ptb.__file__).with_name(ptb.STANFORD_CORENLP_3_4_1_JAR)
    source = tmp_path / "captions.txt"
    source.write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    out = subprocess.run(
        ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
         str(source)],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout.split("\n")
    return [[w for w in line.rstrip().split(" ") if w and w not in ptb.PUNCTUATIONS] for line in out[: len(texts)]]


def _java_ready() -> bool:
    if shutil.which("java") is None:
        return False
    try:
        import pycocoevalcap.tokenizer.ptbtokenizer as ptb
    except ImportError:
        return False
    return Path(ptb.__file__).with_name(ptb.STANFORD_CORENLP_3_4_1_JAR).is_file()


PROBES = [
    "Don't worry, it can't be; they won't. I cannot say. It's the patient's X-ray.",
    "Heart size 2.5 cm (normal) [stable] {ok} and/or 1,000 ml at 10:30 a.m. e.g. this etc.",
    'Dr. Smith said "no change" -- see 1. The lungs. 2. Clear... The end.',
    "5% of $5 & more # 1/2 * star 19/33. <BR> previously<BR>described x > y < z",
    "Chest: no effusion; stable - ok. -sided 3-4 'quoted' `back` ''two''",
    "no focal consolidation.There's XXXX't today's ill-defined . .. ....",
    "heart:normal lungs.clear 0.5cm 3.cm i.e., vs. approx. mm. cm. 1.5. 2.",
    "chest CT. Stable a mass. The b Mass. The ill. Pt. ind. The la. Tex. tenn. Mon. dec. The",
    "inc. The corp. co. ltd. vs. etc. al. cf. fig. No. 5 no. 5 approx. 2 md. Dr. pt. st. Jr. a.m. The",
    "2cm 5mm 10x x2 3rd L1-L2 4.5x3.2 cm 1.2.3 v2.0 12-15mm -5 +5 5- ab.cd ab1.cd ab.c1 x.y. a/b/c/d",
    "gonna wanna I'm you're we've they'll he'd dogs' o'clock what?! (a) 1) mid- and lower a-- b --c",
]


@pytest.mark.skipif(not _java_ready(), reason="java or pycocoevalcap's CoreNLP jar is missing")
def test_ptb_tokenize_matches_the_java_tokenizer_on_probes(tmp_path):
    assert [ptb_tokenize(t) for t in PROBES] == _java_ptb(PROBES, tmp_path)


@pytest.mark.skipif(not _java_ready(), reason="java or pycocoevalcap's CoreNLP jar is missing")
def test_ptb_tokenize_matches_the_java_tokenizer_on_every_iu_xray_report(tmp_path, iu_reports):
    java = _java_ptb(iu_reports, tmp_path)
    ours = [ptb_tokenize(t) for t in iu_reports]
    mismatches = [(t, a, b) for t, a, b in zip(iu_reports, ours, java) if a != b]
    assert len(iu_reports) > 2900
    assert not mismatches, mismatches[:3]


# ------------------------------------------------------------------ hand-worked scores


def test_bleu_rouge_by_hand():
    pred, ref = "the heart is normal", "the heart is normal in size"
    out = nlg_metrics([pred], [ref], tokenizer="whitespace", meteor=False)
    # every n-gram of the prediction is in the reference; brevity penalty exp(1 - 6/4)
    for k in range(1, 5):
        assert out[f"bleu_{k}"] == pytest.approx(math.exp(-0.5), abs=1e-8)
    precision, recall = 1.0, 4 / 6  # LCS 4
    assert out["rouge_l"] == pytest.approx((1 + 1.2**2) * precision * recall / (recall + 1.2**2 * precision))
    assert out["cider"] == 0.0  # a corpus of one example: every idf is log(1) - log(1)


def test_bleu_clipping_and_the_constants_by_hand():
    # "the the the the" against "the cat": unigram matches clipped to 1 of 4, no bigram match at all
    scores = example_scores(["the the the the"], ["the cat"], tokenizer="whitespace", meteor=False)
    b1 = (1 + 1e-15) / (4 + 1e-9)
    b2 = (b1 * (0 + 1e-15) / (3 + 1e-9)) ** 0.5
    assert scores["bleu_1"][0] == pytest.approx(b1, rel=1e-12)
    assert scores["bleu_2"][0] == pytest.approx(b2, rel=1e-9)


def test_bleu_closest_reference_length_prefers_the_shorter_on_ties():
    # hypothesis 4 tokens, references of 2 and 6 tokens: both 2 away, so 2 is the reference length, no penalty
    out = nlg_metrics(["a b c d"], [["a b", "a b c d e f"]], tokenizer="whitespace", meteor=False)
    assert out["bleu_1"] == pytest.approx(1.0, abs=1e-8)


def test_cider_by_hand():
    # N = 2 examples; idf of an n-gram in one example's references is log 2 - log 1
    scores = example_scores(["a b", "c"], ["a b", "d"], tokenizer="whitespace", meteor=False)
    # example 1: identical texts, cosine 1 for unigrams and bigrams, 0 (no vector) for 3- and 4-grams
    assert scores["cider"][0] == pytest.approx(10 * (1 + 1 + 0 + 0) / 4)
    assert scores["cider"][1] == 0.0
    assert nlg_metrics(["a b", "c"], ["a b", "d"], tokenizer="whitespace", meteor=False)["cider"] == pytest.approx(2.5)


def test_cider_gaussian_length_penalty_by_hand():
    # the same unigram direction, lengths 2 and 1 bigram: delta 1, penalty exp(-1 / 72)
    hyp, ref = "x x y", "x y"
    scores = example_scores([hyp, "z"], [ref, "w"], tokenizer="whitespace", meteor=False)
    idf = math.log(2)
    h1, r1 = {"x": 2 * idf, "y": idf}, {"x": idf, "y": idf}
    cos1 = sum(min(h1[g], r1[g]) * r1[g] for g in h1) / (math.hypot(*h1.values()) * math.hypot(*r1.values()))
    h2, r2 = {("x", "x"): idf, ("x", "y"): idf}, {("x", "y"): idf}
    cos2 = sum(min(h2[g], r2.get(g, 0)) * r2.get(g, 0) for g in h2) / (math.hypot(*h2.values()) * idf)
    expected = 10 * (cos1 + cos2) * math.exp(-1 / 72) / 4
    assert scores["cider"][0] == pytest.approx(expected, rel=1e-12)


def test_lcs_length_matches_the_quadratic_table():
    from pycocoevalcap.rouge.rouge import my_lcs

    rng = random.Random(0)
    for _ in range(500):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 80))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 80))]
        assert lcs_length(a, b) == my_lcs(a, b)


def test_empty_texts_follow_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge

    preds, refs = ["", "the heart", ""], ["the heart", "", ""]
    gts, res = {i: [r] for i, r in enumerate(refs)}, {i: [p] for i, p in enumerate(preds)}
    ours = example_scores(preds, refs, tokenizer="whitespace", meteor=False)
    _, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    _, rouge_each = Rouge().compute_score(gts, res)
    assert ours["rouge_l"] == pytest.approx(list(rouge_each))
    assert ours["bleu_4"] == pytest.approx(bleu_each[3])


def test_keys_means_and_errors():
    preds, refs = ["the heart is normal", "no effusion"], ["heart normal", "no pleural effusion"]
    corpus, each = nlg_metrics(preds, refs, meteor=False), example_scores(preds, refs, meteor=False)
    assert set(corpus) == set(each) == set(METRIC_KEYS) - {"meteor"}
    for key in ("rouge_l", "cider"):
        assert corpus[key] == pytest.approx(sum(each[key]) / 2)
    ci = bootstrap_ci(each["bleu_4"], resamples=50)
    assert ci["n"] == 2
    assert all(math.isnan(v) for v in nlg_metrics([], [], meteor=False).values())
    with pytest.raises(ValueError, match="differ in length"):
        nlg_metrics(["a"], ["a", "b"], meteor=False)
    with pytest.raises(ValueError, match="no reference"):
        nlg_metrics(["a"], [[]], meteor=False)
    with pytest.raises(ValueError, match="unknown tokenizer"):
        nlg_metrics(["a"], ["a"], tokenizer="spacy", meteor=False)
    with pytest.raises(TypeError):
        nlg_metrics([None], ["a"], meteor=False)


# ------------------------------------------------------------------ METEOR

needs_wordnet = pytest.mark.skipif(not nltk_data_ready(), reason="NLTK data not built: run make setup")


@needs_wordnet
def test_meteor_by_hand():
    # identical 4-token texts: F-mean 1, one chunk of 4 matches, penalty 0.5 * (1/4)^3
    out = nlg_metrics(["The heart is normal."], ["The heart is normal."])
    assert out["meteor"] == pytest.approx(1 - 0.5 * (1 / 4) ** 3)
    # nothing in common: 0
    assert nlg_metrics(["pneumothorax"], ["heart normal"])["meteor"] == 0.0


@needs_wordnet
def test_meteor_matches_nltk_with_synonyms_and_stems():
    from nltk.corpus import wordnet
    from nltk.translate.meteor_score import meteor_score

    preds = ["the lungs are clear", "small effusions noted", "the heart is big"]
    refs = [["the lungs are open"], ["a small effusion is noted", "small effusion"], ["the heart is large"]]
    each = example_scores(preds, refs)["meteor"]
    expected = [meteor_score([r.split() for r in rs], p.split(), wordnet=wordnet) for p, rs in zip(preds, refs)]
    assert each == pytest.approx(expected)
    assert each[0] == pytest.approx(1 - 0.5 * (1 / 4) ** 3)  # clear ~ open through WordNet: a full match
    # NLTK matches synonyms on Porter stems, so "big" (stem big) and "large" (stem larg) do not match: 3 of 4
    assert each[2] < 0.8


def test_meteor_without_wordnet_names_make_setup(monkeypatch):
    import nltk.corpus

    class Missing:
        def ensure_loaded(self):
            raise LookupError("Resource wordnet not found.")

    monkeypatch.setattr(nlg, "_WORDNET", None)
    monkeypatch.setattr(nltk.corpus, "wordnet", Missing())
    with pytest.raises(NLTKDataMissingError, match="make setup"):
        nlg_metrics(["a"], ["a"])
    # without METEOR nothing needs WordNet
    assert "meteor" not in nlg_metrics(["a"], ["a"], meteor=False)


# ------------------------------------------------------------------ pycocoevalcap on real reports


@pytest.fixture(scope="module")
def iu_reports(data_root) -> list[str]:
    from reportgen.datasets import load_iu_xray

    path = data_root / "iu_xray" / "annotation.json"
    return list(load_iu_xray(path, split="all")["findings"])


def _coco(gts: dict, res: dict) -> dict:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_each = Rouge().compute_score(gts, res)
    cider, cider_each = Cider().compute_score(gts, res)
    corpus = {f"bleu_{k + 1}": b for k, b in enumerate(bleu)} | {"rouge_l": rouge, "cider": cider}
    each = {f"bleu_{k + 1}": list(b) for k, b in enumerate(bleu_each)}
    each |= {"rouge_l": list(rouge_each), "cider": list(cider_each)}
    return {"corpus": corpus, "each": each}


def _assert_same(ours_corpus: dict, ours_each: dict, coco: dict) -> None:
    for key, value in coco["corpus"].items():
        assert ours_corpus[key] == pytest.approx(value, abs=1e-4), key
        assert ours_corpus[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key  # in fact to rounding
    for key, values in coco["each"].items():
        assert ours_each[key] == pytest.approx(values, rel=1e-9, abs=1e-12), key


def test_equal_to_pycocoevalcap_on_iu_xray_pairs(iu_reports):
    rng = random.Random(0)
    refs = iu_reports[:600]
    preds = refs[:]
    rng.shuffle(preds)  # each report scored against another one
    gts = {i: [" ".join(ptb_tokenize(r))] for i, r in enumerate(refs)}
    res = {i: [" ".join(ptb_tokenize(p))] for i, p in enumerate(preds)}
    coco = _coco(gts, res)
    _assert_same(nlg_metrics(preds, refs, meteor=False), example_scores(preds, refs, meteor=False), coco)
    assert 0.0 < coco["corpus"]["bleu_4"] < coco["corpus"]["bleu_1"] < 1.0


def test_equal_to_pycocoevalcap_with_two_references_and_r2gen_cleaning(iu_reports):
    rng = random.Random(1)
    refs = [[a, b] for a, b in zip(iu_reports[600:900], iu_reports[900:1200])]
    preds = iu_reports[1200:1500]
    rng.shuffle(preds)
    gts = {i: [r2gen_clean(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [r2gen_clean(p)] for i, p in enumerate(preds)}
    coco = _coco(gts, res)
    ours_corpus = nlg_metrics(preds, refs, tokenizer="r2gen", meteor=False)
    _assert_same(ours_corpus, example_scores(preds, refs, tokenizer="r2gen", meteor=False), coco)


def test_punctuation_list_is_pycocoevalcaps():
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    assert PTB_PUNCTUATIONS == frozenset(PUNCTUATIONS)


# ------------------------------------------------------------------ evaluate wrapper


def test_evaluate_wrapper_loads_offline_and_matches():
    import evaluate

    from eval.metrics.nlg_metric import METRIC_DIR

    metric = evaluate.load(METRIC_DIR)
    preds, refs = ["The heart is normal.", "No effusion."], ["The heart is normal in size.", "No pleural effusion."]
    assert metric.compute(predictions=preds, references=refs, meteor=False) == nlg_metrics(preds, refs, meteor=False)
    multi = [["The heart is normal in size.", "Heart normal."], ["No pleural effusion."]]
    got = metric.compute(predictions=preds, references=multi, meteor=False, tokenizer="r2gen")
    assert got == nlg_metrics(preds, multi, meteor=False, tokenizer="r2gen")
