"""``BatchIdentifier``: py3langid's ``classify`` over many texts at once, with the same
answers and the same probabilities, bit for bit.

py3langid scores a text in three steps:

1. a walk of its bytes through a finite automaton (``tk_nextmove``), whose states name
   the byte n-gram features found (``tk_output``): one Python step per byte, about half
   of its cost;
2. a naive Bayes score per language from those features' counts, in the order the walk
   first met them: ``log1p(counts) @ nb_ptc[features] + nb_pc``;
3. the scores divided by the square root of the text's length in bytes, then a softmax,
   then the probabilities of aliased labels added together.

``classify_many`` does step 1 for every text of a batch together: the texts sorted by
length, one numpy step per byte position for all the texts still that long. It counts
every text's features at once, and keeps them in the order the walk first met them. It
then does step 2 text by text, with the library's own expression on the same arrays, and
step 3 for all the texts at once, with the same float32 operations row by row. So the
results are the library's. ``tests/insights/test_text.py`` checks that they are equal,
bit for bit, on the labelled data sets and on generated texts. A text without any
feature is scored by the library itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["BatchIdentifier"]


class BatchIdentifier:
    """The batch scorer of a loaded ``py3langid.langid.LanguageIdentifier`` (with
    ``norm_probs=True`` and no ``min_confidence``). Reads the identifier's model; changes
    nothing; thread-safe."""

    def __init__(self, identifier: Any) -> None:
        if not identifier._norm_probs or identifier.min_confidence is not None:
            raise ValueError("BatchIdentifier needs norm_probs=True and no min_confidence")
        self.identifier = identifier
        moves = identifier.tk_nextmove
        self._nextmove = np.frombuffer(moves, dtype=np.dtype(moves.typecode)).astype(np.intp)
        self._rowbase = np.asarray(identifier._rowbase, dtype=np.intp)
        self._output = np.asarray(identifier.tk_output, dtype=np.intp)
        self._n_features = len(self._output)
        if int(self._output[0]) >= 0:  # walks past a text's end stay in state 0
            raise ValueError("the automaton's start state holds a feature")

    def encode(self, text: str) -> bytes:
        """The bytes the library scores for ``text`` (its ``_encode``)."""
        return self.identifier._encode(text)  # type: ignore[no-any-return]

    def _features(self, texts: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step 1 for every text: (text index, feature, count) triples, by text, each
        text's features in the order its walk first met them."""
        n = len(texts)
        lengths = np.fromiter(map(len, texts), dtype=np.intp, count=n)
        order = np.argsort(-lengths, kind="stable")
        sorted_lengths = lengths[order]
        width = int(sorted_lengths[0])
        rows = b"".join(texts[i].ljust(width, b"\0") for i in order.tolist())
        columns = np.ascontiguousarray(
            np.frombuffer(rows, dtype=np.uint8).reshape(n, width).T)
        # how many texts are still walking at each position: the longest ones
        active = np.searchsorted(-sorted_lengths, -np.arange(width), side="left").tolist()
        visited = np.zeros((n, width), dtype=np.intp)  # state 0 (no feature) past the end
        state = np.zeros(n, dtype=np.intp)
        nextmove, rowbase = self._nextmove, self._rowbase
        for c, k in enumerate(active):
            step = nextmove[rowbase[state[:k]] + columns[c, :k]]
            state[:k] = step
            visited[:k, c] = step
        found = self._output[visited]  # (sorted text, position): a feature or -1
        where = found >= 0
        sorted_text = np.nonzero(where)[0]  # by text, then by position
        texts_of = order[sorted_text]
        keys = texts_of * self._n_features + found[where]
        unique, first, counts = np.unique(keys, return_index=True, return_counts=True)
        by_text_first_seen = np.lexsort((first, unique // self._n_features))
        unique = unique[by_text_first_seen]
        owner = unique // self._n_features
        return owner, unique - owner * self._n_features, counts[by_text_first_seen]

    def classify_many(self, texts: Sequence[bytes]) -> list[tuple[str, float]]:
        """``identifier.classify(t)`` of each of ``texts`` (already ``encode``-d): its
        best language and that language's probability."""
        ident = self.identifier
        n = len(texts)
        if n == 0:
            return []
        if max(map(len, texts)) == 0:
            return [ident.classify(t) for t in texts]
        owner, feature, count = self._features(texts)
        counts = count.astype(np.float32)
        bounds = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1], True]).tolist()
        scored = owner[bounds[:-1]].tolist()
        table, prior = ident.nb_ptc, ident.nb_pc
        scores = np.empty((len(scored), len(ident.nb_classes)), dtype=np.float32)
        for row in range(len(scored)):  # step 2, as ``_sparse_score``
            a, b = bounds[row], bounds[row + 1]
            scores[row] = np.log1p(counts[a:b]) @ table[feature[a:b]] + prior
        # step 3, as ``_decide``, on every row at once
        scale = np.array([1.0 / math.sqrt(len(texts[i]) or 1) for i in scored],
                         dtype=np.float32)
        scores *= scale[:, None]
        np.exp(scores - scores.max(axis=1, keepdims=True), out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        for i, j in ident._alias_pairs:
            scores[:, i] += scores[:, j]
            scores[:, j] = 0.0
        best = scores.argmax(axis=1)
        confidence = scores[np.arange(len(scored)), best].tolist()
        classes = ident.nb_classes
        out: list[tuple[str, float] | None] = [None] * n
        for row, (text, label) in enumerate(zip(scored, best.tolist(), strict=True)):
            out[text] = (classes[label], confidence[row])
        return [found if found is not None else ident.classify(texts[i])
                for i, found in enumerate(out)]
