"""The subword tokenizer (BPE pieces): capped as BPE trains at that size, covering unseen word forms, saved as JSON.

Sweeping, promoting and serving with it: tests/test_subword.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from textsweep.data import clean_texts
from textsweep.text import SUBWORD_FORMAT, SubwordTokenizer, Vocabulary, fit_subword, fit_vocabulary, load_tokenizer


@pytest.fixture(scope="module")
def review_texts(review_rows) -> list[str]:
    rows = review_rows(1500, seed=3)
    return clean_texts(rows["text"], "unicode").tolist()


# ---------------------------------------------------------------- the tokenizer


def test_a_capped_tokenizer_is_the_one_bpe_trains_at_that_size(review_texts):
    fitted_once = fit_subword(review_texts[:1000], 2000)
    assert fitted_once.size == 2000
    trained_small = fit_subword(review_texts[:1000], 600)
    capped = fitted_once.capped(600)
    assert capped.size == trained_small.size == 600
    model_of = lambda tokenizer: json.loads(tokenizer.tokenizer_json)["model"]  # noqa: E731
    assert model_of(capped)["vocab"] == model_of(trained_small)["vocab"]
    assert model_of(capped)["merges"] == model_of(trained_small)["merges"]
    unseen = review_texts[1000:]
    assert [list(ids) for ids in capped.encode(unseen)] == [list(ids) for ids in trained_small.encode(unseen)]
    # fewer merges: the same texts take more pieces
    assert sum(map(len, capped.encode(unseen))) > sum(map(len, fitted_once.encode(unseen)))


def test_pieces_cover_word_forms_the_training_split_never_saw(review_texts):
    vocabulary, subword = fit_vocabulary(review_texts), fit_subword(review_texts, 1000)
    unseen = "unwatchableness overactingly"
    assert not any(word in vocabulary.words for word in unseen.split())
    assert len(vocabulary.encode([unseen])[0]) == 0  # the word tokenizer drops both words
    pieces = subword.pieces(unseen)
    assert len(pieces) >= 4 and pieces[0].startswith("▁") and "".join(pieces).replace("▁", " ").strip() == unseen
    (ids,) = subword.encode([unseen])
    assert ids.min() > 0 and ids.max() < 1000  # 0 is the padding the model masks
    assert subword.pieces("ab☃cd") == subword.pieces("abcd")  # a character outside the alphabet is dropped


def test_the_tokenizer_is_json_that_hf_tokenizers_reads_as_is(review_texts):
    subword = fit_subword(review_texts, 800, classes=("neg", "pos"), cleaning="unicode").capped(500, maxlen=40)
    saved = json.loads(subword.to_json())
    assert saved["format"] == SUBWORD_FORMAT and saved["maxlen"] == 40 and saved["classes"] == ["neg", "pos"]
    hf = Tokenizer.from_str(json.dumps(saved["tokenizer"]))
    assert hf.get_vocab_size() == 500 and hf.token_to_id("[PAD]") == 0
    loaded = load_tokenizer(subword.to_json())
    assert isinstance(loaded, SubwordTokenizer) and loaded.classes == ("neg", "pos")
    assert np.array_equal(loaded.encode_padded(review_texts[:20]), subword.encode_padded(review_texts[:20]))
    assert loaded.encode_padded(review_texts[:1]).shape == (1, 40)
    assert isinstance(load_tokenizer(fit_vocabulary(review_texts).to_json()), Vocabulary)
