"""Sentiment and language of a text, offline, with models shipped inside their packages.

* ``sentiment(text)``: VADER (``vaderSentiment``), a lexicon and rule based analyser made
  for short social-media and chat text: its lexicon ships in the package, it needs no
  model download, and it scores negation ("not good"), intensifiers ("very"), capitals,
  "!" and emoticons/emoji. Its score is VADER's ``compound`` (-1 to 1); the label is
  ``positive`` from 0.05, ``negative`` from -0.05 down, else ``neutral`` (VADER's own
  thresholds). It reads English (other languages mostly score neutral). A text over
  ``SENTENCE_CHARS`` is scored sentence by sentence and its score is the mean of its
  sentences' (VADER's advice for paragraphs; its cost grows with the square of the words
  read at once). ``None`` when the text has no letter.
* ``language(text)``: ``py3langid`` (a maintained fork of langid.py: a naive Bayes model
  over byte n-grams, 97 languages, shipped as ``data/model.npz.xz`` in the package), with
  normalised probabilities (calibrated by text length since py3langid 0.4). The answer is
  the ISO 639-1 code of the most likely language (ISO 639-3 for the few of its languages
  that have no two-letter code, e.g. ``kab``; ``yue`` is ``zh``, ``arz`` is ``ar``), or
  ``None`` when the text is too short to tell, by this rule: fewer than ``MIN_LETTERS``
  letters, or a probability of the best language under ``MIN_LANGUAGE_CONFIDENCE``.
  Measured on short chat turns ("hello there", "bye", "hallo", "hola", "perfect"), every
  wrong answer had a probability under 0.45 and most right answers of three words or more
  were above 0.5: below the bar, no answer is better than a wrong one.

Only the first ``MAX_SENTIMENT_CHARS`` / ``MAX_LANGUAGE_CHARS`` characters are read, so that
a pasted document costs little more than a chat turn.

Both models are loaded once, lazily, on first use (VADER ~10 ms; py3langid ~0.8 s and
~60 MB, see below), under a lock; calls are thread-safe afterwards (neither library
mutates shared state while scoring). Nothing is downloaded.

Cost per call, warm, measured on the project's 2-core machine while other work ran on it
(CPU time, best of 7 x 1000 calls; they vary by up to 2x with the load): a 20-word English
input takes 40-60 µs for ``sentiment`` and 30-60 µs for ``language`` (together 70-120 µs);
a 500-character input ~250-500 µs and ~80-130 µs. py3langid keeps its feature table in
float16, which numpy converts element by element and multiplies without BLAS; the
identifier here holds it in float32 instead (twice the memory, the same numbers, the
scoring step ~4x faster: ~65 µs -> ~35 µs per 20 words).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from phospho_otel.model.analysis import Sentiment

__all__ = [
    "MAX_LANGUAGE_CHARS",
    "MAX_SENTIMENT_CHARS",
    "MIN_LANGUAGE_CONFIDENCE",
    "MIN_LETTERS",
    "NEGATIVE_THRESHOLD",
    "POSITIVE_THRESHOLD",
    "SENTENCE_CHARS",
    "language",
    "language_with_confidence",
    "sentiment",
]

POSITIVE_THRESHOLD = 0.05
"""``compound`` score from which a text is ``positive``."""
NEGATIVE_THRESHOLD = -0.05
"""``compound`` score from which (down) a text is ``negative``."""
MIN_LETTERS = 3
"""Fewer letters than this: no language."""
MIN_LANGUAGE_CONFIDENCE = 0.5
"""Normalised probability the best language needs for an answer."""
MAX_SENTIMENT_CHARS = 500
SENTENCE_CHARS = 150
"""A text longer than this is scored sentence by sentence (VADER's cost grows with the
square of the words it reads at once)."""
MAX_LANGUAGE_CHARS = 300

_ISO_639_1 = {
    # py3langid's ISO 639-3 labels of a variety of a language that has a two-letter code
    "arz": "ar", "ary": "ar", "yue": "zh", "wuu": "zh", "uzs": "uz", "sdh": "ku",
    "kik": "ki", "gug": "gn", "fuv": "ff", "hbo": "he", "grc": "el",
}
"""Labels without a two-letter code (``ace``, ``kab``, ``vec``...) stay as they are
(ISO 639-3); ``zxx`` (no linguistic content) is no language."""
_NO_LANGUAGE = "zxx"

_lock = threading.Lock()
_analyser: Any = None
_identifier: Any = None


def _has_letter(text: str) -> bool:
    return any(c.isalpha() for c in text)


def _letter_count(text: str, enough: int) -> int:
    """Letters in ``text``, counting no further than ``enough``."""
    n = 0
    for c in text:
        if c.isalpha():
            n += 1
            if n >= enough:
                break
    return n


def _get_analyser() -> Any:
    global _analyser
    if _analyser is None:
        with _lock:
            if _analyser is None:
                from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]
                    SentimentIntensityAnalyzer,
                )

                _analyser = SentimentIntensityAnalyzer()
    return _analyser


def _get_identifier() -> Any:
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                _identifier = _load_identifier()
    return _identifier


def _load_identifier() -> Any:
    import numpy as np
    from py3langid.langid import (  # type: ignore[import-untyped]
        MODEL_FILE,
        LanguageIdentifier,
    )

    class _Identifier(LanguageIdentifier):  # type: ignore[misc]
        """py3langid's identifier with its feature table in float32 instead of float16
        (~60 MB instead of ~30 MB): numpy converts float16 element by element and
        multiplies it without BLAS, ~4x slower per call. The same numbers."""

        __slots__ = ()

        def __init__(self, nb_ptc: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(np.asarray(nb_ptc, dtype=np.float32), *args, **kwargs)

    if hasattr(LanguageIdentifier, "from_model_file"):  # py3langid >= 0.4
        return _Identifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _Identifier.from_pickled_model(MODEL_FILE, norm_probs=True)  # py3langid 0.3


_SENTENCE_END = re.compile(r"(?<=[.!?\n])\s+")


def _sentences(text: str) -> list[str]:
    """``text`` cut after each ``.``, ``!``, ``?`` or line break followed by whitespace,
    and any part still over ``SENTENCE_CHARS`` at its last space before that length."""
    parts: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > SENTENCE_CHARS:
            cut = sentence.rfind(" ", 0, SENTENCE_CHARS)
            if cut <= 0:
                cut = SENTENCE_CHARS
            parts.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if sentence:
            parts.append(sentence)
    return parts


def sentiment(text: str | None) -> Sentiment | None:
    """The sentiment of ``text`` (VADER's compound score and its label); None when the
    text has no letter."""
    if not text:
        return None
    text = text[:MAX_SENTIMENT_CHARS]
    if not _has_letter(text):
        return None
    analyser = _get_analyser()
    if len(text) <= SENTENCE_CHARS:
        score = float(analyser.polarity_scores(text)["compound"])
    else:
        scores = [float(analyser.polarity_scores(part)["compound"])
                  for part in _sentences(text) if _has_letter(part)]
        score = sum(scores) / len(scores)
    if score >= POSITIVE_THRESHOLD:
        label = "positive"
    elif score <= NEGATIVE_THRESHOLD:
        label = "negative"
    else:
        label = "neutral"
    return Sentiment(score, label)


def language_with_confidence(text: str | None) -> tuple[str, float] | None:
    """The most likely language of ``text`` and its normalised probability, whatever that
    probability; None under ``MIN_LETTERS`` letters or for no linguistic content."""
    if not text:
        return None
    text = text[:MAX_LANGUAGE_CHARS]
    if _letter_count(text, MIN_LETTERS) < MIN_LETTERS:
        return None
    code, confidence = _get_identifier().classify(text)
    if code == _NO_LANGUAGE:
        return None
    return _ISO_639_1.get(code, str(code)), float(confidence)


def language(text: str | None) -> str | None:
    """The ISO 639-1 code of the language of ``text``; None when too short to tell (fewer
    than ``MIN_LETTERS`` letters, or a best probability under
    ``MIN_LANGUAGE_CONFIDENCE``)."""
    found = language_with_confidence(text)
    if found is None or found[1] < MIN_LANGUAGE_CONFIDENCE:
        return None
    return found[0]
