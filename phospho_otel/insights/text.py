"""Sentiment and language of a text, offline, with models shipped inside their packages.

* ``sentiment(text)``: VADER (``vaderSentiment``), a lexicon and rule based analyser made
  for short social-media and chat text: its lexicon ships in the package, it needs no
  model download, and it scores negation ("not good"), intensifiers ("very"), capitals,
  "!" and emoticons/emoji. Its score is VADER's ``compound`` (-1 to 1); the label is
  ``positive`` from 0.05, ``negative`` from -0.05 down, else ``neutral`` (VADER's own
  thresholds). VADER reads English; four documented adjustments, each measured on the
  labelled set (``benchmarks/bench_insights_quality.py``; macro F1 0.61 -> 0.78):

  - ``MULTILINGUAL_LEXICON``: the common words of thanks, praise and complaint of French,
    Spanish, German, Italian and Portuguese ("merci", "gracias", "danke", "grazie",
    "obrigado", "parfait", "nul"...), with the valence of their English counterparts;
  - a question (ending with "?") reads ``PROBLEM_WORDS`` neutral ("how do I kill a
    process?", "the tests that failed?") and its score is shrunk by
    ``QUESTION_DEAD_ZONE`` (one mild word, "is it safe?", is not a feeling);
    ``POLITENESS_WORDS`` ("please") are neutral everywhere;
  - in a text the identifier does not read as English, ``FALSE_FRIENDS`` are neutral
    (German "die" = the, "war" = was; Spanish "sin" = without);
  - thanks said with a complaint ("thanks for nothing") is sarcasm: negative.

  A text over ``SENTENCE_CHARS`` is scored sentence by sentence and its score is the mean
  of its sentences' (VADER's advice for paragraphs; its cost grows with the square of the
  words read at once). ``None`` when the text has no letter.
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
  ``pycld2`` (CLD2, C, ~5 µs a call against py3langid's ~40 µs, no load time) was measured
  on the labelled set and not taken: with its reliability flag it answers more (0.92 of
  the inputs right against 0.86) but is wrong more often when it answers (6 of 285
  against 1 of 262: short French thanks read as English, Italian with French dish names
  read as French or Norwegian); with a length bar as well it is below py3langid on both.

Only the first ``MAX_SENTIMENT_CHARS`` / ``MAX_LANGUAGE_CHARS`` characters are read, so that
a pasted document costs little more than a chat turn.

Both models are loaded once, lazily, on first use (VADER ~10 ms; py3langid ~0.8 s and
~60 MB, see below), under a lock; calls are thread-safe afterwards (neither library
mutates shared state while scoring). Nothing is downloaded.

Cost per call, warm, measured on the project's 2-core machine while other work ran on it
(CPU time, best of 7 x 1000 calls; they vary by up to 2x with the load): a 20-word English
input takes 40-60 µs for ``sentiment`` (the adjustments add ~2 µs: one search for false
friends and sarcasm words; ~40 µs more when a false friend makes it ask the language) and
30-60 µs for ``language`` (together 70-120 µs);
a 500-character input ~250-500 µs and ~80-130 µs. py3langid keeps its feature table in
float16, which numpy converts element by element and multiplies without BLAS; the
identifier here holds it in float32 instead (twice the memory, the same numbers, the
scoring step ~4x faster: ~65 µs -> ~35 µs per 20 words).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from phospho_otel.model.analysis import Sentiment

if TYPE_CHECKING:
    from phospho_otel.insights.langid_batch import BatchIdentifier

__all__ = [
    "FALSE_FRIENDS",
    "MAX_LANGUAGE_CHARS",
    "MAX_SENTIMENT_CHARS",
    "MIN_LANGUAGE_CONFIDENCE",
    "MIN_LETTERS",
    "MULTILINGUAL_LEXICON",
    "NEGATIVE_THRESHOLD",
    "POLITENESS_WORDS",
    "POSITIVE_THRESHOLD",
    "PROBLEM_WORDS",
    "QUESTION_DEAD_ZONE",
    "SARCASM_SCORE",
    "SENTENCE_CHARS",
    "language",
    "language_with_confidence",
    "languages_with_confidence",
    "sentiment",
    "sentiments_and_languages",
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

MULTILINGUAL_LEXICON: dict[str, float] = {
    # French
    "merci": 1.9, "parfait": 2.7, "parfaite": 2.7, "génial": 3.1, "géniale": 3.1,
    "excellent": 2.7, "excellente": 2.7, "magnifique": 3.0, "formidable": 2.7,
    "délicieux": 2.7, "délicieuse": 2.7, "bravo": 2.3, "ravi": 2.4, "ravie": 2.4,
    "nul": -2.0, "nulle": -2.0, "inutile": -1.8, "énervant": -1.9, "agaçant": -1.7,
    "pénible": -1.7, "déçu": -1.9, "déçue": -1.9, "dommage": -1.2, "merde": -2.5,
    "chiant": -2.0, "horrible": -2.5, "inadmissible": -2.0, "erreur": -1.7,
    # Spanish
    "gracias": 1.9, "perfecto": 2.7, "perfecta": 2.7, "genial": 3.1, "excelente": 2.7,
    "estupendo": 2.7, "fantástico": 2.6, "maravilloso": 2.9, "encantado": 2.4,
    "encantada": 2.4, "inútil": -1.8, "molesto": -1.7, "decepcionado": -1.9,
    "decepcionada": -1.9, "pésimo": -2.5, "mierda": -2.5, "fatal": -2.5,
    "fallo": -1.7,
    # German
    "danke": 1.9, "dankeschön": 1.9, "perfekt": 2.7, "toll": 2.5, "prima": 2.0,
    "wunderbar": 2.9, "hervorragend": 2.7, "ausgezeichnet": 2.7, "gut": 1.9,
    "schlecht": -2.5, "nutzlos": -1.8, "ärgerlich": -1.7, "nervig": -1.7,
    "enttäuscht": -1.9, "schade": -1.2, "scheiße": -2.5, "mist": -1.5,
    "fehler": -1.7,
    # Italian
    "grazie": 1.9, "perfetto": 2.7, "perfetta": 2.7, "ottimo": 2.7, "ottima": 2.7,
    "fantastico": 2.6, "bellissimo": 2.9, "pessimo": -2.5,
    "schifo": -2.5, "deluso": -1.9, "delusa": -1.9, "errore": -1.7,
    # Portuguese
    "obrigado": 1.9, "obrigada": 1.9, "perfeito": 2.7, "perfeita": 2.7, "ótimo": 2.7,
    "ótima": 2.7, "maravilhoso": 2.9, "péssimo": -2.5, "chato": -1.7, "erro": -1.7,
}
"""Words of French, Spanish, German, Italian and Portuguese added to VADER's (English)
lexicon, each with the valence of its English counterpart on VADER's -4..4 scale
("merci" as "thanks" 1.9, "parfait" as "perfect" 2.7, "nul" as "lame" -2.0): the common
words of thanks, praise and complaint in chat, without which "merci", "gracias",
"danke", "grazie", "obrigado" score neutral. Only words that are not also common English
words with another meaning."""

PROBLEM_WORDS = frozenset({
    "kill", "killed", "killing", "kills", "fail", "failed", "fails", "failing", "failure",
    "failures", "error", "errors", "stuck", "conflict", "conflicts", "dead", "crash",
    "crashed", "crashes", "lose", "lost", "losing", "cancel", "cancelled", "canceled",
    "cancelling", "problem", "problems", "wrong", "false", "ignore", "ignored", "stop",
    "stopped", "block", "blocked", "reject", "rejected", "denied", "missing", "warning",
    "no", "erreur", "fallo", "fehler", "errore", "erro",
})
"""Words VADER scores negative that name a technical or practical problem rather than a
feeling ("How do I kill a process stuck on port 8000?", "rerun the tests that failed?",
"my flight got cancelled, what are my rights?"): in a question they are read neutral."""

FALSE_FRIENDS = frozenset({"die", "war", "hell", "gift", "kind", "sin", "favor"})
"""English lexicon words that are common words of another language with another meaning
(German "die" = the, "war" = was, "hell" = bright, "Gift" = poison, "Kind" = child;
Spanish "sin" = without, "por favor" = please): in a text of another language (the
language identifier's best guess, asked only when one of these words is there) they are
read neutral."""
QUESTION_DEAD_ZONE = 0.5
"""A question's compound score is shrunk towards 0 by this much (``0.7`` -> ``0.4``,
``0.5`` or less -> ``0``, ``1`` stays ``1``): a question asks for something, and the words
it asks with ("is it safe", "is that true", "a good way", "what are the chances": one
mild word scores 0.2 to 0.5 alone) are seldom the user's feeling; a strongly worded one
("why is this so terrible and awful?") stays positive or negative."""
POLITENESS_WORDS = frozenset({"please"})
"""Read neutral: politeness is not a feeling ("Eurostar please, one adult")."""
_SARCASM_WORDS = ("useless", "pointless", "worthless", "unhelpful", "nothing")
_SARCASM = re.compile(
    r"\bthanks?\s+(?:a\s+lot\s+)?for\s+nothing\b|\bno\s+thanks\s+to\b"
    r"|\b(?:thanks|thank\s+you|great|perfect|wonderful)\b.*\b(?:useless|pointless|worthless|unhelpful)\b"
    r"|\b(?:useless|pointless|worthless|unhelpful)\b.*\b(?:thanks|thank\s+you)\b", re.DOTALL)
"""Thanks said with a complaint ("thanks for nothing", "Great, another useless answer.
Thanks a lot."): sarcasm, scored negative (at most ``-SARCASM_SCORE``). The same rule as
the ``thanks`` event's ``unless`` in ``defaults.toml``."""
SARCASM_SCORE = 0.5


class _Analysers(NamedTuple):
    """VADER with ``MULTILINGUAL_LEXICON``; without ``PROBLEM_WORDS`` (questions); without
    ``FALSE_FRIENDS`` (other languages); without both."""

    plain: Any
    question: Any
    foreign: Any
    foreign_question: Any
    compound: Callable[[Any, str], float]
    """``vader.compound``: ``analyser.polarity_scores(text)["compound"]``, faster (its
    import, with VADER's, waits for the first use)."""


_lock = threading.Lock()
_analyser: _Analysers | None = None
_identifier: Any = None
_batch: BatchIdentifier | None = None


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


def _get_analyser() -> _Analysers:
    global _analyser
    if _analyser is None:
        with _lock:
            if _analyser is None:
                _analyser = _load_analysers()
    return _analyser


def _load_analysers() -> _Analysers:
    import copy

    from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]
        SentimentIntensityAnalyzer,
    )

    from phospho_otel.insights.vader import compound

    plain = SentimentIntensityAnalyzer()
    plain.lexicon.update(MULTILINGUAL_LEXICON)
    for word in POLITENESS_WORDS:
        plain.lexicon.pop(word, None)
    question = copy.copy(plain)
    question.lexicon = {w: v for w, v in plain.lexicon.items() if w not in PROBLEM_WORDS}
    foreign = copy.copy(plain)
    foreign.lexicon = {w: v for w, v in plain.lexicon.items() if w not in FALSE_FRIENDS}
    foreign_question = copy.copy(plain)
    foreign_question.lexicon = {w: v for w, v in question.lexicon.items()
                                if w not in FALSE_FRIENDS}
    return _Analysers(plain, question, foreign, foreign_question, compound)


