"""Word handling shared by retrieval, the offline responder and groundedness, plus a
deterministic token estimator.

Everything here is pure and deterministic: the same text gives the same terms and the same
token count on every machine, so figures written to the ledger can be recomputed later.

The token estimator exists because usage must be recorded even when a provider reports none
(some OpenAI-compatible servers omit ``usage``; the offline responder has no tokenizer).
``tiktoken`` is not used on purpose: it downloads its vocabulary at run time.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable

# Letters and digits only: "_" is a word character for ``\w`` but a separator for FTS5's
# unicode61 tokenizer, and we want both views of a word to agree.
_WORD = re.compile(r"[^\W_]+")

# A common English stop-word list. Only query-side terms and overlap measures drop them;
# the full-text index keeps every word, so phrase-like passages stay searchable.
_STOP_WORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just let me more most my myself no nor not now of off on once
    only or other our ours ourselves out over own same shall she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves s t d ll m re ve y also may might must
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_WORDS_TEXT.split())


def normalise(text: str) -> str:
    """NFKC then casefold: full-width forms, ligatures and case compare equal."""
    return unicodedata.normalize("NFKC", text).casefold()


def words(text: str) -> list[str]:
    """The words of ``text`` (letters/digits runs), normalised, in order."""
    return _WORD.findall(normalise(text))


def stem(word: str) -> str:
    """A light, deterministic English suffix stripper (plurals, -ing, -ed).

    Deliberately weaker than Porter: it only has to make "refunds"/"refund" and
    "processing"/"processed" meet when we compare a question, an answer and passages.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) >= 5:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            # "running" -> "runn" -> "run"; keep "ll"/"ss" ("billed", "processed").
            if base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]
            return base
    return word


def content_terms(text: str) -> list[str]:
    """Stemmed words of ``text`` without stop words, in order (duplicates kept)."""
    return [stem(w) for w in words(text) if w not in STOP_WORDS]


def term_set(text: str) -> frozenset[str]:
    """Distinct content terms; falls back to all words when the text is only stop words."""
    terms = content_terms(text)
    if not terms:
        terms = [stem(w) for w in words(text)]
    return frozenset(terms)


# --- token estimation ---------------------------------------------------------------------

# Scripts written without spaces: BPE vocabularies spend about one token per character.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_PIECE = re.compile(r"\d+|[^\W\d_]+|\S", re.UNICODE)

# Per-message framing overhead used by OpenAI's chat format (role and separators).
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_PRIMING_TOKENS = 3


def estimate_tokens(text: str) -> int:
    """Estimate how many tokens a BPE tokenizer (cl100k/o200k family) would produce.

    The rule, applied to each piece of the text (whitespace is free, as BPE glues the
    leading space onto the next word):

    * a run of digits costs ceil(len / 3) (BPE vocabularies store numbers in 3-digit groups);
    * a run of ASCII letters costs ceil(len / 6): common English words are one token,
      long or rare ones are split;
    * a CJK / kana / hangul character costs 1;
    * a run of other letters costs ceil(utf-8 bytes / 4);
    * any other visible character (punctuation, symbols, emoji) costs 1.

    It is an estimate, recorded with ``usage_source="estimated"``, never a bill.
    """
    total = 0
    for piece in _PIECE.findall(text):
        if piece.isdigit():
            total += math.ceil(len(piece) / 3)
        elif piece.isascii() and piece.isalpha():
            total += math.ceil(len(piece) / 6)
        elif piece[0].isalpha():
            cjk = len(_CJK.findall(piece))
            rest = _CJK.sub("", piece)
            total += cjk + math.ceil(len(rest.encode("utf-8")) / 4)
        else:
            total += 1
    return total


def estimate_chat_tokens(contents: Iterable[str]) -> int:
    """Estimate the prompt tokens of a chat request made of these message contents."""
    return REPLY_PRIMING_TOKENS + sum(
        estimate_tokens(c) + MESSAGE_OVERHEAD_TOKENS for c in contents
    )


# --- sentences ----------------------------------------------------------------------------

_BLOCK_BREAK = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)]|#{1,6})\s)")
_HEADING_LINE = re.compile(r"(?m)^(\s*#{1,6}\s[^\n]*)\n")
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*\s+")
_ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "etc", "vs", "cf", "al", "approx", "dr", "mr", "mrs", "ms", "prof", "st"}
    | {"no", "fig", "sec", "inc", "ltd", "co", "jr", "sr"}
)


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences, deterministically and without a language model.

    Breaks at blank lines and list items, and after ``.``/``!``/``?`` when the next sentence
    starts with a capital, a digit or an opening quote or bracket, unless the word before the
    dot is a common abbreviation ("e.g.", "Dr.") or a single letter ("J. Smith").
    """
    sentences: list[str] = []
    # A Markdown heading line is a block of its own, not the start of its first sentence.
    for block in _BLOCK_BREAK.split(_HEADING_LINE.sub("\\1\n\n", text)):
        start = 0
        for match in _SENTENCE_END.finditer(block):
            nxt = block[match.end() : match.end() + 1]
            if not nxt or not (nxt.isupper() or nxt.isdigit() or nxt in "\"'“‘([*-•"):
                continue
            before = block[start : match.start()].rsplit(None, 1)
            last_word = before[-1].casefold().rstrip(".") if before else ""
            if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
                continue
            sentences.append(block[start : match.end()].strip())
            start = match.end()
        sentences.append(block[start:].strip())
    return [" ".join(s.split()) for s in sentences if s.strip()]
