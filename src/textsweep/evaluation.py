"""A trial scored on the test split: metrics and figures, from raw test texts as they will be served.

Pure: no registry and no MLflow store. registry.py chooses the trial, loads its Keras model and
tokenizer, logs what this module computes and gates on it.

Any number of classes: the model's answers are a class-probability matrix (rows x classes), a
sigmoid model's one column P(1) read as [1 - P, P] (serving.class_probabilities).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from textsweep import serving
from textsweep.data import PreparedData
from textsweep.text import load_tokenizer

# What evaluation_metrics names (per class: _<class index>); each is also a version tag textsweep.<name>.
TEST_METRIC = re.compile(r"test_(accuracy|f1_macro|precision|recall|f1|roc_auc|precision_\d+|recall_\d+)")
PER_CLASS_METRIC = re.compile(r"test_(precision|recall)_\d+")  # in the run and the tags, not the summary


@dataclass(frozen=True)
class Evaluation:
    """A trial scored on the test split, with the model and tokenizer that registering it needs."""

    keras_model: Any
    tokenizer_json: str  # word vocabulary or subword pieces, as the trial logged it
    probabilities: np.ndarray  # rows x classes
    metrics: dict[str, float]


def evaluate(keras_model: Any, tokenizer_json: str, data: PreparedData) -> Evaluation:
    """The model scored on `data`'s raw test texts, through the serving code: what is measured is what will be served."""
    probabilities = serving.class_probabilities(keras_model, load_tokenizer(tokenizer_json), data.test.texts)
    return Evaluation(keras_model, tokenizer_json, probabilities, evaluation_metrics(data.test.labels, probabilities))


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


def gate_score(metric: str, labels: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """`registry.gate_metric` from labels alone: what a champion's served `label` column allows."""
    from sklearn.metrics import accuracy_score, f1_score

    if metric == "test_f1_macro":
        return float(f1_score(labels, predicted, labels=list(range(classes)), average="macro", zero_division=0))
    return float(accuracy_score(labels, predicted))


# ---------------------------------------------------------------- figures (built on Figure, not pyplot: see plots.py)


def evaluation_figures(labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[Any], title: str) -> dict[str, Figure]:
    """The test split's figures by artifact name: a confusion matrix, and a ROC curve for two classes."""
    figures = {"test_confusion_matrix.png": confusion_matrix_figure(labels, predicted_classes(probabilities), class_names, title)}
    if probabilities.shape[1] == 2:
        figures["test_roc_curve.png"] = roc_curve_figure(labels, probabilities[:, 1], title)
    return figures


def confusion_matrix_figure(labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[Any], title: str) -> Figure:
    """An n x n confusion matrix, rows the true classes, ticks the class names."""
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.5, 0.6 * len(class_names) + 2)
    figure = Figure(figsize=(size, size - 0.5), layout="constrained")
    ConfusionMatrixDisplay.from_predictions(
        labels, predicted, labels=list(range(len(class_names))), display_labels=[str(c) for c in class_names],
        cmap="Blues", colorbar=False, xticks_rotation="vertical" if len(class_names) > 4 else "horizontal",
        ax=figure.subplots(),
    )
    figure.axes[0].set_title(title)
    return figure


def roc_curve_figure(labels: np.ndarray, probability: np.ndarray, title: str) -> Figure:
    """The binary ROC curve of P(1), with the chance diagonal."""
    from sklearn.metrics import RocCurveDisplay

    figure = Figure(figsize=(5, 4.5), layout="constrained")
    RocCurveDisplay.from_predictions(labels, probability, name="test split", plot_chance_level=True, ax=figure.subplots())
    figure.axes[0].set_title(title)
    return figure
