"""Figures of trials and sweeps logged as artifacts (matplotlib, headless): pure functions from numbers to figures.

The test split's confusion matrix and ROC curve are evaluation.py's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import cm, colors

# Figures are built on `Figure` directly, not through pyplot: pyplot keeps every figure alive
# in its registry (memory that grows trial after trial) and needs a GUI backend.
from matplotlib.figure import Figure


def learning_curves(history: dict[str, list[float]], title: str) -> Figure:
    """Loss and accuracy per epoch, training beside validation."""
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    figure.subplots_adjust(wspace=0.25, top=0.86, bottom=0.13, left=0.07, right=0.98)  # per trial: a fixed layout is ~0.15 s cheaper than a computed one
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for name, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            values = history.get(name)
            if values:
                axis.plot(range(1, len(values) + 1), values, style, label=name)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    return figure


def category_names(column: pd.Series) -> list[str] | None:
    """The sorted names of a column of names (the tokenizer), or None for a column of numbers."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return None
    return sorted(column.dropna().astype(str).unique())


def as_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers for plotting and the forest: a column of names becomes each name's index in `category_names`."""
    numbers = {}
    for column in table.columns:
        names = category_names(table[column])
        numbers[column] = table[column].astype(float) if names is None else table[column].astype(str).map(names.index).astype(float)
    return pd.DataFrame(numbers, index=table.index)


def parallel_coordinates(trials: pd.DataFrame, params: list[str], objective: str) -> Figure:
    """One line per trial across the swept params and the objective, coloured by the objective."""
    columns = [*params, objective]
    table = as_numbers(trials[columns])
    low, high = table.min(), table.max()
    span = (high - low).replace(0, 1.0)
    scaled = (table - low) / span
    figure = Figure(figsize=(max(6, 1.6 * len(columns)), 4.5), layout="constrained")
    axis = figure.subplots()
    colours = cm.viridis((table[objective] - low[objective]) / span[objective])
    order = np.argsort(table[objective].to_numpy())  # best trials drawn last, on top
    for row in order:
        axis.plot(range(len(columns)), scaled.iloc[row].to_numpy(), color=colours[row], alpha=0.8, linewidth=1.8)
    axis.set_xticks(range(len(columns)), columns, rotation=20)
    for position, column in enumerate(columns):
        axis.axvline(position, color="grey", linewidth=0.6)
        names = category_names(trials[column])
        for value, height in ((high[column], 1.02), (low[column], -0.06)):
            label = names[int(value)] if names is not None else f"{value:g}"
            axis.annotate(label, (position, height), ha="center", fontsize=8)
    axis.set_ylim(-0.1, 1.08)
    axis.set_yticks([])
    scalar = cm.ScalarMappable(cmap="viridis", norm=colors.Normalize(low[objective], high[objective]))
    figure.colorbar(scalar, ax=axis, label=objective)
    axis.set_title(f"{len(table)} trials: swept hyperparameters vs {objective}")
    return figure


def hyperparameter_importance(trials: pd.DataFrame, params: list[str], objective: str) -> Figure:
    """How much each swept param explains the objective: a random forest's impurity importances.

    With a handful of trials this is a hint, not a measurement; the title says how many trials it
    stands on.
    """
    from sklearn.ensemble import RandomForestRegressor

    varying = [p for p in params if trials[p].nunique() > 1]
    figure = Figure(figsize=(6, 0.5 * max(len(varying), 2) + 1.5), layout="constrained")
    axis = figure.subplots()
    if varying:
        forest = RandomForestRegressor(n_estimators=200, random_state=0, min_samples_leaf=1)
        forest.fit(as_numbers(trials[varying]).to_numpy(), trials[objective].astype(float).to_numpy())
        order = np.argsort(forest.feature_importances_)
        axis.barh([varying[i] for i in order], forest.feature_importances_[order], color="tab:blue")
        axis.set_xlabel(f"importance for {objective} (random forest, impurity)")
    else:
        axis.text(0.5, 0.5, "no swept parameter varied", ha="center", va="center")
    axis.set_title(f"hyperparameter importance over {len(trials)} trials")
    return figure
