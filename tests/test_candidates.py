"""Promotion chooses among the best trial, the linear reference and their blend, on validation.

One real tiny sweep (embedded Rotten Tomatoes snippets, string labels) whose LSTM cannot learn in
one epoch, so the linear reference beats every trial; promoted three ways into one store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from textsweep.api import sweep as run_sweep
from textsweep.config import SweepConfig, load_config
from textsweep.data import load_data
from textsweep.errors import RegistryError
from textsweep.registry import promote_if_better as promote

# Near chance after one epoch: a vocabulary of two words and a crawling learning rate.
HOPELESS = {"max_features": 2, "embed_dim": 2, "lstm_out": 2, "batch_size": 32, "epochs": 1, "maxlen": 30,
            "recurrent_dropout": 0.0, "output": "softmax", "learning_rate": 1e-5}
COLUMNS = ["label", "probability", "probability_negative", "probability_positive"]


@dataclass
class Swept:
    config: SweepConfig
    directory: Path
    tracking_uri: str
    sweep_run_id: str
    best_run_id: str
    reference_run_id: str


def with_registry(config: SweepConfig, model_name: str, candidates: list[str]) -> SweepConfig:
    registry = config.registry.model_copy(update={"model_name": model_name, "candidates": candidates})
    return config.model_copy(update={"registry": registry})


@pytest.fixture(scope="module")
def swept(tmp_path_factory, review_rows, use_own_store, write_sweep_file) -> Swept:
    directory = tmp_path_factory.mktemp("candidates")
    with pytest.MonkeyPatch.context() as patch:
        uri = use_own_store(patch, directory)
        rows = review_rows(700, seed=3)
        rows.assign(label=rows["label"].map({0: "negative", 1: "positive"})).to_csv(directory / "reviews.csv", index=False)
        path = write_sweep_file(
            directory / "weak-lstm.yaml", name="weak-lstm", source="reviews.csv", defaults=HOPELESS,
            # One trial is enough: the lstm candidate is the sweep's best trial, however many ran.
            search={"algorithm": "random", "max_trials": 1, "space": {"embed_dim": {"values": [1, 2]}}},
        )
        config = load_config(path)
        result = run_sweep(config, quiet=True)
        client = MlflowClient()
        references = client.search_runs([result.experiment_id], "tags.`textsweep.kind` = 'reference'")
        yield Swept(config, directory, uri, result.sweep_run_id, result.leaderboard.iloc[0]["run_id"], references[0].info.run_id)


@pytest.fixture(scope="module")
def reference_promoted(swept):
    return promote(with_registry(swept.config, "weak-or-reference", ["lstm", "reference"]))


def test_the_reference_that_beats_every_trial_is_registered(swept, reference_promoted):
    result, client = reference_promoted, MlflowClient()
    scores = {c.kind: c for c in result.candidates}
    assert set(scores) == {"lstm", "reference"}
    assert scores["reference"].score > scores["lstm"].score  # on validation: the choice
    assert (result.chosen, result.created, result.won, result.alias) == ("reference", True, True, "champion")

    version = client.get_model_version("weak-or-reference", result.version)
    assert version.tags["textsweep.candidate"] == "reference"
    assert version.tags["textsweep.candidate_run_id"] == swept.reference_run_id == version.run_id
    assert "textsweep.trial_run_id" not in version.tags
    assert float(version.tags["textsweep.test_accuracy"]) == pytest.approx(result.test_metrics["test_accuracy"], abs=1e-5)

    summary = result.summary()
    assert "candidates, chosen on" in summary and "by val_accuracy" in summary
    assert "chosen: reference, +" in summary and "on validation over lstm" in summary
    assert f"{scores['lstm'].test_accuracy:.4f}" in summary and f"{scores['reference'].test_accuracy:.4f}" in summary


def test_every_candidate_is_evaluated_by_mlflow_in_its_own_run(swept, reference_promoted):
    client = MlflowClient()
    for run_id in (swept.best_run_id, swept.reference_run_id):
        run = client.get_run(run_id)
        metrics = run.data.metrics
        # MLflow's classifier evaluation, and what textsweep adds by hand (probabilities: ROC AUC)
        assert {"test_accuracy_score", "test_f1_score", "test_precision_score", "test_recall_score"} <= metrics.keys()
        assert metrics["test_accuracy_score"] == pytest.approx(metrics["test_accuracy"])
        assert 0 <= metrics["test_roc_auc"] <= 1 and 0 <= metrics["candidate_val_accuracy"] <= 1
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert {"test_confusion_matrix.png", "test_roc_curve.png"} <= artifacts
        assert run.info.status == "FINISHED"
    reference = {c.kind: c for c in reference_promoted.candidates}["reference"]
    assert client.get_run(swept.reference_run_id).data.metrics["test_accuracy"] == pytest.approx(reference.test_accuracy)


def test_the_registered_reference_serves_raw_text_like_a_trial(swept, reference_promoted, model_server):
    data = load_data(swept.config.data)
    model = mlflow.pyfunc.load_model("models:/weak-or-reference@champion")  # no pickle: no flag needed
    served = model.predict(pd.DataFrame({"text": data.test.texts}))
    assert list(served.columns) == COLUMNS
    assert (served["label"] == np.asarray(data.classes, dtype=object)[data.test.labels]).mean() == pytest.approx(
        reference_promoted.test_metrics["test_accuracy"])
    np.testing.assert_allclose(served[["probability_negative", "probability_positive"]].sum(axis=1), 1.0)

    with model_server("models:/weak-or-reference@champion", swept.tracking_uri, swept.directory) as url:
        body = {"dataframe_split": {"columns": ["text"], "data": [["a moving, beautifully acted film"], [""]]}}
        answer = requests.post(f"{url}/invocations", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [list(row) for row in predictions] == [COLUMNS, COLUMNS]
        assert predictions[0]["label"] in ("negative", "positive")
        expected = model.predict(pd.DataFrame({"text": ["a moving, beautifully acted film", ""]}))
        assert [row["probability"] for row in predictions] == pytest.approx(expected["probability"].tolist())
        refused = requests.post(f"{url}/invocations", json={"inputs": {"text": [1]}}, timeout=60)
        assert refused.status_code == 400 and "'text' must hold strings" in refused.json()["message"]


def test_lstm_only_registers_the_best_trial_however_weak(swept, reference_promoted):
    result = promote(with_registry(swept.config, "lstm-only", ["lstm"]))
    assert (result.chosen, [c.kind for c in result.candidates]) == ("lstm", ["lstm"])
    version = MlflowClient().get_model_version("lstm-only", result.version)
    assert version.tags["textsweep.candidate"] == "lstm" and version.tags["textsweep.trial_run_id"] == swept.best_run_id
    summary = result.summary()
    assert "chosen: lstm, the only candidate" in summary
    assert "linear reference (TF-IDF" in summary and "this model (test_accuracy" in summary  # shown beside it
    served = mlflow.pyfunc.load_model("models:/lstm-only@champion").predict(pd.DataFrame({"text": ["fine", ""]}))
    assert list(served.columns) == COLUMNS


def test_the_blend_competes_and_the_best_on_validation_wins(swept, reference_promoted):
    config = with_registry(swept.config, "any-kind", ["lstm", "reference", "blend"])
    result, client = promote(config), MlflowClient()
    kinds = [c.kind for c in result.candidates]
    assert sorted(kinds) == ["blend", "lstm", "reference"]
    assert result.chosen == kinds[0] and result.candidates[0].score == max(c.score for c in result.candidates)
    blends = client.search_runs([client.get_run(swept.sweep_run_id).info.experiment_id], "tags.`textsweep.kind` = 'blend'")
    assert len(blends) == 1 and blends[0].info.status == "FINISHED"
    blend = blends[0]
    assert blend.data.tags["mlflow.parentRunId"] == swept.sweep_run_id
    assert blend.data.tags["textsweep.trial_run_id"] == swept.best_run_id
    assert 0 < float(blend.data.params["lstm_weight"]) < 1
    assert "test_accuracy_score" in blend.data.metrics and "test_roc_auc" in blend.data.metrics

    again = promote(config)  # the same choice, no new version, no second blend run
    assert (again.chosen, again.version, again.created) == (result.chosen, result.version, False)
    assert len(client.search_runs([blend.info.experiment_id], "tags.`textsweep.kind` = 'blend'")) == 1


def test_a_blend_is_one_model_holding_both_parts(swept, reference_promoted):
    """Registered directly (whichever won above): a blend version answers as its weighted parts do."""
    from textsweep.candidates import log_served_model, score_candidates, trial_parts
    from textsweep.registry import best_trial, find_sweep_run
    from textsweep.tracking import reference_run

    client = MlflowClient()
    sweep = find_sweep_run(client, swept.config, swept.sweep_run_id)
    data = load_data(swept.config.data)
    parts = trial_parts(best_trial(client, sweep, "val_accuracy"), "test_accuracy")
    candidates = score_candidates(client, ["blend"], "test_accuracy", sweep, parts,
                                  reference_run(client, sweep.info.experiment_id, sweep.info.run_id), data)
    assert [c.kind for c in candidates] == ["blend"]
    info = log_served_model(candidates[0], data)
    served = mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame({"text": data.test.texts}))
    assert list(served.columns) == COLUMNS
    np.testing.assert_allclose(served[["probability_negative", "probability_positive"]], candidates[0].test_probabilities, atol=1e-6)


def test_a_sweep_without_its_reference_has_only_the_trial_to_offer(swept, reference_promoted, write_sweep_file):
    path = write_sweep_file(
        swept.directory / "no-reference.yaml", name="no-reference", source="reviews.csv", defaults=HOPELESS,
        search={"algorithm": "random", "max_trials": 1, "reference": False}, registry={"model_name": "no-reference"},
    )
    config = load_config(path)
    run_sweep(config, quiet=True)
    with pytest.raises(RegistryError, match=r"needs the sweep's linear reference.*add lstm to registry.candidates"):
        promote(with_registry(config, "no-reference", ["reference", "blend"]))
    assert MlflowClient().search_model_versions("name = 'no-reference'") == []

    result = promote(config)  # the default candidates: the trial is the only one there is
    assert (result.chosen, [c.kind for c in result.candidates]) == ("lstm", ["lstm"])
    assert "linear reference: none (search.reference: false" in result.summary()