def _get_identifier() -> Any:
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                _identifier = _load_identifier()
    return _identifier


def _get_batch() -> BatchIdentifier:
    global _batch
    if _batch is None:
        from phospho_otel.insights.langid_batch import BatchIdentifier

        identifier = _get_identifier()
        with _lock:
            if _batch is None:
                _batch = BatchIdentifier(identifier)
    return _batch


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


_SCREEN = re.compile(r"\b(?:" + "|".join(sorted(FALSE_FRIENDS) + list(_SARCASM_WORDS))
                     + r")\b")
"""Most texts have no false friend and no sarcasm word: substring tests tell (~0.5 µs),
and this search confirms the whole words."""
_SCREEN_WORDS = (*sorted(FALSE_FRIENDS), *_SARCASM_WORDS)
_NO_WORDS: set[str] = set()


def _is_question(text: str) -> bool:
    return text.rstrip().endswith("?")


def _compound(analysers: _Analysers, text: str, foreign: bool) -> float:
    question = _is_question(text)
    if foreign:
        analyser = analysers.foreign_question if question else analysers.foreign
    else:
        analyser = analysers.question if question else analysers.plain
    score = analysers.compound(analyser, text)
    if not question:
        return score
    shrunk = max(abs(score) - QUESTION_DEAD_ZONE, 0.0) / (1.0 - QUESTION_DEAD_ZONE)
    return shrunk if score >= 0 else -shrunk


