"""The linear reference: TF-IDF word and character n-grams with logistic regression."""

import numpy as np
import pandas as pd

from textsweep.config import DataConfig
from textsweep.data import prepare
from textsweep.reference import REFERENCE_SETTINGS, fit_reference


def test_reference_beats_chance_on_real_reviews(review_rows):
    data = prepare(review_rows(4000), DataConfig(source="mem"))
    result = fit_reference(data)
    # Balanced Rotten Tomatoes snippets, ~2,300 training texts: chance is ~0.5, the reference reaches ~0.73.
    assert result.val_accuracy > 0.65
    assert result.test_accuracy > 0.65
    assert 0.65 < result.test_f1_macro <= 1
    assert 0 < result.fit_seconds < 60
    assert result.params["C"] == REFERENCE_SETTINGS["C"]
    assert result.params["char_ngrams"] == "2-5"
    predicted = result.predict(data.test.texts)
    assert np.mean(predicted == data.test.labels) == result.test_accuracy


def three_class_rows(n: int = 450, seed: int = 0) -> pd.DataFrame:
    """Texts of shared filler words, each class marked by one of its own words in a random place."""
    rng = np.random.default_rng(seed)
    filler = [f"word{i}" for i in range(200)]
    markers = {"negative": ["awful", "boring", "dull"], "neutral": ["okay", "average", "fine"], "positive": ["great", "superb", "lovely"]}
    rows = []
    for index in range(n):
        label = list(markers)[index % 3]
        words = list(rng.choice(filler, size=8))
        words.insert(int(rng.integers(0, 9)), str(rng.choice(markers[label])))
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def test_reference_fits_three_classes():
    data = prepare(three_class_rows(), DataConfig(source="mem", classes=["negative", "neutral", "positive"]))
    result = fit_reference(data)
    assert result.val_accuracy > 0.9 and result.test_accuracy > 0.9
    probabilities = result.pipeline.predict_proba(data.test.texts)
    assert probabilities.shape == (len(data.test.texts), 3)
    assert set(result.predict(["a great word1 word2", "an okay word3", "dull word4 word5"])) == {0, 1, 2}


def test_reference_is_deterministic(review_rows):
    data = prepare(review_rows(400, seed=1), DataConfig(source="mem"))
    first, second = fit_reference(data), fit_reference(data)
    assert (first.val_accuracy, first.test_accuracy, first.test_f1_macro) == (
        second.val_accuracy,
        second.test_accuracy,
        second.test_f1_macro,
    )
    assert np.array_equal(first.pipeline.predict_proba(data.val.texts), second.pipeline.predict_proba(data.val.texts))


def test_reference_keeps_word_features_where_words_repeat(review_rows):
    result = fit_reference(prepare(review_rows(400, seed=1), DataConfig(source="mem")))
    assert result.params["features"] == "word+char" and "word_features" not in result.params


def rows_without_words(kind: str, n: int = 200) -> pd.DataFrame:
    """Texts whose classes differ by characters, with no word that two texts share."""
    rng = np.random.default_rng(0)
    marks = {"chinese": (["好", "棒", "爱"], ["差", "烂", "恨"]), "emoji": (["😀", "👍", "🎉"], ["😡", "👎", "💩"]),
             "one-word": (["good", "nice", "fine"], ["bad", "poor", "sad"])}[kind]
    filler = {"chinese": "的了是在我有他这中大来上", "emoji": "🌙🌞⭐🌈🍀🍎", "one-word": "qwrtypsdfghjklzxcvbnm"}[kind]
    rows = []
    for index in range(n):
        chars = list(rng.choice(list(filler), size=6)) + [str(rng.choice(marks[index % 2]))]
        rng.shuffle(chars)
        rows.append({"text": "".join(chars) + ("" if kind == "emoji" else str(index)), "label": index % 2})
    return pd.DataFrame(rows)


def test_reference_fits_texts_without_words_on_character_ngrams_and_says_so():
    """Each would raise scikit-learn's "After pruning, no terms remain" or "empty vocabulary" (issue 20)."""
    for kind, cleaning in (("chinese", "unicode"), ("emoji", "none"), ("one-word", "unicode")):
        data = prepare(rows_without_words(kind), DataConfig(source="mem", cleaning=cleaning))
        result = fit_reference(data)
        assert result.params["features"] == "char", kind
        reason = "no word in the training texts" if kind == "emoji" else "no word appears in 2 training texts"
        assert result.params["word_features"].startswith(f"left out: {reason}"), kind
        assert result.val_accuracy > 0.7 and result.test_accuracy > 0.7, kind  # balanced: chance is 0.5


def test_versus_reference_compares_on_the_split_it_is_given():
    """One line for the sweep's summary (validation split) and for promote (test split)."""
    from textsweep.reference import versus_reference

    reference = {"val_accuracy": 0.8, "test_accuracy": 0.7, "test_f1_macro": 0.69, "fit_seconds": 1.0}
    line = "linear reference (TF-IDF word+char n-grams, logistic regression): val_accuracy 0.8000, test_accuracy 0.7000"
    assert versus_reference(reference) == line  # no finished trial yet
    assert versus_reference(reference, 0.85) == f"{line}; the best trial (val_accuracy 0.8500) beats it by +0.0500"
    assert versus_reference(reference, 0.75) == f"{line}; the best trial (val_accuracy 0.7500) falls short of it by 0.0500"
    assert versus_reference(reference, 0.75, split="test", model="this model") == (
        f"{line}; this model (test_accuracy 0.7500) beats it by +0.0500"  # 0.75 against the test figure, 0.7
    )
    assert versus_reference(reference, 0.7, split="test", model="this model").endswith("(test_accuracy 0.7000) matches it")
    assert versus_reference(None, 0.9).startswith("linear reference: none (search.reference: false")
