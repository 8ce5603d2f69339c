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
- sequences are pre-padded and pre-truncated with 0 (`keras.utils.pad_sequences`);
  `EncodedSplits.dataset` feeds them to `model.fit` as a `tf.data` pipeline, in length buckets
  (each batch padded only to its longest text, the default) or every batch padded to maxlen.

The vocabulary is fitted once on the full training split; a trial caps it at its own
`max_features` without re-fitting, because the ranks do not depend on the cap. It also carries
the class names and the cleaning mode of its data, so a served model cleans and labels text as
its trial was trained.

`tokenizer: subword` trials use subword.SubwordTokenizer instead (BPE pieces, also fitted once
per sweep); `EncodedSplits.for_tokenizer` gives each trial the splits as its tokenizer sees them.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from textsweep.data import PreparedData, space_unspaced_scripts
from textsweep.subword import SUBWORD_FORMAT, SubwordTokenizer, fit_subword

if TYPE_CHECKING:
    import tensorflow as tf

# `keras.preprocessing.text.Tokenizer`'s default `filters`.
KERAS_TOKENIZER_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_FILTER_TO_SPACE = str.maketrans({c: " " for c in KERAS_TOKENIZER_FILTERS})
# Optional fields were added to this format without a new version: older readers ignore them.
VOCABULARY_FORMAT = "textsweep.vocabulary/1"
# What a vocabulary JSON without `classes` / `cleaning` was trained with (before they were saved).
LEGACY_CLASSES = (0, 1)
LEGACY_CLEANING = "seed_a"
# A padded length derived from the data (maxlen: null) is the longest training sequence, but at
# most MAXLEN_CAP_FACTOR x its 99th percentile: one 200,000-character row would otherwise pad
# every text to ~28,000 steps. The percentile is taken with method="lower" (a real length, and
# never the single longest text). On the Uzbek set (seed A's cleaning, max_features 2000) the
# longest is 44 and the 99th percentile 33, so the cap (66) leaves seed A's 44 unchanged.
MAXLEN_PERCENTILE = 99
MAXLEN_CAP_FACTOR = 2


def split_words(text: str, *, unspaced_characters: bool = True) -> list[str]:
    """Keras `text_to_word_sequence(text)` with its defaults; with `unspaced_characters`, each character
    of a script written without spaces is a word (`很好的电影` is 很 好 的 电 影, not one word)."""
    text = text.lower().translate(_FILTER_TO_SPACE)
    if unspaced_characters:
        text = space_unspaced_scripts(text)
    return [word for word in text.split(" ") if word]


@dataclass(frozen=True)
class Vocabulary:
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

    def encode_padded(self, texts: list[str]) -> np.ndarray:
        """Encode and pad to this vocabulary's `maxlen` (what serving feeds the model)."""
        if self.maxlen is None:
            raise ValueError("this vocabulary has no maxlen; cap it with a maxlen first")
        return pad(self.encode(texts), self.maxlen)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": VOCABULARY_FORMAT,
                "maxlen": self.maxlen,
                "classes": list(self.classes),
                "cleaning": self.cleaning,
                "unspaced_characters": self.unspaced_characters,
                "words": list(self.words),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """A saved vocabulary; one saved before classes and cleaning were kept gets seed A's [0, 1] and seed_a,
        one saved before `unspaced_characters` Keras' split alone."""
        payload = json.loads(text)
        if payload.get("format") != VOCABULARY_FORMAT:
            raise ValueError(f"not a textsweep vocabulary (format {payload.get('format')!r})")
        return cls(
            tuple(payload["words"]),
            payload.get("maxlen"),
            classes=tuple(payload.get("classes") or LEGACY_CLASSES),
            cleaning=payload.get("cleaning") or LEGACY_CLEANING,
            unspaced_characters=payload.get("unspaced_characters", False),
        )

    def save(self, path: Path) -> Path:
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


# A trial's tokenizer: the two have the same fields and methods (size, capped, encode,
# encode_padded, to_json, maxlen, classes, cleaning).
Tokenizer = Vocabulary | SubwordTokenizer


def load_tokenizer(text: str) -> Tokenizer:
    """A saved tokenizer JSON of either kind, by its `format`."""
    if json.loads(text).get("format") == SUBWORD_FORMAT:
        return SubwordTokenizer.from_json(text)
    return Vocabulary.from_json(text)


def fit_vocabulary(texts: list[str]) -> Vocabulary:
    """Rank every word of `texts` as `Tokenizer.fit_on_texts` does."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(split_words(text))
    # Counter keeps first-appearance order and `sorted` is stable, so ties stay in that order,
    # exactly like the Tokenizer's `wcounts.sort(key=..., reverse=True)`.
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    return Vocabulary(tuple(word for word, _ in ranked))


def pad(sequences: list[np.ndarray], maxlen: int) -> np.ndarray:
    from keras.utils import pad_sequences  # deferred: importing Keras costs seconds

    return pad_sequences(sequences, maxlen=maxlen, padding="pre", truncating="pre", value=0)


def cap_ids(sequences: list[np.ndarray], max_features: int) -> list[np.ndarray]:
    """Drop ids >= max_features: the Tokenizer's `num_words` cut, applied to encoded text."""
    return [seq[seq < max_features] for seq in sequences]