_Language = tuple[str, float] | None
"""A language and its probability (``language_with_confidence``), or None."""


def _foreign(text: str, words: set[str], known: _Language | object) -> bool:
    """Whether ``text`` (with ``words`` of ``_SCREEN``) has a ``FALSE_FRIENDS`` word and
    is not English; ``known`` is ``language_with_confidence(text)`` when already known."""
    if FALSE_FRIENDS.isdisjoint(words):
        return False
    found = language_with_confidence(text) if known is _UNKNOWN else known
    return found is not None and found[0] != "en"  # type: ignore[index]


_UNKNOWN = object()


def sentiment(text: str | None) -> Sentiment | None:
    """The sentiment of ``text`` (VADER's compound score and its label); None when the
    text has no letter."""
    return _sentiment(text, _UNKNOWN)


def _sentiment(text: str | None, known_language: _Language | object) -> Sentiment | None:
    """``sentiment(text)``; ``known_language`` is ``language_with_confidence(text)`` when
    already known (else ``_UNKNOWN``: it is asked when needed)."""
    if not text:
        return None
    text = text[:MAX_SENTIMENT_CHARS]
    if not _has_letter(text):
        return None
    analysers = _get_analyser()
    lowered = text.lower()
    words = (set(_SCREEN.findall(lowered)) if any(w in lowered for w in _SCREEN_WORDS)
             else _NO_WORDS)
    foreign = bool(words) and _foreign(text, words, known_language)
    if len(text) <= SENTENCE_CHARS:
        score = _compound(analysers, text, foreign)
    else:
        scores = [_compound(analysers, part, foreign)
                  for part in _sentences(text) if _has_letter(part)]
        score = sum(scores) / len(scores)
    if words and not words.isdisjoint(_SARCASM_WORDS) and _SARCASM.search(lowered):
        score = -max(abs(score), SARCASM_SCORE)
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
    return _answer(_get_identifier().classify(text))


