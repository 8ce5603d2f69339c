"""Seed A's vocabulary: Keras `Tokenizer(num_words=max_features)` semantics, fitted once.

Keras 3 removed `keras.preprocessing.text.Tokenizer`, and `TextVectorization` differs from it
(it adds an OOV id and ranks ties differently), so the seed's semantics are reimplemented here
exactly:
- words are split as `text_to_word_sequence` did: lowercase, the default filter characters
  become spaces, split on ' ', empty strings dropped; and each character of a script written
  without spaces (Chinese, Japanese, Thai, ...: data.UNSPACED_SCRIPTS) is a word of its own,
  where Keras would make one word of a whole unspaced sentence (vocabularies saved before this
  rule keep Keras' split);
- words are ranked by count, descending, ties in order of first appearance, ranks from 1;
- encoding keeps only ranks < max_features and drops other words (no OOV token);
- sequences are pre-padded and pre-truncated with 0 (tokenizer.pad, `keras.utils.pad_sequences`).

The vocabulary is fitted once on the full training split; a trial caps it at its own
`max_features` without re-fitting, because the ranks do not depend on the cap. It also carries
the class names and the cleaning mode of its data, so a served model cleans and labels text as
its trial was trained.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from textsweep.data import space_unspaced_scripts
from textsweep.text.tokenizer import Tokenizer, fields_from_json, tokenizer_to_json

# `keras.preprocessing.text.Tokenizer`'s default `filters`.
KERAS_TOKENIZER_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_FILTER_TO_SPACE = str.maketrans({c: " " for c in KERAS_TOKENIZER_FILTERS})
# Optional fields were added to this format without a new version: older readers ignore them.
VOCABULARY_FORMAT = "textsweep.vocabulary/1"
# What a vocabulary JSON without `classes` / `cleaning` was trained with (before they were saved).
LEGACY_CLASSES = (0, 1)
LEGACY_CLEANING = "seed_a"


def split_words(text: str, *, unspaced_characters: bool = True) -> list[str]:
    """Keras `text_to_word_sequence(text)` with its defaults; with `unspaced_characters`, each character
    of a script written without spaces is a word (`很好的电影` is 很 好 的 电 影, not one word)."""
    text = text.lower().translate(_FILTER_TO_SPACE)
    if unspaced_characters:
        text = space_unspaced_scripts(text)
    return [word for word in text.split(" ") if word]


@dataclass(frozen=True)
class Vocabulary(Tokenizer):
    """Words by rank: `words[0]` has id 1. `maxlen` is the padded length, once a trial fixes it.

    `classes` are the label values in class order (model output i is classes[i]); `cleaning` is
    the `data.cleaning` mode its texts went through (data.clean_texts); `unspaced_characters`
    whether `split_words` makes each character of a script written without spaces a word (saved
    vocabularies without it were fitted with Keras' split alone, and serve that way).
    """

    words: tuple[str, ...]
    maxlen: int | None = None
    classes: tuple[Any, ...] = LEGACY_CLASSES
    cleaning: str = LEGACY_CLEANING
    unspaced_characters: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", {word: rank for rank, word in enumerate(self.words, start=1)})

    @property
    def size(self) -> int:
        """Ids in use, padding included: a `max_features` at or above this keeps every word."""
        return len(self.words) + 1

    def capped(self, max_features: int, maxlen: int | None = None) -> Vocabulary:
        """The vocabulary a model with `Embedding(max_features, ...)` sees: ranks < max_features."""
        return replace(self, words=self.words[: max(max_features - 1, 0)], maxlen=maxlen)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Ids of the known words of each text (unknown words are dropped, not replaced)."""
        ids = self._ids  # type: ignore[attr-defined]
        return [
            np.fromiter((ids[w] for w in split_words(text, unspaced_characters=self.unspaced_characters) if w in ids),
                        dtype=np.int32)
            for text in texts
        ]

    def to_json(self) -> str:
        return tokenizer_to_json(self, VOCABULARY_FORMAT, unspaced_characters=self.unspaced_characters,
                                 words=list(self.words))

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """A saved vocabulary; one saved before classes and cleaning were kept gets seed A's [0, 1] and seed_a,
        one saved before `unspaced_characters` Keras' split alone."""
        payload = fields_from_json(text, VOCABULARY_FORMAT, "vocabulary")
        return cls(
            tuple(payload["words"]),
            payload.get("maxlen"),
            classes=tuple(payload.get("classes") or LEGACY_CLASSES),
            cleaning=payload.get("cleaning") or LEGACY_CLEANING,
            unspaced_characters=payload.get("unspaced_characters", False),
        )


def fit_vocabulary(texts: list[str]) -> Vocabulary:
    """Rank every word of `texts` as Keras' `Tokenizer.fit_on_texts` does."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(split_words(text))
    # Counter keeps first-appearance order and `sorted` is stable, so ties stay in that order,
    # exactly like the Keras Tokenizer's `wcounts.sort(key=..., reverse=True)`.
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    return Vocabulary(tuple(word for word, _ in ranked))
