"""Tokenisers for the report-generation metrics (:mod:`eval.metrics.nlg`), in pure Python.

Three conventions, picked by name in :func:`get_tokenizer`:

- ``"ptb"`` (default, :func:`ptb_tokenize`): the effect of pycocoevalcap's ``PTBTokenizer`` (the Java Stanford
  CoreNLP 3.4.1 ``PTBTokenizer -preserveLines -lowerCase`` followed by dropping the tokens in pycocoevalcap's
  ``PUNCTUATIONS`` list), without Java. This is what ``COCOEvalCap`` feeds the scorers.
- ``"r2gen"`` (:func:`r2gen_tokenize`): R2Gen's ``clean_report_iu_xray`` (Chen et al., 2020), the cleaning R2Gen and
  its followers apply to reports *before* scoring; they then call the scorers directly, without PTBTokenizer, so the
  sentence separators `` . `` stay tokens. Use it to compare with numbers published in that line of work.
- ``"whitespace"``: ``text.split()`` for text already tokenised (what the scorers do themselves).

What :func:`ptb_tokenize` does (checked token for token against the Java tokenizer on all 2,955 IU-Xray reports and
on a set of probe strings, ``tests/eval/test_nlg_metrics.py``). The lexer works on the original case and lowercases
the tokens it emits; a text is cut at whitespace (newlines count as spaces) and each piece is scanned with the
rules below, longest match first, as JFlex does:

- words with internal hyphens or underscores stay whole (``left-sided``, ``t11-t12``, ``xxxx-a-xxxx``), and so do
  slash compounds of up to three parts (``and/or``, ``ectasia/tortuosity``) and letter-initial words joined by
  periods without a space (``limits.the``, ``e.g``);
- numbers keep their internal ``.`` ``,`` ``:`` (``2.5``, ``1,000``, ``10:30``) and a leading sign (``-5``);
  fractions and dates stay whole (``1/2``, ``19/33``); a number stops where letters start after a decimal
  (``0.5cm`` -> ``0.5 cm``, while ``2cm`` is one word);
- clitics are split as in the Penn Treebank: ``don't`` -> ``do n't``, ``can't`` -> ``ca n't``, ``patient's`` ->
  ``patient 's``, ``cannot`` -> ``can not``;
- single-letter acronyms keep their periods (``a.m.``, ``e.g.``, ``u.s.``), and so do the abbreviations of the
  lexer's lists (``dr.``, ``vs.``, ``etc.``, ``inc.``, month and weekday abbreviations, US state abbreviations
  such as ``ct.`` — so ``CT.`` stays ``ct.``), ``no.`` before a number, and a word whose period is followed by
  ``, ; :``;
- other punctuation becomes tokens of its own: ``.`` ``,`` ``;`` ``:`` ``?`` ``!``, runs of dots (``...``), dashes
  (``-``, ``--``), quotes (mapped to ``` `` ``` / ``''`` / ``` ` ``` / ``'``), brackets (``(`` -> ``-lrb-``,
  ``)`` -> ``-rrb-``, ``[`` -> ``-lsb-``, ``]`` -> ``-rsb-``, ``{`` -> ``-lcb-``, ``}`` -> ``-rcb-``), symbols
  (``%``, ``+``, ``&``, ``<``, ``>``...), SGML tags (``<BR>`` -> ``<br>``).

Then the tokens in pycocoevalcap's ``PUNCTUATIONS`` are dropped: ``'' ' `` ` . ? ! , : - -- ... ;`` and
``-LRB- -RRB- -LCB- -RCB-``. The bracket tokens are listed there in capitals while ``-lowerCase`` has already
lowercased them, so pycocoevalcap keeps ``-lrb-`` / ``-rrb-`` tokens in the text it scores; we keep them too, to
score the same tokens (a known quirk of coco-caption; ``-lsb-`` and ``-rsb-`` are not in the list either way).

Known differences from the Java tokenizer, outside what reports contain: its URL, e-mail, phone-number and
currency rules, unicode normalisations (fractions such as ``½``, soft hyphens, CP1252 characters), apostrophe words
other than ``o'clock``-like ones, tokens spanning whitespace (``5 1/2`` as one token) and a word glued to two or more
periods (``a..b``: Java ``a.`` ``.`` ``b``, here ``a`` ``.`` ``.`` ``b``) are not reproduced. The ``.`` the lexer adds
after an abbreviation that ends a caption depends in Java on the next caption's first letter; here the end of the
text counts as a sentence end (pycocoevalcap drops that ``.`` either way). Whitespace is Python's ``str.split``.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

#: pycocoevalcap/tokenizer/ptbtokenizer.py, verbatim
PTB_PUNCTUATIONS: frozenset[str] = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# --- the lexer's abbreviation lists (CoreNLP PTBLexer.flex). The lexer is caseless except inside character classes,
# so "[M]ass" needs a capital M: "Mass." is an abbreviation, the word "mass." is not.
_ABMONTH = "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
_ABDAYS = "Mon|Tue|Tues|Wed|Thu|Thurs|Fri"
_ABSTATE = (
    "Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a|[M]ass|Md|Mich|Minn|[M]iss|Mo|"
    "Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt|[W]ash|Wisc?|Wyo"
)
_ABCOMP = "Inc|Cos?|Corp|Pp?tys?|Ltd|Plc|Bancorp|Dept|Bhd|Assn|Univ|Intl|Sys"
_ABPTIT = r"Jr|Sr|Bros|(?:Ed|Ph)\.D|Blvd|Rd|Esq"
_ABTITLE = (
    "Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|Mt|Capt|Ste?|"
    "Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det"
)
_ABCOMP2 = "Invt|Elec|Natl|M[ft]g"
# before a number only ("No. 5"); a sentence-final "no." is a word and a full stop
_ABNUM = frozenset({"no.", "nos.", "prop.", "ph.", "tel.", "est.", "ext.", "sq.", "ft."})


def _caseless(alternatives: str) -> str:
    """A regex for ``A|B|...`` that matches any case except inside ``[...]`` (JFlex's %caseless)."""
    out = []
    for alt in alternatives.split("|"):
        parts = re.split(r"(\[[^\]]*\])", alt)
        out.append("".join(p if p.startswith("[") else f"(?i:{p})" for p in parts if p))
    return "(?:" + "|".join(out) + ")"


_LETTER = r"[^\W\d_]"
_ALNUM = r"[^\W_]"
_ACRO = rf"{_LETTER}(?:\.{_LETTER})+"

# (name, pattern) in priority order: on equal match lengths the earlier rule wins. A group ``t`` marks the token when
# the rule has a trailing context (JFlex's ``r1/r2``): the context counts in the match length, as in JFlex, and is
# scanned again afterwards.
_RULES: tuple[tuple[str, str], ...] = (
    ("split_word", r"(?i:cannot|gonna|gotta|wanna|lemme|gimme)"),
    ("sgml", r"</?[A-Za-z!][^>]*>"),
    ("word_redaux", rf"(?P<t>{_LETTER}+)['\u2019](?:[msdMSD]|(?i:re|ve|ll))(?![A-Za-z])"),
    ("sword_sredaux", r"(?P<t>[A-Za-z]*[A-MO-Za-mo-z])(?i:n)['\u2019\u2018](?i:t)"),
    ("apoword", rf"[A-HJ-XZn]['\u2019]{_LETTER}{{2,}}|(?i:o'clock)|['\u2019]n['\u2019]"),
    ("redaux", r"['\u2019](?:[msdMSD]|(?i:re|ve|ll))(?![A-Za-z])"),
    ("sredaux", r"(?i:n)['\u2019\u2018](?i:t)"),
    ("date", r"\d{1,2}[-/]\d{1,2}[-/]\d{2,4}"),
    ("number", r"[-+]?(?:\d*(?:[.:,]\d+)+|\d+)"),
    ("frac", r"(?:\d{1,4}-)?\d{1,4}\\?/\d{1,4}"),
    ("thing3", r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"),
    ("acronym", rf"{_ACRO}\."),
    ("abbrev1", _caseless(f"{_ABMONTH}|{_ABDAYS}|{_ABSTATE}|{_ABCOMP}|{_ABPTIT}|etc|al|seq") + r"\."),
    ("abbrev2", _caseless(f"{_ABTITLE}|vs|Alex|Wm|Jos|Cie|a\\.k\\.a|cf|TREAS|{_ABCOMP2}") + r"\."),
    ("word_dot_insentp", rf"(?P<t>{_LETTER}+\.)[,;:]"),
    ("acro", _ACRO),
    ("dotword", rf"{_LETTER}{_ALNUM}*(?:\.{_LETTER}{_ALNUM}*)+"),
    ("hthing", rf"[A-Za-z0-9][A-Za-z0-9.,]*(?:-(?:[A-Za-z0-9]+|{_ACRO}\.))+"),
    ("thing", rf"{_ALNUM}+(?:[-_]{_ALNUM}+)*"),
    ("ldots", r"\.{3,5}"),
    ("hyphens", r"-+"),
    ("quotes", "''|``|[`'\"\u2018\u2019\u201a\u201b\u201c\u201d\u00ab\u00bb]"),
    ("amp", r"&amp;"),
    ("qmarks", r"[?!]+"),
    ("dollar", r"[A-Za-z]*\$"),
    ("marks", r"#+|@+|_+|\*+"),
)
_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in _RULES)
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_SIMPLE_WORD = re.compile(r"[A-Za-z]+|\d+")  # most pieces: one plain word or number, which no rule splits...
_SPLIT_WORDS = frozenset({"cannot", "gonna", "gotta", "wanna", "lemme", "gimme"})  # ...except these
_SGML = re.compile(r"</?[A-Za-z!][^>]*>")


# acronyms ("U.S.") count as sentence final only before these words (case as written: "[A]n" needs a capital A)
_ACRONYM_SENTENCE_END = re.compile(
    "(?:About|According|Additionally|After|An|A|As|At|But|Earlier|He|Her|Here|However|If|In|It|Last|Many|More|"
    r"Mr\.|Ms\.|Now|Once|One|Other|Our|She|Since|So|Some|Such|That|The|Then|There|These|They|This|We|When|While|"
    "What|Yet|You)$"
)
_OPENING_NEXT = re.compile(r"[A-Za-z0-9$]")


def _token(name: str, text: str, before: str, after: str) -> str:
    """The token of one lexer match, before lowercasing (PTB3 normalisations); ``before`` and ``after`` are the
    characters around the match (``""`` at the ends of the piece)."""
    if name == "quotes":
        # latexQuotes: a straight quote opens (`` or `) when a word follows and none precedes, otherwise it closes
        # ('' or '). pycocoevalcap drops all of them; the direction matters only to ptb_tokenize_keep_punctuation.
        opens = bool(_OPENING_NEXT.match(after)) and not _OPENING_NEXT.match(before)
        if text in ('"', "\u201c", "\u201d", "\u00ab", "\u00bb"):
            return "``" if text in ("\u201c", "\u00ab") or (text == '"' and opens) else "''"
        if text in ("``", "''"):
            return text
        if text in ("`", "\u2018", "\u201b") or (text == "'" and opens):
            return "`"
        return "'"
    if name == "hyphens":
        return "-" if len(text) == 1 else "--"
    if name == "ldots":
        return "..."
    if name == "amp":
        return "&"
    return text


@lru_cache(maxsize=1 << 16)
def _scan_piece(piece: str) -> tuple[tuple[str, ...], str]:
    """PTB tokens (lowercased, punctuation kept) of one whitespace-free piece of text, and the name of the rule of
    its last token. Cached: reports repeat their words, and a piece's tokens do not depend on its neighbours except
    for the periods the caller adds or keeps (:func:`ptb_tokenize_keep_punctuation`)."""
    if _SIMPLE_WORD.fullmatch(piece) and piece.lower() not in _SPLIT_WORDS:
        return (piece.lower(),), "thing"
    tokens: list[str] = []
    pos, end, last = 0, len(piece), ""
    while pos < end:
        best_name, best_len, best_text = "", 0, ""
        for name, regex in _COMPILED:
            m = regex.match(piece, pos)
            if m and m.end() - pos > best_len:
                best_name, best_len = name, m.end() - pos
                best_text = m.group("t") if "t" in regex.groupindex else m.group(0)
        if best_len == 0:  # a character no rule takes: brackets and symbols are tokens of their own
            char = piece[pos]
            tokens.append(_BRACKETS.get(char, char))
            pos, last = pos + 1, "char"
            continue
        if best_name == "split_word":
            best_text = best_text[:3]  # "cannot" -> "can" + "not": the lexer pushes the rest back and reads it next
        after = pos + len(best_text)
        tokens.append(_token(best_name, best_text, piece[pos - 1:pos] if pos else "", piece[after:after + 1]))
        pos, last = pos + len(best_text), best_name
    return tuple(t.lower() for t in tokens), last


def _sentence_end(pieces: list[str], i: int) -> bool:
    """Whether piece ``i`` ends a sentence for the lexer's abbreviation rules: the end of the text, or a next piece
    that starts with a capital letter or an SGML tag (SENTEND)."""
    if i + 1 >= len(pieces):
        return True
    nxt = pieces[i + 1]
    return ("A" <= nxt[0] <= "Z") or bool(_SGML.match(nxt))


def ptb_tokenize_keep_punctuation(text: str) -> list[str]:
    """The Java ``PTBTokenizer -preserveLines -lowerCase`` tokens of ``text`` (see the module docstring), before
    pycocoevalcap drops punctuation. A sentence-final abbreviation keeps its period and is followed by a ``.`` token
    (``"prior CT. No"`` -> ``prior ct. . no``), as the lexer does."""
    pieces = text.split()
    out: list[str] = []
    for i, piece in enumerate(pieces):
        tokens, last = _scan_piece(piece)
        sentence_final = (last == "abbrev1" and _sentence_end(pieces, i)) or (
            last == "acronym" and i + 1 < len(pieces) and bool(_ACRONYM_SENTENCE_END.match(pieces[i + 1]))
        )
        if sentence_final:
            tokens = (*tokens, ".")
        elif (
            # "No. 5": the period of a number abbreviation is kept only when a number follows
            len(tokens) >= 2 and tokens[-1] == "." and f"{tokens[-2]}." in _ABNUM
            and i + 1 < len(pieces) and pieces[i + 1][:1].isdigit()
        ):
            tokens = (*tokens[:-2], f"{tokens[-2]}.")
        out.extend(tokens)
    return out


def ptb_tokenize(text: str) -> list[str]:
    """``text`` tokenised as pycocoevalcap's ``PTBTokenizer`` does: Stanford PTB tokens, lowercased, with the tokens
    of :data:`PTB_PUNCTUATIONS` dropped. ``"The heart is normal (stable)."`` -> ``["the", "heart", "is", "normal",
    "-lrb-", "stable", "-rrb-"]`` (see the module docstring for the rules and the ``-lrb-`` quirk)."""
    return [t for t in ptb_tokenize_keep_punctuation(text) if t not in PTB_PUNCTUATIONS]


# --- R2Gen (modules/tokenizers.py, clean_report_iu_xray), verbatim in effect
_R2GEN_SENT_CHARS = re.compile(r"[.,?;*!%^&_+():-\[\]{}]")  # sic: ":-\[" is the range ':' .. '[' (also <=>?@)


def _r2gen_sentences(report: str) -> list[str]:
    text = report
    for _ in range(3):
        text = text.replace("..", ".")
    text = text.replace("1. ", "").replace(". 2. ", ". ").replace(". 3. ", ". ").replace(". 4. ", ". ")
    text = text.replace(". 5. ", ". ").replace(" 2. ", ". ").replace(" 3. ", ". ").replace(" 4. ", ". ")
    text = text.replace(" 5. ", ". ")
    return text.strip().lower().split(". ")


def _r2gen_clean_sentence(sentence: str) -> str:
    sentence = sentence.replace('"', "").replace("/", "").replace("\\", "").replace("'", "").strip().lower()
    return _R2GEN_SENT_CHARS.sub("", sentence)


def r2gen_clean(report: str) -> str:
    """R2Gen's ``clean_report_iu_xray``: lowercase, numbered-list markers and most punctuation removed, sentences
    joined with `` . `` and ending in `` .``. ``"The heart is normal. Lungs are clear."`` ->
    ``"the heart is normal . lungs are clear ."``. (R2Gen's filter ``!= []`` never drops a sentence, since a
    cleaned sentence is a string; an empty one stays, as there.)"""
    return " . ".join(_r2gen_clean_sentence(s) for s in _r2gen_sentences(report)) + " ."


def r2gen_tokenize(text: str) -> list[str]:
    """:func:`r2gen_clean` split on whitespace; the `` . `` separators stay tokens, as in R2Gen's scores."""
    return r2gen_clean(text).split()


def whitespace_tokenize(text: str) -> list[str]:
    """``text.split()``: for text already tokenised."""
    return text.split()


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    "ptb": ptb_tokenize,
    "r2gen": r2gen_tokenize,
    "whitespace": whitespace_tokenize,
}


