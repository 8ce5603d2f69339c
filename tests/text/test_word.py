import pytest

from textsweep.data import clean_texts
from textsweep.text import Vocabulary, fit_vocabulary, split_words

TEXTS = ["the cat sat", "the dog sat down", "a cat! the end"]


def test_ranks_by_count_then_first_appearance():
    # counts: the 3, cat 2, sat 2, then dog, down, a, end once each (in order of appearance)
    assert fit_vocabulary(TEXTS).words == ("the", "cat", "sat", "dog", "down", "a", "end")


def test_encoding_keeps_ranks_below_max_features_and_drops_the_rest():
    vocabulary = fit_vocabulary(TEXTS)
    capped = vocabulary.capped(4)  # Tokenizer(num_words=4): ids 1..3
    assert capped.words == ("the", "cat", "sat")
    assert [s.tolist() for s in capped.encode(["the dog sat down", "unknown words only", "cat cat"])] == [[1, 3], [], [2, 2]]


def test_words_split_like_keras_text_to_word_sequence():
    # seed A's regex keeps [ ] _ ` \ ^ ; the tokenizer's default filters then split on them
    assert split_words("Hello,world [x]_y `z`\ttab\nnew  line") == ["hello", "world", "x", "y", "z", "tab", "new", "line"]


def test_json_round_trip_without_pickle():
    vocabulary = fit_vocabulary(TEXTS).capped(5, maxlen=7)
    loaded = Vocabulary.from_json(vocabulary.to_json())
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


@pytest.mark.parametrize("cleaning", ["seed_a", "unicode"])
def test_matches_the_keras_2_tokenizer_on_real_data(review_rows, cleaning):
    legacy = pytest.importorskip("tf_keras.preprocessing.text")
    texts = clean_texts(review_rows(3000)["text"], cleaning).tolist()
    tokenizer = legacy.Tokenizer(num_words=500, split=" ")
    tokenizer.fit_on_texts(texts)
    vocabulary = fit_vocabulary(texts)
    assert list(vocabulary.words) == list(tokenizer.word_index)
    assert [s.tolist() for s in vocabulary.capped(500).encode(texts)] == tokenizer.texts_to_sequences(texts)
