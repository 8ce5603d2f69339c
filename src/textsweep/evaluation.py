"""Scores of a model's class probabilities: test metrics, the validation score, the blend's weight, figures.

Pure: no registry and no MLflow store. candidates.py computes the probabilities through the
serving code and logs what this module computes; registry.py gates on it.

Any number of classes: the model's answers are a class-probability matrix (rows x classes), a
sigmoid model's one column P(1) read as [1 - P, P] (serving.class_probabilities).
"""

from __future__ import annotations

import re

import numpy as np
from matplotlib.figure import Figure

# What evaluation_metrics names (per class: _<class index>); each is also a version tag textsweep.<name>.
TEST_METRIC = re.compile(r"test_(accuracy|f1_macro|precision|recall|f1|roc_auc|precision_\d+|recall_\d+)")
PER_CLASS_METRIC = re.compile(r"test_(precision|recall)_\d+")  # in the run and the tags, not the summary


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """The most probable class of each row; binary: 1 when P(1) > 0.5, as serving and Keras decide."""
    return np.argmax(probabilities, axis=1)  # a 0.5/0.5 tie goes to class 0, as P(1) > 0.5 does


def evaluation_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Test metrics from true class indices and the class-probability matrix (rows x classes).

    Any number of classes: `test_accuracy`, `test_f1_macro`, `test_precision_<i>` and
    `test_recall_<i>` for class index i, and `test_roc_auc` (one-vs-rest, macro-averaged, for more
    than two classes). Binary also keeps `test_precision`, `test_recall`, `test_f1` with class 1
    positive, and its ROC AUC is P(1)'s.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score

    classes = list(range(probabilities.shape[1]))
    predicted = predicted_classes(probabilities)
    precision, recall, _, _ = precision_recall_fscore_support(labels, predicted, labels=classes, zero_division=0)
    metrics = {
        "test_accuracy": accuracy_score(labels, predicted),
        "test_f1_macro": f1_score(labels, predicted, labels=classes, average="macro", zero_division=0),
    }
    if len(classes) == 2:
        metrics |= {
            "test_precision": precision[1],
            "test_recall": recall[1],
            "test_f1": f1_score(labels, predicted, zero_division=0),
        }
    metrics |= {f"test_precision_{i}": precision[i] for i in classes}
    metrics |= {f"test_recall_{i}": recall[i] for i in classes}
    if set(np.unique(labels)) == set(classes):  # stratified splits hold every class; AUC needs them all
        metrics["test_roc_auc"] = (
            roc_auc_score(labels, probabilities[:, 1])
            if len(classes) == 2
            else roc_auc_score(labels, probabilities, multi_class="ovr", average="macro", labels=classes)
        )
    return {name: float(value) for name, value in metrics.items()}


def validation_score(metric: str, labels: np.ndarray, probabilities: np.ndarray) -> float:
    """What candidates are chosen by on the validation split: the gate metric's validation twin."""
    return gate_score(metric, labels, predicted_classes(probabilities), probabilities.shape[1])


# The blend's weights tried: coarse on purpose, so the weight has little room to fit the
# validation split's noise (one standard error of accuracy is ~0.8 points on 1,800 rows).
BLEND_WEIGHTS = tuple(round(0.1 * step, 1) for step in range(1, 10))


def blend_weight(labels: np.ndarray, lstm: np.ndarray, reference: np.ndarray) -> float:
    """The trial's weight in `w * lstm + (1 - w) * reference` with the lowest validation log loss.

    Log loss, not accuracy: a proper score that changes smoothly with the weight, where accuracy
    moves in steps of one row and ties over wide ranges (stacking's usual choice).
    """
    from sklearn.metrics import log_loss

    classes = list(range(lstm.shape[1]))
    # Float32 probabilities (a softmax, scikit-learn on float32 features) sum to 1 only within ~1e-7.
    lstm, reference = (p / p.sum(axis=1, keepdims=True) for p in (lstm, reference))
    losses = [log_loss(labels, w * lstm + (1 - w) * reference, labels=classes) for w in BLEND_WEIGHTS]
    return BLEND_WEIGHTS[int(np.argmin(losses))]


def gate_score(metric: str, labels: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """`registry.gate_metric` from labels alone: what a champion's served `label` column allows."""
    from sklearn.metrics import accuracy_score, f1_score

    if metric == "test_f1_macro":
        return float(f1_score(labels, predicted, labels=list(range(classes)), average="macro", zero_division=0))
    return float(accuracy_score(labels, predicted))


# ---------------------------------------------------------------- figures (built on Figure, not pyplot: see plots.py)


def evaluation_figures(labels: np.ndarray, probabilities: np.ndarray, title: str) -> dict[str, Figure]:
    """The figures MLflow's classifier evaluation cannot draw from a pyfunc model: the binary ROC curve.

    (Its confusion matrix needs only labels, and candidates.py has MLflow draw it.)
    """
    if probabilities.shape[1] != 2:
        return {}
    return {"test_roc_curve.png": roc_curve_figure(labels, probabilities[:, 1], title)}


def roc_curve_figure(labels: np.ndarray, probability: np.ndarray, title: str) -> Figure:
    """The binary ROC curve of P(1), with the chance diagonal."""
    from sklearn.metrics import RocCurveDisplay

    figure = Figure(figsize=(5, 4.5), layout="constrained")
    RocCurveDisplay.from_predictions(labels, probability, name="test split", plot_chance_level=True, ax=figure.subplots())
    figure.axes[0].set_title(title)
    return figure