# pycocoevalcap's Rouge splits its input at single spaces (``split(" ")``) where Bleu and Cider use ``split()``: the
# scorer input of each convention, split that way, gives the ROUGE-L tokens
_ROUGE_SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "r2gen": lambda text: r2gen_clean(text).split(" "),
    "whitespace": lambda text: text.split(" "),
}


def get_rouge_splitter(tokenizer: str | Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """The tokens pycocoevalcap's ``Rouge`` sees for ``tokenizer``'s scorer input: the input split at single spaces,
    so a double space in R2Gen-cleaned or pre-tokenised text is an empty token there and here. For ``ptb`` and
    callables the input is the tokens joined with single spaces, so these are the tokens (an empty text is one empty
    token)."""
    if isinstance(tokenizer, str) and tokenizer in _ROUGE_SPLITTERS:
        return _ROUGE_SPLITTERS[tokenizer]
    tok = get_tokenizer(tokenizer)
    return lambda text: " ".join(tok(text)).split(" ")


def get_tokenizer(tokenizer: str | Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """A tokenizer by name (``ptb``, ``r2gen``, ``whitespace``) or the callable itself."""
    if callable(tokenizer):
        return tokenizer
    try:
        return TOKENIZERS[tokenizer]
    except KeyError:
        raise ValueError(f"unknown tokenizer {tokenizer!r}: expected one of {', '.join(TOKENIZERS)} or a callable")
