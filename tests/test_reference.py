"""The linear reference: TF-IDF word and character n-grams with logistic regression."""

import numpy as np
import pandas as pd

from textsweep.config import DataConfig
from textsweep.data import prepare
from textsweep.reference import REFERENCE_SETTINGS, fit_reference
from conftest import review_rows


def test_reference_beats_chance_on_real_reviews():
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


def test_reference_is_deterministic():
    data = prepare(review_rows(400, seed=1), DataConfig(source="mem"))
    first, second = fit_reference(data), fit_reference(data)
    assert (first.val_accuracy, first.test_accuracy, first.test_f1_macro) == (
        second.val_accuracy,
        second.test_accuracy,
        second.test_f1_macro,
    )
    assert np.array_equal(first.pipeline.predict_proba(data.val.texts), second.pipeline.predict_proba(data.val.texts))