def _answer(found: tuple[str, float]) -> _Language:
    code, confidence = found
    if code == _NO_LANGUAGE:
        return None
    return _ISO_639_1.get(code, str(code)), float(confidence)


def language(text: str | None) -> str | None:
    """The ISO 639-1 code of the language of ``text``; None when too short to tell (fewer
    than ``MIN_LETTERS`` letters, or a best probability under
    ``MIN_LANGUAGE_CONFIDENCE``)."""
    return _decided(language_with_confidence(text))


def _decided(found: _Language) -> str | None:
    if found is None or found[1] < MIN_LANGUAGE_CONFIDENCE:
        return None
    return found[0]


BATCH_MIN_TEXTS = 8
"""Fewer texts than this are identified one by one (the batch's fixed cost is higher)."""


def languages_with_confidence(texts: Sequence[str | None]) -> list[_Language]:
    """``language_with_confidence`` of each of ``texts``, the same answers, identified
    together (``langid_batch.BatchIdentifier``: several times faster per text)."""
    heads = [t[:MAX_LANGUAGE_CHARS] if t else "" for t in texts]
    todo = [i for i, head in enumerate(heads) if _letter_count(head, MIN_LETTERS) >= MIN_LETTERS]
    out: list[_Language] = [None] * len(heads)
    if len(todo) < BATCH_MIN_TEXTS:
        for i in todo:
            out[i] = language_with_confidence(heads[i])
        return out
    batch = _get_batch()
    found = batch.classify_many([batch.encode(heads[i]) for i in todo])
    for i, answer in zip(todo, found, strict=True):
        out[i] = _answer(answer)
    return out


def sentiments_and_languages(texts: Sequence[str | None]
                             ) -> list[tuple[Sentiment | None, str | None]]:
    """``(sentiment(t), language(t))`` of each of ``texts``, the same answers, the
    languages identified together (``languages_with_confidence``), and each text's
    identification reused by its sentiment (which asks it when a false friend is there)."""
    found = languages_with_confidence(texts)
    return [(_sentiment(t, known), _decided(known)) for t, known in zip(texts, found, strict=True)]
