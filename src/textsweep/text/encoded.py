"""Every split encoded once per sweep, and the `tf.data` input pipeline a trial trains on.

`encode_splits` fits the word vocabulary (and the subword tokenizer when some trial may use it)
on the training split only, and encodes every split once. A trial then only caps and pads:
word ids below its `max_features` (`cap_ids`), subword pieces re-encoded once per
`max_features` (`EncodedSplits.for_tokenizer`). `EncodedSplits.dataset` feeds a split to
`model.fit` in length buckets (each batch padded only to its longest text, the default) or
every batch padded to maxlen (seed A).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from textsweep.data import PreparedData
from textsweep.text.subword import SubwordTokenizer, fit_subword
from textsweep.text.tokenizer import Tokenizer, pad
from textsweep.text.word import fit_vocabulary

if TYPE_CHECKING:
    import tensorflow as tf

# A padded length derived from the data (maxlen: null) is the longest training sequence, but at
# most MAXLEN_CAP_FACTOR x its 99th percentile: one 200,000-character row would otherwise pad
# every text to ~28,000 steps. The percentile is taken with method="lower" (a real length, and
# never the single longest text). On the Uzbek set (seed A's cleaning, max_features 2000) the
# longest is 44 and the 99th percentile 33, so the cap (66) leaves seed A's 44 unchanged.
MAXLEN_PERCENTILE = 99
MAXLEN_CAP_FACTOR = 2


def cap_ids(sequences: list[np.ndarray], max_features: int) -> list[np.ndarray]:
    """Drop ids >= max_features: the Keras Tokenizer's `num_words` cut, applied to encoded text."""
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

    def resolve_maxlen(self, max_features: int, maxlen: int | None) -> int:
        """`maxlen` as given, or the longest training sequence, at most MAXLEN_CAP_FACTOR x the 99th percentile length.

        Seed A pads to the longest sequence (`pad_sequences` without maxlen); the cap keeps one
        huge text from setting every text's length. `longest` says whether it cut.
        """
        if maxlen is not None:
            return maxlen
        lengths = self.train_lengths(max_features)
        if not len(lengths):
            return 1
        cap = math.ceil(MAXLEN_CAP_FACTOR * float(np.percentile(lengths, MAXLEN_PERCENTILE, method="lower")))
        return max(1, min(int(lengths.max()), cap))

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