@dataclass(frozen=True)
class EncodedSplits:
    """Every split encoded once with the full training vocabulary; trials only cap and pad.

    With a `subword` tokenizer (fitted when some trial may use it), `for_tokenizer("subword", k)`
    gives the same splits encoded in its pieces at k ids, from the cleaned `texts`.
    """

    vocabulary: Tokenizer
    train: list[np.ndarray]
    val: list[np.ndarray]
    test: list[np.ndarray]
    labels: dict[str, np.ndarray]
    texts: dict[str, list[str]] = field(default_factory=dict)
    subword: SubwordTokenizer | None = None
    # Subword encodings by max_features: KerasTuner's trials revisit the same few values.
    _subword_views: dict[int, EncodedSplits] = field(default_factory=dict, compare=False, repr=False)

    @property
    def classes(self) -> tuple[Any, ...]:
        return self.vocabulary.classes

    def vocabulary_size(self, tokenizer: str = "word") -> int:
        """Ids the fitted tokenizer of this kind has, padding included."""
        return self._tokenizer(tokenizer).size

    def vocabulary_sizes(self) -> dict[str, int]:
        """`vocabulary_size` of every tokenizer kind fitted for this sweep."""
        return {"word": self.vocabulary.size} | ({"subword": self.subword.size} if self.subword else {})

    def cap_max_features(self, max_features: int, tokenizer: str = "word") -> int:
        """`max_features`, at most the tokenizer's size: ids above it would never be used."""
        return min(max_features, self.vocabulary_size(tokenizer))

    def _tokenizer(self, tokenizer: str) -> Tokenizer:
        if tokenizer == "word":
            return self.vocabulary
        if tokenizer == "subword" and self.subword is not None:
            return self.subword
        raise ValueError(f"no {tokenizer!r} tokenizer was fitted for these splits (encode_splits(subword_size=...))")

    def seen_by(self, params: Any) -> EncodedSplits:
        """`for_tokenizer` at a run's params (config.TrainingParams: its tokenizer and max_features)."""
        return self.for_tokenizer(params.tokenizer, params.max_features)

    def maxlen_for(self, params: Any) -> int:
        """The padded length a run with these params trains, validates and is served at."""
        return self.seen_by(params).resolve_maxlen(params.max_features, params.maxlen)

    def for_tokenizer(self, tokenizer: str, max_features: int) -> EncodedSplits:
        """The splits as a model with this tokenizer and `max_features` sees them.

        Word ids only need capping (each method caps them), so `word` is these splits. Subword
        pieces depend on the cap (fewer merges split words into more pieces): the texts are
        encoded again with the capped tokenizer, once per max_features.
        """
        subword = self._tokenizer(tokenizer)
        if tokenizer == "word":
            return self
        max_features = min(max_features, subword.size)
        if (view := self._subword_views.get(max_features)) is None:
            capped = subword.capped(max_features)
            encoded = {split: capped.encode(self.texts[split]) for split in ("train", "val", "test")}
            view = EncodedSplits(capped, **encoded, labels=self.labels, texts=self.texts, subword=self.subword,
                                 _subword_views=self._subword_views)  # shared: a view's own view is itself
            if len(self._subword_views) >= 4:  # IMDB's 25,000 reviews are ~30 MB of ids per view
                self._subword_views.pop(next(iter(self._subword_views)))
            self._subword_views[max_features] = view
        return view

    def train_lengths(self, max_features: int) -> np.ndarray:
        """Each training text's length in ids below `max_features`."""
        return np.array([int(np.count_nonzero(seq < max_features)) for seq in self.train], dtype=np.int64)

    def longest(self, max_features: int) -> int:
        """The longest training sequence at this `max_features` (seed A's padded length)."""
        return max(1, int(self.train_lengths(max_features).max(initial=0)))

    def maxlen_cap(self, max_features: int) -> int:
        """The most `resolve_maxlen` derives from the data: MAXLEN_CAP_FACTOR x the 99th percentile length."""
        return _maxlen_cap(self.train_lengths(max_features))

    def resolve_maxlen(self, max_features: int, maxlen: int | None) -> int:
        """`maxlen` as given, or the longest training sequence capped at `maxlen_cap`.

        Seed A pads to the longest sequence (`pad_sequences` without maxlen); the cap keeps one
        huge text from setting every text's length. `longest` and `maxlen_cap` say whether it cut.
        """
        if maxlen is not None:
            return maxlen
        lengths = self.train_lengths(max_features)
        return min(max(1, int(lengths.max(initial=0))), _maxlen_cap(lengths))

    def arrays(self, split: str, max_features: int, maxlen: int) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids and labels of one split, as a model with this `max_features` sees them."""
        return pad(cap_ids(getattr(self, split), max_features), maxlen), self.labels[split]

    def dataset(
        self,
        split: str,
        max_features: int,
        maxlen: int,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        length_buckets: bool = False,
    ) -> tf.data.Dataset:
        """Batches of (padded ids, labels) of one split, as a `tf.data` pipeline for `model.fit`.

        Without `length_buckets` every batch is padded to `maxlen`, exactly the arrays of
        `arrays()` (seed A). With it, texts of similar length are batched together and each batch
        is pre-padded only to its own longest text: the LSTM then runs over far fewer padding
        steps. Without a mask that would change what the LSTM sees (seed A's leading zeros feed it),
        so `TrainingParams.length_buckets` also masks the padding (model.masks_padding). Batches
        stay pre-padded, as seed A, the validation split and serving pad: inside the model,
        layers.RightPaddedRNN hands the LSTM the right-padded mask cuDNN needs.
        """
        import tensorflow as tf  # deferred: importing TensorFlow costs seconds

        labels = self.labels[split]
        if not length_buckets:
            x, y = self.arrays(split, max_features, maxlen)
            batches = tf.data.Dataset.from_tensor_slices((x, y))
            if shuffle:
                batches = batches.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
            return batches.batch(batch_size).prefetch(tf.data.AUTOTUNE)

        # Each text capped, pre-truncated to maxlen, at least one id long (a batch of empty texts
        # would give the LSTM zero steps) and reversed: `padded_batch` pads at the end, so the
        # batch is reversed back afterwards, which turns that into seed A's pre-padding.
        sequences = [
            seq[-maxlen:] if len(seq) else np.zeros(1, np.int32) for seq in cap_ids(getattr(self, split), max_features)
        ]
        lengths = np.array([len(seq) for seq in sequences], dtype=np.int64)
        reversed_ids = np.concatenate([seq[::-1] for seq in sequences]).astype(np.int32)
        ragged = tf.RaggedTensor.from_row_lengths(reversed_ids, lengths)
        # The identity map turns the ragged rows into plain tensors, which padded batching needs.
        batches = tf.data.Dataset.from_tensor_slices((ragged, labels)).map(lambda ids, y: (ids, y))
        if shuffle:
            batches = batches.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        boundaries = length_bucket_boundaries(lengths)
        batches = batches.bucket_by_sequence_length(
            lambda ids, _: tf.shape(ids)[0], boundaries, [batch_size] * (len(boundaries) + 1)
        )
        # Bucket i holds the lengths in [boundaries[i-1], boundaries[i]); stating the batch count
        # lets Keras know the epoch's length up front (TF checks it as the data flows).
        per_bucket = np.bincount(np.searchsorted(boundaries, lengths, side="right"))
        count = int(np.sum(-(-per_bucket // batch_size)))
        batches = batches.apply(tf.data.experimental.assert_cardinality(count))
        return batches.map(lambda ids, y: (tf.reverse(ids, axis=[1]), y)).prefetch(tf.data.AUTOTUNE)


def _maxlen_cap(lengths: np.ndarray) -> int:
    if not len(lengths):
        return 1
    return max(1, math.ceil(MAXLEN_CAP_FACTOR * float(np.percentile(lengths, MAXLEN_PERCENTILE, method="lower"))))


def length_bucket_boundaries(lengths: np.ndarray, buckets: int = 10) -> list[int]:
    """Bucket edges at the deciles of the text lengths: about as many texts in each bucket."""
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, buckets + 1)[1:-1]).astype(int) + 1)
    return [int(edge) for edge in edges if edge > 1]


def encode_splits(data: PreparedData, subword_size: int | None = None) -> EncodedSplits:
    """Fit the vocabulary on the training split only (so test words stay unseen) and encode all.

    The vocabulary carries the data's classes and cleaning mode, for logging and serving.
    `subword_size` (the largest max_features a subword trial may use; None when none can) also
    fits the subword tokenizer, on the same training split.
    """
    vocabulary = replace(fit_vocabulary(data.train.texts), classes=tuple(data.classes), cleaning=data.cleaning)
    subword = None
    if subword_size is not None:
        subword = fit_subword(data.train.texts, subword_size, classes=tuple(data.classes), cleaning=data.cleaning)
    return EncodedSplits(
        vocabulary,
        train=vocabulary.encode(data.train.texts),
        val=vocabulary.encode(data.val.texts),
        test=vocabulary.encode(data.test.texts),
        labels={"train": data.train.labels, "val": data.val.labels, "test": data.test.labels},
        texts={"train": data.train.texts, "val": data.val.texts, "test": data.test.texts},
        subword=subword,
    )
