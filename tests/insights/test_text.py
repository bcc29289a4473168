"""``insights.text``: sentiment (VADER) and language (py3langid), offline."""

from __future__ import annotations

import threading

import pytest

from phospho_otel.insights import text
from phospho_otel.model.analysis import SENTIMENT_LABELS, Sentiment


@pytest.mark.parametrize(("message", "label"), [
    ("Thanks, that helped a lot!", "positive"),
    ("I love it :)", "positive"),
    ("This is useless, you are stupid", "negative"),
    ("not good at all", "negative"),
    ("What is the capital of France?", "neutral"),
])
def test_sentiment_labels(message: str, label: str) -> None:
    found = text.sentiment(message)
    assert isinstance(found, Sentiment)
    assert found.label == label
    assert -1 <= found.score <= 1
    if label == "positive":
        assert found.score >= text.POSITIVE_THRESHOLD
    elif label == "negative":
        assert found.score <= text.NEGATIVE_THRESHOLD
    else:
        assert text.NEGATIVE_THRESHOLD < found.score < text.POSITIVE_THRESHOLD


@pytest.mark.parametrize(("message", "label"), [
    # the multilingual extension: thanks, praise and complaint in the five languages
    ("Merci beaucoup !", "positive"),
    ("C'est parfait", "positive"),
    ("Muchas gracias, perfecto", "positive"),
    ("Danke, das ist toll", "positive"),
    ("Grazie, ottimo", "positive"),
    ("Obrigada, ficou ótimo", "positive"),
    ("C'est nul et inutile", "negative"),
    ("Das ist schlecht", "negative"),
    # a question about a technical problem is not a negative feeling...
    ("How do I kill a process that is stuck on port 8000?", "neutral"),
    ("Why did the tests that failed with an error not rerun?", "neutral"),
    # ...nor a question's polite or hopeful words a positive one
    ("Is it safe to travel there in December?", "neutral"),
    ("Eurostar please, morning, one adult", "neutral"),
    # but a strongly worded question stays what it is, and a statement too
    ("Why is this so terrible and awful?", "negative"),
    ("The build failed again, I hate this", "negative"),
    # sarcasm: thanks with a complaint
    ("wow. thanks for nothing.", "negative"),
    ("Great, another useless answer. Thanks a lot.", "negative"),
    # English lexicon words that mean something else in another language
    ("Okay, danke für die Info.", "positive"),
    ("Sin maleta. Gracias.", "positive"),
    ("Why did the war start?", "negative"),
    ("The war was terrible", "negative"),
])
def test_sentiment_beyond_english_and_literal_words(message: str, label: str) -> None:
    found = text.sentiment(message)
    assert found is not None and found.label == label, found


def test_sentiment_of_no_words_is_none() -> None:
    for nothing in (None, "", "   ", "42", "?!", "1 + 1 = 2"):
        assert text.sentiment(nothing) is None, nothing
    assert text.sentiment("ok").label in SENTIMENT_LABELS  # type: ignore[union-attr]


def test_sentiment_reads_a_bounded_prefix() -> None:
    # past MAX_SENTIMENT_CHARS nothing counts: a long neutral text then insults
    long = "the table has four legs. " * (text.MAX_SENTIMENT_CHARS // 25 + 1)
    assert text.sentiment(long + "I hate this, it is awful") == text.sentiment(long)
    assert text.sentiment("I hate this, it is awful").label == "negative"  # type: ignore[union-attr]


@pytest.mark.parametrize(("message", "code"), [
    ("What is the meaning of life? Please tell me something useful today.", "en"),
    ("Quel est le sens de la vie ? Dis-moi quelque chose d'utile.", "fr"),
    ("¿Cuál es el sentido de la vida? Quiero hablar con una persona.", "es"),
    ("Das ist nicht was ich wollte, wo ist meine Bestellung?", "de"),
    ("Qual è il significato della vita? Dimmi qualcosa di utile.", "it"),
    ("これは何ですか\uff1f教えてください。", "ja"),
    ("Что это такое? Расскажи мне, пожалуйста.", "ru"),
])
def test_language(message: str, code: str) -> None:
    assert text.language(message) == code


def test_language_too_short_to_tell_is_none() -> None:
    for short in (None, "", "ok", "42", "?!", "hi", "bye", "hola", "hallo", "hello there"):
        assert text.language(short) is None, short
    # the reason: these are below the confidence bar, not only below MIN_LETTERS
    found = text.language_with_confidence("hello there")
    assert found is not None and found[1] < text.MIN_LANGUAGE_CONFIDENCE


def test_language_codes_are_iso_639_1_where_one_exists() -> None:
    assert text._ISO_639_1["yue"] == "zh"
    identifier = text._get_identifier()
    mapped = {text._ISO_639_1.get(code, code) for code in identifier.labels}
    assert "zxx" in identifier.labels  # no linguistic content: answered None, not a code
    assert {"en", "fr", "es", "de", "zh", "ar"} <= mapped


def test_fast_identifier_gives_the_library_answers() -> None:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier  # type: ignore[import-untyped]

    plain = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ours = text._get_identifier()
    for sample in ("hello there", "je ne sais pas", "no entiendo nada de esto",
                   "Das ist nicht was ich wollte", "これは何ですか", "x"):
        code, confidence = ours.classify(sample)
        plain_code, plain_confidence = plain.classify(sample)
        assert code == plain_code
        assert confidence == pytest.approx(plain_confidence, abs=1e-4)


def test_thread_safe_first_use() -> None:
    results: list[object] = []

    def work() -> None:
        results.append((text.language("Where is my order? It has been two weeks."),
                        text.sentiment("great, thanks")))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and results[0][0] == "en"  # type: ignore[index]


def test_long_text_is_scored_sentence_by_sentence() -> None:
    good = "I really love this product, it is great and wonderful."
    bad = "But the delivery was awful, terrible and very late."
    neutral = "The box is brown and the table has four legs today."
    long = " ".join([good, bad, neutral] * 2)
    assert text.SENTENCE_CHARS < len(long) <= text.MAX_SENTIMENT_CHARS
    found = text.sentiment(long)
    parts = [text.sentiment(s) for s in (good, bad, neutral)]
    assert found is not None and all(parts)
    assert found.score == pytest.approx(sum(p.score for p in parts if p) / 3)
    assert text._sentences("One. Two!  Three?\nFour") == ["One.", "Two!", "Three?", "Four"]
    pieces = text._sentences("word " * 100)
    assert all(len(p) <= text.SENTENCE_CHARS for p in pieces)
    assert " ".join(pieces).split() == ["word"] * 100
    assert text._sentences("x" * 400) == ["x" * 150, "x" * 150, "x" * 100]
