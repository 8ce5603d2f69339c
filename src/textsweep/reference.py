"""A linear reference for every sweep: TF-IDF word and character n-grams, logistic regression.

Fitted on the same training split as the trials, so its validation accuracy is comparable with
their `val_accuracy`; it takes seconds where a trial takes minutes, and tells whether the LSTM
earns its cost. Pure: the caller logs the result (tracking knows MLflow, this module does not).

It fits any text set prepare() returns: when no word appears in `word_min_df` training texts (a
script written without spaces makes each sentence one "word", and emoji-only texts have no word
at all), the word features are left out, the character n-grams carry the model, and its params
say so (`features: char`, with the reason in `word_features`).

A promotion may register it (candidates.py): it is saved in skops' format, which stores the
fitted vectorizers and coefficients as JSON and arrays and loads only the types it trusts, so a
registered reference runs no pickled code. (MLflow's scikit-learn flavour writes skops too, but
its loader refuses every format unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION is set, which would
make serving the reference need a flag the LSTM does not.)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import FeatureUnion, Pipeline

from textsweep.data import PreparedData
from textsweep.errors import RegistryError

# Chosen on validation accuracy only (never test), on the Uzbek set (seed_a cleaning, 10,188
# training texts) and 12,000 IMDB reviews. C: 1 beat 0.3, 2, 3, 10 and 30 on Uzbek (0.883 against
# 0.870-0.876, and 0.866 at 30) and was within 0.006 of C=10 on IMDB (0.898 against 0.904),
# at the fastest fit. char_wb 2-5 was as good as 1-4, 1-5, 3-5 and 3-6, word 1-2 grams better
# than words alone (0.873 against 0.869 at C=10). Differences under ~0.01 are noise at this size.
REFERENCE_SETTINGS: Mapping[str, Any] = MappingProxyType({
    "word_ngrams": (1, 2),
    # Word n-grams seen once are mostly typos and one-off bigrams: dropping them halves the
    # Uzbek vocabulary at no loss (0.879 validation accuracy with them, 0.883 without, at C=1).
    "word_min_df": 2,
    "char_ngrams": (2, 5),
    # Caps keep the fitted model and the solver bounded as sets of long texts grow: the n-grams
    # beyond the most frequent few hundred thousand are rare, cost memory and solver time and
    # carry little signal. All 25,000 IMDB reviews (14,192 training texts) have 279,149 word
    # 1-2-grams seen twice, cut to 200,000, and 169,970 character n-grams (fit 39 s, 1.4 GB
    # peak process memory on 2 cores); short-text sets stay under both (Uzbek: ~96,000 in all).
    "word_max_features": 200_000,
    "char_max_features": 300_000,
    "C": 1.0,
    "max_iter": 1000,
})


@dataclass(frozen=True)
class ReferenceResult:
    """The fitted reference and its figures; `pipeline.predict(texts)` takes cleaned texts."""

    pipeline: Pipeline
    val_accuracy: float
    test_accuracy: float
    test_f1_macro: float
    fit_seconds: float  # vectorizing and fitting the training split only
    params: dict[str, Any]  # the settings used, flat and JSON-friendly, for logging

    def predict(self, texts: list[str]) -> np.ndarray:
        """Class indices (into PreparedData.classes) for cleaned texts."""
        return self.pipeline.predict(texts)


def word_vectorizer(settings: Mapping[str, Any]) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer="word",
        ngram_range=tuple(settings["word_ngrams"]),
        min_df=settings["word_min_df"],
        max_features=settings["word_max_features"],
        sublinear_tf=True,
        dtype=np.float32,
    )


def words_missing(texts: list[str], settings: Mapping[str, Any] = REFERENCE_SETTINGS) -> str | None:
    """Why the word features would have no terms, or None when they have some.

    scikit-learn keeps a term seen in `word_min_df` texts (max_df is 1.0), so one such term is
    enough; this stops at the first (the second text of most sets) instead of fitting the vectorizer.
    """
    analyze, needed = word_vectorizer(settings).build_analyzer(), settings["word_min_df"]
    texts_with: Counter[str] = Counter()
    found_a_word = False
    for text in texts:
        terms = set(analyze(text))
        found_a_word = found_a_word or bool(terms)
        texts_with.update(terms)
        if any(texts_with[term] >= needed for term in terms):
            return None
    if not found_a_word:
        return "no word in the training texts (only symbols, or characters scikit-learn's word pattern skips)"
    return (f"no word appears in {needed} training texts (in a script written without spaces, a whole sentence "
            "is one word)")


def build_reference(settings: Mapping[str, Any] = REFERENCE_SETTINGS, *, words: bool = True) -> Pipeline:
    """The unfitted reference pipeline: word and char_wb TF-IDF features side by side (char only without
    `words`), then logistic regression."""
    features = FeatureUnion(
        [
            ("word", word_vectorizer(settings) if words else "drop"),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=tuple(settings["char_ngrams"]),
                    max_features=settings["char_max_features"],
                    sublinear_tf=True,
                    dtype=np.float32,
                ),
            ),
        ]
    )
    # lbfgs fits one multinomial model over all classes (labels are indices 0..n-1) and needs
    # no random state, so the same data gives the same model.
    classifier = LogisticRegression(C=settings["C"], solver="lbfgs", max_iter=settings["max_iter"])
    return Pipeline([("features", features), ("classifier", classifier)])


def fit_reference(data: PreparedData, settings: Mapping[str, Any] = REFERENCE_SETTINGS) -> ReferenceResult:
    """Fit the reference on the training split; score it on validation and test."""
    started = time.perf_counter()
    no_words = words_missing(data.train.texts, settings)
    pipeline = build_reference(settings, words=no_words is None)
    pipeline.fit(data.train.texts, data.train.labels)
    fit_seconds = time.perf_counter() - started
    test_predicted = pipeline.predict(data.test.texts)
    return ReferenceResult(
        pipeline=pipeline,
        val_accuracy=float(accuracy_score(data.val.labels, pipeline.predict(data.val.texts))),
        test_accuracy=float(accuracy_score(data.test.labels, test_predicted)),
        test_f1_macro=float(f1_score(data.test.labels, test_predicted, average="macro")),
        fit_seconds=fit_seconds,
        params=reference_params(settings, no_words),
    )


def reference_params(settings: Mapping[str, Any], no_words: str | None = None) -> dict[str, Any]:
    """The settings as flat loggable params (n-gram ranges written "1-2"), and the features used."""
    return {
        "model": "tfidf_word_char_logreg",
        **{key: f"{value[0]}-{value[1]}" if isinstance(value, tuple) else value for key, value in settings.items()},
        "features": "char" if no_words else "word+char",
        **({"word_features": f"left out: {no_words}"} if no_words else {}),
    }


def versus_reference(reference: Mapping[str, float] | None, accuracy: float | None = None, *,
                     split: str = "val", model: str = "the best trial") -> str:
    """One line: the sweep's linear reference (its logged metrics) against a model's accuracy on `split`.

    The sweep's summary compares the best trial on the validation split (what the search saw);
    promote compares the registered model on the test split (what it never saw).
    """
    if reference is None:
        return "linear reference: none (search.reference: false, or a sweep from before it existed)"
    line = (f"linear reference (TF-IDF word+char n-grams, logistic regression): val_accuracy "
            f"{reference['val_accuracy']:.4f}, test_accuracy {reference['test_accuracy']:.4f}")
    if accuracy is None:
        return line
    gap = accuracy - reference[f"{split}_accuracy"]
    verdict = f"beats it by {gap:+.4f}" if gap > 0 else "matches it" if gap == 0 else f"falls short of it by {-gap:.4f}"
    return f"{line}; {model} ({split}_accuracy {accuracy:.4f}) {verdict}"


def reference_probabilities(pipeline: Pipeline, cleaned_texts: list[str], classes: int) -> np.ndarray:
    """P(class i) of each cleaned text (rows x classes), in class-index order."""
    if not cleaned_texts:
        return np.empty((0, classes))
    probabilities = pipeline.predict_proba(cleaned_texts)
    # predict_proba's columns follow classifier.classes_: the training split's class indices,
    # which a stratified split holds all of. Placed by index, so a missing class would read 0.
    scores = np.zeros((len(cleaned_texts), classes))
    scores[:, pipeline.classes_.astype(int)] = probabilities
    return scores


def save_reference(pipeline: Pipeline, path: str) -> None:
    """The fitted pipeline in skops' format (no pickle), compressed: ~2 MB for the Uzbek reference."""
    import zipfile

    import skops.io

    for _, vectorizer in pipeline.named_steps["features"].transformer_list:
        if vectorizer != "drop":
            # scikit-learn's term indices are numpy ints, which skops writes one array file each (a
            # 100,000-term vocabulary took minutes); as Python ints the vocabulary is one JSON dict.
            vectorizer.vocabulary_ = {term: int(index) for term, index in vectorizer.vocabulary_.items()}
    # Its JSON names every value's type, ~40x the data: deflate brings the Uzbek reference from 79 MB to 2 MB.
    skops.io.dump(pipeline, path, compression=zipfile.ZIP_DEFLATED, compresslevel=6)


def load_reference(path: str) -> Pipeline:
    """A pipeline save_reference wrote; refused when it holds a type skops does not trust by default."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(file=path)
    if untrusted:  # save_reference never writes one: the file was changed or is not ours
        raise RegistryError(f"{path} holds types textsweep does not load: {untrusted}")
    return skops.io.load(path, trusted=[])
