import numpy as np
import pytest

from textsweep.data import PreparedData, Split, clean_texts
from textsweep.vocab import Vocabulary, encode_splits, fit_vocabulary, pad, split_words
from conftest import review_rows

TEXTS = ["the cat sat", "the dog sat down", "a cat! the end"]


def test_ranks_by_count_then_first_appearance():
    # counts: the 3, cat 2, sat 2, then dog, down, a, end once each (in order of appearance)
    assert fit_vocabulary(TEXTS).words == ("the", "cat", "sat", "dog", "down", "a", "end")


def test_encoding_keeps_ranks_below_max_features_and_drops_the_rest():
    vocabulary = fit_vocabulary(TEXTS)
    capped = vocabulary.capped(4)  # Tokenizer(num_words=4): ids 1..3
    assert capped.words == ("the", "cat", "sat")
    assert [s.tolist() for s in capped.encode(["the dog sat down", "unknown words only", "cat cat"])] == [[1, 3], [], [2, 2]]


def test_padding_and_truncation_are_pre_with_zero():
    assert pad([np.array([1, 3]), np.array([4, 5, 6, 7, 8])], 4).tolist() == [[0, 0, 1, 3], [5, 6, 7, 8]]


def test_words_split_like_keras_text_to_word_sequence():
    # seed A's regex keeps [ ] _ ` \ ^ ; the tokenizer's default filters then split on them
    assert split_words("Hello,world [x]_y `z`\ttab\nnew  line") == ["hello", "world", "x", "y", "z", "tab", "new", "line"]


def test_json_round_trip_without_pickle(tmp_path):
    vocabulary = fit_vocabulary(TEXTS).capped(5, maxlen=7)
    loaded = Vocabulary.load(vocabulary.save(tmp_path / "v.json"))
    assert loaded == vocabulary and loaded.maxlen == 7
    assert loaded.encode_padded(["the end sat"]).tolist() == [[0, 0, 0, 0, 0, 1, 3]]
    with pytest.raises(ValueError, match="not a textsweep vocabulary"):
        Vocabulary.from_json('{"words": []}')


def test_classes_and_cleaning_travel_in_the_json():
    vocabulary = Vocabulary(("o'yin", "яхши"), classes=("negative", "neutral", "positive"), cleaning="unicode")
    loaded = Vocabulary.from_json(vocabulary.capped(2, maxlen=3).to_json())
    assert loaded.classes == ("negative", "neutral", "positive") and loaded.cleaning == "unicode"
    assert loaded.words == ("o'yin",) and loaded.encode_padded(["o'yin o'yin"]).tolist() == [[0, 1, 1]]
    assert Vocabulary.from_json(Vocabulary(("a",), classes=(False, True)).to_json()).classes == (False, True)


def test_a_vocabulary_saved_before_classes_were_kept_is_seed_a_binary():
    old = '{"format": "textsweep.vocabulary/1", "maxlen": 4, "words": ["yaxshi", "emas"]}'
    loaded = Vocabulary.from_json(old)
    assert loaded.classes == (0, 1) and loaded.cleaning == "seed_a" and loaded.maxlen == 4


def split_of(texts, labels):
    return Split(list(texts), np.asarray(labels, dtype=np.int64))


def encoded_with(train_texts):
    labels = [i % 2 for i in range(len(train_texts))]
    data = PreparedData(
        train=split_of(train_texts, labels), val=split_of(["good", "bad"], [1, 0]), test=split_of(["fine", "poor"], [1, 0]),
        fingerprint="x", source="mem", stats={}, classes=["neg", "pos"], cleaning="unicode",
    )
    return encode_splits(data)


def test_one_huge_row_does_not_set_every_rows_padded_length():
    texts = clean_texts(review_rows(237)["text"], "unicode").tolist()
    huge = "abcdef " * 28_571  # ~200,000 characters, 28,571 words
    encoded = encoded_with([huge, *texts])
    longest_review = max(len(split_words(t)) for t in texts)
    assert encoded.longest(2000) == 28_571
    cap = encoded.maxlen_cap(2000)
    assert longest_review / 2 < cap < 200  # twice the 99th percentile of the training lengths
    assert encoded.resolve_maxlen(2000, None) == cap
    assert encoded.arrays("train", 2000, encoded.resolve_maxlen(2000, None))[0].shape == (238, cap)
    assert encoded.resolve_maxlen(2000, 30_000) == 30_000  # an explicit maxlen is used as given


def test_padded_length_is_the_longest_when_no_text_stands_out():
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


@pytest.mark.parametrize("cleaning", ["seed_a", "unicode"])
def test_matches_the_keras_2_tokenizer_on_real_data(cleaning):
    legacy = pytest.importorskip("tf_keras.preprocessing.text")
    texts = clean_texts(review_rows(3000)["text"], cleaning).tolist()
    tokenizer = legacy.Tokenizer(num_words=500, split=" ")
    tokenizer.fit_on_texts(texts)
    vocabulary = fit_vocabulary(texts)
    assert list(vocabulary.words) == list(tokenizer.word_index)
    assert [s.tolist() for s in vocabulary.capped(500).encode(texts)] == tokenizer.texts_to_sequences(texts)


def encoded_slice():
    from textsweep.config import DataConfig
    from textsweep.data import prepare
    from textsweep.vocab import encode_splits

    return encode_splits(prepare(review_rows(800), DataConfig(source="mem")))


def test_dataset_without_buckets_is_exactly_the_padded_arrays():
    encoded = encoded_slice()
    x, y = encoded.arrays("train", 300, 20)
    batches = list(encoded.dataset("train", 300, 20, batch_size=64).as_numpy_iterator())
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)


def test_length_buckets_pre_pad_each_batch_to_its_longest_text_and_keep_every_text_once():
    encoded = encoded_slice()
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
