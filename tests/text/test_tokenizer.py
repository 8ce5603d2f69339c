"""The `Tokenizer` protocol both kinds satisfy, the padding they share, and `load_tokenizer`."""

from dataclasses import replace

import numpy as np
import pytest

from textsweep.data import clean_texts
from textsweep.text import SubwordTokenizer, Tokenizer, Vocabulary, fit_subword, fit_vocabulary, load_tokenizer, pad


def test_padding_and_truncation_are_pre_with_zero():
    assert pad([np.array([1, 3]), np.array([4, 5, 6, 7, 8])], 4).tolist() == [[0, 0, 1, 3], [5, 6, 7, 8]]


def test_both_tokenizers_satisfy_the_protocol_as_load_tokenizer_returns_them(review_rows):
    texts = clean_texts(review_rows(600, seed=5)["text"], "unicode").tolist()
    fitted = {
        Vocabulary: replace(fit_vocabulary(texts), classes=("neg", "pos"), cleaning="unicode"),
        SubwordTokenizer: fit_subword(texts, 600, classes=("neg", "pos"), cleaning="unicode"),
    }
    for kind, tokenizer in fitted.items():
        saved = tokenizer.capped(400, maxlen=30)
        loaded = load_tokenizer(saved.to_json())
        assert type(loaded) is kind and isinstance(loaded, Tokenizer), kind
        assert (loaded.size, loaded.maxlen, loaded.classes, loaded.cleaning) == (400, 30, ("neg", "pos"), "unicode")
        assert [ids.tolist() for ids in loaded.encode(texts[:50])] == [ids.tolist() for ids in saved.encode(texts[:50])]
        padded = loaded.encode_padded(texts[:50])
        assert padded.shape == (50, 30) and np.array_equal(padded, saved.encode_padded(texts[:50]))
        assert 0 < padded.max() < 400  # ids below the cap; 0 is the padding
        recapped = loaded.capped(100, maxlen=8)
        assert isinstance(recapped, kind) and recapped.size == 100 and recapped.encode_padded(texts[:5]).shape == (5, 8)
        assert load_tokenizer(recapped.to_json()).encode_padded(texts[:5]).tolist() == recapped.encode_padded(texts[:5]).tolist()
        with pytest.raises(ValueError, match="has no maxlen"):
            loaded.capped(100).encode_padded(texts[:1])
    with pytest.raises(ValueError, match="not a textsweep vocabulary"):
        load_tokenizer('{"format": "textsweep.unknown/1"}')
