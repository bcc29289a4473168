"""``insights.vader.compound`` and ``insights.langid_batch``: the libraries' own answers,
exactly, in fewer steps. Each is compared with the library on the labelled data sets and
on generated texts that exercise every rule (boosters, negations, "no", "least", "but",
"kind of", the special idioms, ALL CAPS, emoticons, emoji, "!" and "?")."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]
    BOOSTER_DICT,
    NEGATE,
    SPECIAL_CASES,
)

from phospho_otel.insights import text
from phospho_otel.insights.vader import compound

DATA = Path(__file__).parent / "data"


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


@pytest.fixture(scope="module")
def labelled_texts() -> list[str]:
    texts: list[str] = []
    for name in ("conversations.yaml", "holdout.yaml"):
        texts += _strings(yaml.safe_load((DATA / name).read_text(encoding="utf-8")))
    assert len(texts) > 500
    return texts


def _generated(analyser: object, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lexicon = sorted(analyser.lexicon)  # type: ignore[attr-defined]
    emoji = sorted(analyser.emojis)[:200]  # type: ignore[attr-defined]
    vocabulary = (lexicon[::9] + list(BOOSTER_DICT) + list(NEGATE)
                  + [w for case in SPECIAL_CASES for w in case.split()]
                  + "no or nor least at very but kind of so this never without doubt the a is"
                    " it I you".split()
                  + ["BUT", "NOT", "GREAT", "Good", ":)", ":(", ":D", "<3", "!!!", "??"]
                  + emoji)
    texts = []
    for _ in range(count):
        words = []
        for _ in range(rng.randrange(0, 25)):
            word = rng.choice(vocabulary)
            roll = rng.random()
            if roll < 0.1:
                word = word.upper()
            elif roll < 0.15:
                word = word.capitalize()
            if rng.random() < 0.15:
                word += rng.choice("!?.,;:")
            if rng.random() < 0.05:
                word = rng.choice("\"'(") + word
            words.append(word)
        texts.append(" ".join(words) + rng.choice(["", "!", "?", "!!", "???", " :)", "\u2764"]))
    return texts


def test_compound_is_the_library_score(labelled_texts: list[str]) -> None:
    analysers = text._get_analyser()
    for analyser in (analysers.plain, analysers.question, analysers.foreign,
                     analysers.foreign_question):
        texts = labelled_texts + _generated(analyser, 800, seed=len(analyser.lexicon))
        for sample in texts:
            expected = analyser.polarity_scores(sample)["compound"]
            assert compound(analyser, sample) == expected, sample
    assert compound(analysers.plain, "") == 0.0
    assert compound(analysers.plain, "I love it \U0001f600") == \
        analysers.plain.polarity_scores("I love it \U0001f600")["compound"] != 0


def test_compound_can_fail() -> None:
    # the rules make a difference: negation, "but", capitals are not ignored
    plain = text._get_analyser().plain
    assert compound(plain, "not good") < 0 < compound(plain, "good")
    assert compound(plain, "GOOD food here") > compound(plain, "good food here")


def _languages_by_library(texts: list[str]) -> list[tuple[str, float] | None]:
    return [text.language_with_confidence(t) for t in texts]


def test_batch_languages_are_the_library_answers(labelled_texts: list[str]) -> None:
    rng = random.Random(7)
    words = " ".join(labelled_texts).split()
    texts = labelled_texts + [" ".join(rng.choice(words) for _ in range(rng.randrange(1, 60)))
                              for _ in range(400)]
    texts += ["", "x", "ok", "12345 !!!", "これは何ですか", "HELLO THERE MY FRIEND",
              "a" * 2000, None]  # type: ignore[list-item]
    found = text.languages_with_confidence(texts)
    assert found == _languages_by_library(texts)  # the same codes and probabilities
    assert sum(f is not None for f in found) > 0.8 * len(texts)  # labels such as "power"
    assert {f[0] for f in found if f} >= {"en", "fr", "es", "de"}


def test_sentiments_and_languages_are_one_by_one_answers(labelled_texts: list[str]) -> None:
    texts = [*labelled_texts, "Okay, danke für die Info.", "Sin maleta. Gracias.",
             "Why did the war start?", None, ""]
    together = text.sentiments_and_languages(texts)
    assert together == [(text.sentiment(t), text.language(t)) for t in texts]
    few = texts[:3]  # under BATCH_MIN_TEXTS: one by one
    assert text.sentiments_and_languages(few) == together[:3]
