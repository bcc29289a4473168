"""``compound(analyser, text)``: VADER's compound score, the number
``vaderSentiment.SentimentIntensityAnalyzer(...).polarity_scores(text)["compound"]`` gives,
computed the same way in fewer steps.

The library's ``polarity_scores`` is most of the cost of a task's sentiment. It copies the
text a character at a time to replace emoji, lowercases the text's words again for each
rule it applies to each sentiment word (three times for the negation rules, once more for
the idioms), and computes the ``pos``/``neu``/``neg`` shares that the insights do not use.
This function applies the same rules, in the same order, with the same arithmetic, to the
words lowercased once:

1. each emoji is replaced by its description (only when the text has one: one set test);
2. the words are the text split at whitespace, each stripped of leading and trailing
   punctuation unless that leaves two characters or fewer (emoticons);
3. each word in the lexicon gets its valence, changed by the words before it (boosters and
   dampeners, negations, "no", "least", ALL CAPS, the special idioms), each other word 0;
   a text without a lexicon word scores 0 at once;
4. "but" halves what comes before it and multiplies what follows by 1.5 (the library's own
   function, quirks included);
5. "!" and "?" add emphasis; the sum is normalised to -1..1 and rounded to 4 places.

The analyser's ``lexicon`` and ``emojis`` are read, never changed, so one analyser serves
every thread. ``tests/insights/test_vader.py`` checks that the scores are the library's,
exactly, on the labelled data sets and on thousands of generated texts that exercise
every rule.
"""

from __future__ import annotations

import string
from typing import Any

from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    normalize,
)

__all__ = ["compound"]

_PUNCTUATION = string.punctuation
_NEGATE = frozenset(NEGATE)
_OR_NOR = ("or", "nor")
_but_check = SentimentIntensityAnalyzer._but_check

_emoji_chars: dict[int, tuple[dict[str, str], frozenset[str]]] = {}
"""The one-character keys of each analyser's ``emojis`` (by the dict's id, with the dict):
the only ones the library's character loop can replace."""


def _emoji_keys(emojis: dict[str, str]) -> frozenset[str]:
    cached = _emoji_chars.get(id(emojis))
    if cached is None or cached[0] is not emojis:
        cached = (emojis, frozenset(k for k in emojis if len(k) == 1))
        _emoji_chars[id(emojis)] = cached
    return cached[1]


def _replace_emoji(text: str, emojis: dict[str, str]) -> str:
    """The library's emoji loop, as it is."""
    out = ""
    prev_space = True
    for ch in text:
        if ch in emojis:
            if not prev_space:
                out += " "
            out += emojis[ch]
            prev_space = False
        else:
            out += ch
            prev_space = ch == " "
    return out


def _negated(word: str) -> bool:
    """``vaderSentiment.negated([word])`` for one lowercased word."""
    return word in _NEGATE or "n't" in word


def _scalar(word: str, lower: str, valence: float, is_cap_diff: bool) -> float:
    """``vaderSentiment.scalar_inc_dec``, with the word's lowercase given."""
    scalar = 0.0
    if lower in BOOSTER_DICT:
        scalar = BOOSTER_DICT[lower]
        if valence < 0:
            scalar *= -1
        if word.isupper() and is_cap_diff:
            if valence > 0:
                scalar += C_INCR
            else:
                scalar -= C_INCR
    return scalar


def _negation(valence: float, low: list[str], start_i: int, i: int) -> float:
    """``SentimentIntensityAnalyzer._negation_check`` over the lowercased words."""
    if start_i == 0:
        if _negated(low[i - 1]):
            valence = valence * N_SCALAR
    elif start_i == 1:
        if low[i - 2] == "never" and (low[i - 1] == "so" or low[i - 1] == "this"):
            valence = valence * 1.25
        elif low[i - 2] == "without" and low[i - 1] == "doubt":
            pass
        elif _negated(low[i - 2]):
            valence = valence * N_SCALAR
    else:
        # the library's precedence: (A and B) or C
        if ((low[i - 3] == "never" and (low[i - 2] == "so" or low[i - 2] == "this"))
                or (low[i - 1] == "so" or low[i - 1] == "this")):
            valence = valence * 1.25
        elif low[i - 3] == "without" and (low[i - 2] == "doubt" or low[i - 1] == "doubt"):
            pass
        elif _negated(low[i - 3]):
            valence = valence * N_SCALAR
    return valence


