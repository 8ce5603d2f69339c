import math

import numpy as np
import pytest

from textsweep.config import DataConfig, TrainingParams
from textsweep.data import PreparedData, Split, clean_texts, prepare
from textsweep.text import SubwordTokenizer, encode_splits, split_words


def split_of(texts, labels):
    return Split(list(texts), np.asarray(labels, dtype=np.int64))


def encoded_with(train_texts):
    labels = [i % 2 for i in range(len(train_texts))]
    data = PreparedData(
        train=split_of(train_texts, labels), val=split_of(["good", "bad"], [1, 0]), test=split_of(["fine", "poor"], [1, 0]),
        fingerprint="x", source="mem", stats={}, classes=["neg", "pos"], cleaning="unicode",
    )
    return encode_splits(data)


def test_one_huge_row_does_not_set_every_rows_padded_length(review_rows):
    texts = clean_texts(review_rows(237)["text"], "unicode").tolist()
    huge = "abcdef " * 28_571  # ~200,000 characters, 28,571 words
    encoded = encoded_with([huge, *texts])
    longest_review = max(len(split_words(t)) for t in texts)
    assert encoded.longest(2000) == 28_571
    cap = encoded.resolve_maxlen(2000, None)
    assert longest_review / 2 < cap < 200  # twice the 99th percentile of the training lengths
    assert cap == math.ceil(2 * np.percentile(encoded.train_lengths(2000), 99, method="lower"))
    assert encoded.maxlen_for(TrainingParams(max_features=2000)) == cap  # what a run trains and is served at
    assert encoded.arrays("train", 2000, encoded.resolve_maxlen(2000, None))[0].shape == (238, cap)
    assert encoded.resolve_maxlen(2000, 30_000) == 30_000  # an explicit maxlen is used as given
    assert encoded.maxlen_for(TrainingParams(max_features=2000, maxlen=30_000)) == 30_000


def test_padded_length_is_the_longest_when_no_text_stands_out(review_rows):
    texts = clean_texts(review_rows(500)["text"], "unicode").tolist()
    encoded = encoded_with(texts)
    assert encoded.resolve_maxlen(2000, None) == encoded.longest(2000) == max(len(split_words(t)) for t in texts)
    assert encoded.longest(5) < encoded.longest(2000)  # counted in ids the trial keeps


def test_vocabulary_carries_the_datas_classes_and_cleaning_and_caps_max_features():
    encoded = encoded_with(["the cat sat", "the dog"])
    assert encoded.vocabulary.classes == encoded.classes == ("neg", "pos") and encoded.vocabulary.cleaning == "unicode"
    assert encoded.vocabulary.size == 5  # the, cat, sat, dog + padding
    assert encoded.cap_max_features(10**9) == 5 and encoded.cap_max_features(3) == 3
    assert encoded.vocabulary.capped(3, maxlen=2).classes == ("neg", "pos")


@pytest.fixture(scope="module")
def encoded_slice(review_rows):
    return encode_splits(prepare(review_rows(800), DataConfig(source="mem")))


def test_dataset_without_buckets_is_exactly_the_padded_arrays(encoded_slice):
    encoded = encoded_slice
    x, y = encoded.arrays("train", 300, 20)
    batches = list(encoded.dataset("train", 300, 20, batch_size=64).as_numpy_iterator())
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)


def test_length_buckets_pre_pad_each_batch_to_its_longest_text_and_keep_every_text_once(encoded_slice):
    encoded = encoded_slice
    capped = [seq[seq < 300][-20:] for seq in encoded.train]
    dataset = encoded.dataset("train", 300, 20, batch_size=32, length_buckets=True)
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == int(dataset.cardinality())  # the stated epoch length is the real one
    rows = []
    for ids, _ in batches:
        assert ids.shape[1] <= 20
        for row in ids:
            content = row[np.argmax(row != 0):] if row.any() else row[-1:]
            assert not (row[: len(row) - len(content)] != 0).any()  # zeros only in front
            rows.append(tuple(content.tolist()))
    expected = sorted(tuple(seq.tolist()) if len(seq) else (0,) for seq in capped)
    assert sorted(rows) == expected  # every text once; an empty text becomes one padding id
    assert np.mean([ids.shape[1] for ids, _ in batches]) < 20  # shorter than full padding


def test_splits_are_encoded_once_per_max_features_below_the_cap(review_rows):
    data = prepare(review_rows(400, seed=2), DataConfig(source="mem", cleaning="unicode"))
    encoded = encode_splits(data, subword_size=900)
    assert encoded.vocabulary_sizes() == {"word": encoded.vocabulary.size, "subword": 900}
    view = encoded.for_tokenizer("subword", 300)
    assert view.vocabulary.size == 300 and isinstance(view.vocabulary, SubwordTokenizer)
    assert max(int(ids.max(initial=0)) for ids in view.train) < 300
    assert encoded.for_tokenizer("subword", 300) is view and view.for_tokenizer("subword", 300) is view
    assert encoded.for_tokenizer("subword", 5000).vocabulary.size == 900  # capped to what was fitted
    assert encoded.for_tokenizer("word", 300) is encoded
    with pytest.raises(ValueError, match="no 'subword' tokenizer was fitted"):
        encode_splits(data).for_tokenizer("subword", 300)
