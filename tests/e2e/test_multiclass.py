"""Multi-class, string labels, any script: `mlflow run` end to end, asserting on what MLflow stored and serves."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
import yaml

from textsweep.serving import class_columns, signature

pytestmark = pytest.mark.e2e

FOUR_CLASSES = ["imdb-negative", "imdb-positive", "rt-negative", "rt-positive"]


def source_by_polarity(table: pd.DataFrame, per_class: int, seed: int = 0) -> pd.DataFrame:
    """`per_class` embedded reviews of each of FOUR_CLASSES: IMDB or Rotten Tomatoes, negative or positive."""
    label = table["source"].map({"imdb": "imdb", "rotten_tomatoes": "rt"}) + table["label"].map({0: "-negative", 1: "-positive"})
    rows = pd.DataFrame({"text": table["text"].str.replace("<br />", " ", regex=False), "label": label})
    return rows.groupby("label").sample(n=per_class, random_state=seed).reset_index(drop=True)


POSITIVE = ["отличный", "прекрасный", "чудесный", "великолепный", "замечательный", "хороший", "добрый", "яркий"]
NEGATIVE = ["ужасный", "скучный", "плохой", "отвратительный", "слабый", "провальный", "нудный", "глупый"]
NOUNS = ["фильм", "сериал", "сюжет", "актёр", "финал", "спектакль", "роман", "мультфильм", "концерт", "альбом"]
ENDINGS = ["!", ".", "!!!", " :)", "…"]


TINY_DEFAULTS = {"max_features": 1000, "embed_dim": 8, "lstm_out": 8, "spatial_dropout": 0.0, "dropout": 0.0,
                 "recurrent_dropout": 0.0, "batch_size": 32, "epochs": 2, "maxlen": 60, "learning_rate": 0.01}


def test_four_string_classes_sweep_promote_and_serve_their_labels(
        store, embedded_reviews, write_sweep_file, mlflow_run, runs_of):
    data = store / "movies4.csv"
    source_by_polarity(embedded_reviews, 100).to_csv(data, index=False)
    config = write_sweep_file(
        store / "movies4.yaml", name="movies4-e2e", source=str(data),
        data={"source": str(data), "test_size": 0.2, "val_size": 0.15, "seed": 1},
        defaults=TINY_DEFAULTS,
        search={"algorithm": "random", "max_trials": 2, "space": {"embed_dim": {"values": [8, 16]}}},
        registry={"model_name": "movies4-e2e"},
    )
    mlflow_run("sweep", config, store)
    mlflow_run("promote", config, store)
    client, runs = runs_of("movies4-e2e")
    trials = [r for r in runs if r.data.tags.get("textsweep.kind") == "trial"]
    assert len(trials) == 2 and all(t.info.status == "FINISHED" for t in trials)
    vocabulary = json.loads(mlflow.artifacts.load_text(f"runs:/{trials[0].info.run_id}/tokenizer/vocabulary.json"))
    assert vocabulary["classes"] == FOUR_CLASSES and vocabulary["cleaning"] == "unicode"

    model = mlflow.pyfunc.load_model("models:/movies4-e2e@champion")
    assert model.metadata.get_output_schema() == signature(FOUR_CLASSES).outputs
    texts = ["A wonderful, moving film.", "Dull and far too long. " * 20, "", "Шедевр!"]
    predictions = model.predict(pd.DataFrame({"text": texts}))
    probabilities = class_columns(FOUR_CLASSES)
    assert probabilities == ["probability_imdb-negative", "probability_imdb-positive",
                             "probability_rt-negative", "probability_rt-positive"]
    assert list(predictions.columns) == ["label", "probability", *probabilities] and len(predictions) == 4
    assert set(predictions["label"]) <= set(FOUR_CLASSES)
    assert predictions[probabilities].sum(axis=1).tolist() == pytest.approx([1.0] * 4, abs=1e-5)
    assert predictions["probability"].tolist() == pytest.approx(predictions[probabilities].max(axis=1).tolist())


def test_cyrillic_texts_train_with_the_default_cleaning(store, write_sweep_file, mlflow_run, runs_of, russian_reviews):
    data = store / "russian.csv"
    russian_reviews({"positive": POSITIVE, "negative": NEGATIVE}, NOUNS, ENDINGS, 80).to_csv(data, index=False)
    config = write_sweep_file(store / "russian.yaml", name="russian-e2e", source=str(data),
                              data={"source": str(data), "seed": 3}, defaults=TINY_DEFAULTS | {"epochs": 3})
    assert "cleaning" not in yaml.safe_load(config.read_text())["data"]
    mlflow_run("train", config, store)
    _, runs = runs_of("russian-e2e")
    (run,) = runs
    assert run.info.status == "FINISHED"
    vocabulary = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/tokenizer/vocabulary.json"))
    assert vocabulary["cleaning"] == "unicode" and vocabulary["classes"] == ["negative", "positive"]
    assert {"очень", "фильм", "отличный", "ужасный"} <= set(vocabulary["words"])
    assert "Отличный" not in vocabulary["words"] and not any("!" in word for word in vocabulary["words"])