def _idioms(valence: float, low: list[str], i: int) -> float:
    """``SentimentIntensityAnalyzer._special_idioms_check`` over the lowercased words
    (``i`` >= 3)."""
    w3, w2, w1, w0 = low[i - 3], low[i - 2], low[i - 1], low[i]
    onezero = f"{w1} {w0}"
    twoonezero = f"{w2} {w1} {w0}"
    twoone = f"{w2} {w1}"
    threetwoone = f"{w3} {w2} {w1}"
    threetwo = f"{w3} {w2}"
    for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
        if seq in SPECIAL_CASES:
            valence = SPECIAL_CASES[seq]
            break
    n = len(low)
    if n - 1 > i:
        zeroone = f"{w0} {low[i + 1]}"
        if zeroone in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroone]
    if n - 1 > i + 1:
        zeroonetwo = f"{w0} {low[i + 1]} {low[i + 2]}"
        if zeroonetwo in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroonetwo]
    for n_gram in (threetwoone, threetwo, twoone):
        if n_gram in BOOSTER_DICT:
            valence = valence + BOOSTER_DICT[n_gram]
    return valence


def _least(valence: float, low: list[str], lexicon: dict[str, float], i: int) -> float:
    """``SentimentIntensityAnalyzer._least_check`` over the lowercased words."""
    if i > 1 and low[i - 1] not in lexicon and low[i - 1] == "least":
        if low[i - 2] != "at" and low[i - 2] != "very":
            valence = valence * N_SCALAR
    elif i > 0 and low[i - 1] not in lexicon and low[i - 1] == "least":
        valence = valence * N_SCALAR
    return valence


def compound(analyser: Any, text: str) -> float:
    """``analyser.polarity_scores(text)["compound"]`` (``analyser`` a
    ``vaderSentiment.SentimentIntensityAnalyzer``, its ``lexicon`` possibly changed)."""
    lexicon: dict[str, float] = analyser.lexicon
    emojis: dict[str, str] = analyser.emojis
    if not text.isascii() and not _emoji_keys(emojis).isdisjoint(text):
        text = _replace_emoji(text, emojis)
    text = text.strip()
    words = []
    for token in text.split():
        stripped = token.strip(_PUNCTUATION)
        words.append(token if len(stripped) <= 2 else stripped)
    low = [w.lower() for w in words]
    if lexicon.keys().isdisjoint(low):
        return 0.0  # every valence is 0: the sum, and so the score, is 0
    n = len(words)
    caps = sum(1 for w in words if w.isupper())
    is_cap_diff = 0 < n - caps < n
    sentiments: list[float] = []
    for i in range(n):
        lower = low[i]
        if lower in BOOSTER_DICT:
            sentiments.append(0)
            continue
        if i < n - 1 and lower == "kind" and low[i + 1] == "of":
            sentiments.append(0)
            continue
        if lower not in lexicon:
            sentiments.append(0)
            continue
        valence = lexicon[lower]
        if lower == "no" and i != n - 1 and low[i + 1] in lexicon:
            valence = 0.0
        if ((i > 0 and low[i - 1] == "no") or (i > 1 and low[i - 2] == "no")
                or (i > 2 and low[i - 3] == "no" and low[i - 1] in _OR_NOR)):
            valence = lexicon[lower] * N_SCALAR
        if words[i].isupper() and is_cap_diff:
            if valence > 0:
                valence += C_INCR
            else:
                valence -= C_INCR
        for start_i in range(3):
            j = i - (start_i + 1)
            if i > start_i and low[j] not in lexicon:
                s = _scalar(words[j], low[j], valence, is_cap_diff)
                if start_i == 1 and s != 0:
                    s = s * 0.95
                if start_i == 2 and s != 0:
                    s = s * 0.9
                valence = valence + s
                valence = _negation(valence, low, start_i, i)
                if start_i == 2:
                    valence = _idioms(valence, low, i)
        valence = _least(valence, low, lexicon, i)
        sentiments.append(valence)
    if "but" in low:
        sentiments = _but_check(words, sentiments)
    if not sentiments:
        return 0.0
    sum_s = float(sum(sentiments))
    ep_count = min(text.count("!"), 4)
    qm_count = text.count("?")
    qm = 0.0 if qm_count <= 1 else qm_count * 0.18 if qm_count <= 3 else 0.96
    emphasis = ep_count * 0.292 + qm
    if sum_s > 0:
        sum_s += emphasis
    elif sum_s < 0:
        sum_s -= emphasis
    return round(float(normalize(sum_s)), 4)
