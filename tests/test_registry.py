"""Promotion: real tiny sweeps, then the registry and the trial runs as MLflow stores them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from textsweep import cli
from textsweep.config import SweepConfig, load_config
from textsweep.data import load_data
from textsweep.errors import RegistryError
from textsweep import registry as registry_module
from textsweep.evaluation import evaluation_metrics, gate_score
from textsweep.registry import (
    champion_on_split,
    gate_outcome,
    promote_if_better as promote,
    register_once,
)
from textsweep.serving import class_probabilities
from textsweep.text import Vocabulary
from textsweep.api import sweep as run_sweep

MODEL_NAME = "rt-tiny"
# A model that can learn in two epochs on 400 reviews, and one that cannot: a vocabulary of one
# word and a crawling learning rate leave it near chance.
# Padded batches: here a text's length gives away its site, so length-bucketed batches would hold
# one class each and Adam would chase the batch's class (README, length_buckets).
GOOD = {"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 32, "epochs": 2, "maxlen": 40,
        "recurrent_dropout": 0.0, "output": "sigmoid", "learning_rate": 0.01, "length_buckets": False}
HOPELESS = GOOD | {"max_features": 2, "embed_dim": 1, "lstm_out": 1, "epochs": 1, "learning_rate": 1e-5}


def sweep_file(write_sweep_file, directory: Path, name: str, defaults: dict, *, trials: int, data_seed: int = 42) -> Path:
    return write_sweep_file(
        directory / f"{name}.yaml",
        name=name,
        source="reviews.csv",
        data={"source": "reviews.csv", "seed": data_seed},
        defaults=defaults,
        # No linear reference: the trial is the only candidate, always, since these tests are about
        # registering and gating (test_candidates.py chooses among kinds).
        search={"algorithm": "random", "max_trials": trials, "reference": False, "space": {"embed_dim": {"values": [4, 8]}}},
        registry={"model_name": MODEL_NAME, "candidates": ["lstm"]},
    )


@dataclass
class Registry:
    good: SweepConfig
    good_file: Path
    good_sweep_run_id: str
    best_run_id: str
    best_run_ended: int  # the trial run's end time before any promotion
    hopeless: SweepConfig  # same data, worse model
    other_split: SweepConfig  # other data seed: another fingerprint


@pytest.fixture(scope="module")
def registry(tmp_path_factory, review_rows, use_own_store, write_sweep_file) -> Registry:
    """Three tiny sweeps in one store (about 30 s): the good one, a hopeless one, one on another split."""
    directory = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as patch:
        use_own_store(patch, directory)
        # Which site a real review comes from (1: IMDB, 0: Rotten Tomatoes): learnable in two epochs
        # (~0.98 test accuracy), so the good and the hopeless model are far apart on every machine.
        site = pd.concat([review_rows(200, source="imdb").assign(label=1), review_rows(200).assign(label=0)])
        site.sample(frac=1, random_state=0).to_csv(directory / "reviews.csv", index=False)
        good_file = sweep_file(write_sweep_file, directory, "rt-good", GOOD, trials=2)
        good = load_config(good_file)
        sweep = run_sweep(good, quiet=True)
        hopeless = load_config(sweep_file(write_sweep_file, directory, "rt-hopeless", HOPELESS, trials=1))
        run_sweep(hopeless, quiet=True)
        other_split = load_config(sweep_file(write_sweep_file, directory, "rt-other-split", HOPELESS, trials=1, data_seed=7))
        run_sweep(other_split, quiet=True)
        best_run_id = sweep.leaderboard.iloc[0]["run_id"]
        ended = MlflowClient().get_run(best_run_id).info.end_time
        yield Registry(good, good_file, sweep.sweep_run_id, best_run_id, ended, hopeless, other_split)


@pytest.fixture(scope="module")
def first_promotion(registry):
    return promote(registry.good)


def versions(name: str = MODEL_NAME) -> list:
    return sorted(MlflowClient().search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def aliases(name: str = MODEL_NAME) -> dict[str, str]:
    return {alias: str(version) for alias, version in MlflowClient().get_registered_model(name).aliases.items()}


def test_first_promotion_registers_the_best_trial_as_champion(registry, first_promotion):
    result = first_promotion
    assert (result.model_name, result.version, result.alias, result.won, result.created) == (MODEL_NAME, "1", "champion", True, True)
    assert result.trial.run_id == registry.best_run_id  # the leaderboard's best by best_val_accuracy
    assert result.trial.sweep_run_id == registry.good_sweep_run_id
    assert aliases() == {"champion": "1"}

    summary = result.summary()
    assert f"'{MODEL_NAME}' version 1" in summary and "@champion" in summary
    assert f"models:/{MODEL_NAME}@champion" in summary

    version = versions()[0]
    data = load_data(registry.good.data)
    assert version.tags["textsweep.sweep_run_id"] == registry.good_sweep_run_id
    assert version.tags["textsweep.trial_run_id"] == registry.best_run_id
    assert version.tags["textsweep.trial_id"] == result.trial.trial_id
    assert version.tags["textsweep.data_fingerprint"] == data.fingerprint
    assert float(version.tags["textsweep.test_accuracy"]) == pytest.approx(result.test_metrics["test_accuracy"], abs=1e-5)
    assert version.run_id == registry.best_run_id


def test_test_evaluation_is_logged_to_the_trial_run(registry, first_promotion):
    run = MlflowClient().get_run(registry.best_run_id)
    binary = ("test_accuracy", "test_precision", "test_recall", "test_f1", "test_roc_auc")
    for name in (*binary, "test_f1_macro", "test_precision_0", "test_precision_1", "test_recall_0", "test_recall_1"):
        assert 0.0 <= run.data.metrics[name] <= 1.0
        assert run.data.metrics[name] == pytest.approx(first_promotion.test_metrics[name])
    artifacts = {a.path for a in MlflowClient().list_artifacts(registry.best_run_id)}
    assert {"test_confusion_matrix.png", "test_roc_curve.png", "tokenizer"} <= artifacts
    assert (run.info.status, run.info.end_time) == ("FINISHED", registry.best_run_ended)  # reopened, closed as it was


def test_champion_serves_raw_text_as_it_was_evaluated(registry, first_promotion):
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    predictions = model.predict(pd.DataFrame({"text": ["Juda yaxshi ilova, menga yoqdi!", "", "Yomon, ishlamayapti"]}))
    assert list(predictions.columns) == ["label", "probability", "probability_0", "probability_1"] and len(predictions) == 3
    assert set(predictions["label"]) <= {0, 1}
    assert predictions["probability"].between(0, 1).all()
    assert ((predictions["probability"] > 0.5).astype(int) == predictions["label"]).all()

    # Raw test texts through the served model reproduce the accuracy the gate used.
    test = load_data(registry.good.data).test
    served = model.predict(pd.DataFrame({"text": test.texts}))
    assert (served["label"].to_numpy() == test.labels).mean() == pytest.approx(first_promotion.test_metrics["test_accuracy"])


def test_promoting_the_same_trial_again_adds_no_version(registry, first_promotion):
    again = promote(registry.good)
    assert (again.version, again.created, again.alias, again.won) == ("1", False, "champion", True)
    assert "already registered" in again.summary()
    assert [str(v.version) for v in versions()] == ["1"]
    assert aliases() == {"champion": "1"}


def test_worse_candidate_on_the_same_split_becomes_challenger(registry, first_promotion):
    result = promote(registry.hopeless)
    assert result.created and not result.won and result.alias == "challenger"
    assert result.test_metrics["test_accuracy"] < first_promotion.test_metrics["test_accuracy"]
    assert result.champion.version == "1" and not result.champion.reevaluated
    assert "does not beat the champion: test_accuracy" in result.summary()
    assert "alias @challenger (gate: test_accuracy)" in result.summary()
    assert aliases() == {"champion": "1", "challenger": result.version}


def test_champion_from_other_data_is_re_evaluated_on_the_candidate_split(registry, first_promotion):
    result = promote(registry.other_split)
    assert result.data_fingerprint != load_data(registry.good.data).fingerprint
    assert result.champion.version == "1" and result.champion.reevaluated
    assert not result.won and aliases()["champion"] == "1" and aliases()["challenger"] == result.version
    tags = MlflowClient().get_model_version(MODEL_NAME, result.version).tags
    assert float(tags["textsweep.champion_test_accuracy"]) == pytest.approx(result.champion.score, abs=1e-5)
    assert "re-evaluated on this test split" in tags["textsweep.gate"]


def test_better_candidate_takes_the_alias(registry, first_promotion):
    other_name = "rt-tiny-reversed"
    hopeless = promote(registry.hopeless.model_copy(update={"registry": registry.hopeless.registry.model_copy(update={"model_name": other_name})}))
    assert hopeless.won  # the first version of a model is its champion
    good = promote(registry.good.model_copy(update={"registry": registry.good.registry.model_copy(update={"model_name": other_name})}))
    assert good.won and good.alias == "champion" and "beats the champion" in good.gate
    assert aliases(other_name) == {"champion": good.version}


def test_promote_without_a_finished_sweep_is_refused_and_changes_nothing(registry, first_promotion):
    before = ([(str(v.version), v.tags) for v in versions()], aliases())
    never_swept = registry.good.model_copy(update={"name": "rt-never-swept"})
    with pytest.raises(RegistryError, match="no MLflow experiment 'rt-never-swept'.*textsweep sweep --config"):
        promote(never_swept)

    client = MlflowClient()
    experiment = client.create_experiment("rt-never-swept")
    client.create_run(experiment, tags={"textsweep.kind": "sweep"})  # still RUNNING
    with pytest.raises(RegistryError, match="has no FINISHED sweep run.*sweep_run_id="):
        promote(never_swept)
    with pytest.raises(RegistryError, match="is not a sweep run of experiment 'rt-good'"):
        promote(registry.good, sweep_run_id=registry.best_run_id)  # a trial's run, not the sweep's
    with pytest.raises(RegistryError, match="no such run"):
        promote(registry.good, sweep_run_id="0" * 32)
    assert ([(str(v.version), v.tags) for v in versions()], aliases()) == before


def test_promote_refuses_data_that_changed_since_the_sweep(registry, first_promotion):
    reshuffled = registry.good.model_copy(update={"data": registry.good.data.model_copy(update={"seed": 3})})
    with pytest.raises(RegistryError, match="fingerprint.*not the one the search never saw"):
        promote(reshuffled)


def test_cli_promote_and_predict(registry, first_promotion, capsys):
    assert cli.main(["promote", "--config", str(registry.good_file)]) == 0
    out = capsys.readouterr().out
    assert "already registered" in out and f"models:/{MODEL_NAME}@champion" in out

    assert cli.main(["predict", "--model", f"models:/{MODEL_NAME}@champion", "Juda yaxshi ilova", ""]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["label", "probability", "text"]
    assert len(lines) == 3
    label, probability, *text = lines[1].split()
    assert label in {"0", "1"} and 0 <= float(probability) <= 1 and " ".join(text) == "Juda yaxshi ilova"

    assert cli.main(["predict", "--model", f"models:/{MODEL_NAME}@nobody", "x"]) == 2
    captured = capsys.readouterr()
    assert f"textsweep: error: cannot load model 'models:/{MODEL_NAME}@nobody'" in captured.err
    assert "Traceback" not in captured.err


# ---------------------------------------------------------------- evaluation and gate, on hand-made arrays

# Six texts, three classes. Predicted (each row's most probable class): [0, 1, 1, 1, 2, 0].
THREE_CLASS_LABELS = np.array([0, 0, 1, 1, 2, 2])
THREE_CLASS_PROBABILITIES = np.array(
    [[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.5, 0.1, 0.4]]
)


def test_metrics_for_three_classes():
    metrics = evaluation_metrics(THREE_CLASS_LABELS, THREE_CLASS_PROBABILITIES)
    # By hand: class 0 predicted twice, right once; class 1 three times, right twice; class 2 once, right.
    expected = {
        "test_accuracy": 4 / 6,
        "test_precision_0": 1 / 2, "test_precision_1": 2 / 3, "test_precision_2": 1.0,
        "test_recall_0": 1 / 2, "test_recall_1": 1.0, "test_recall_2": 1 / 2,
        "test_f1_macro": (1 / 2 + 4 / 5 + 2 / 3) / 3,  # F1 per class: 0.5, 0.8, 2/3
    }
    assert set(metrics) == {*expected, "test_roc_auc"}  # no binary-only test_precision / test_f1
    assert metrics == pytest.approx(expected | {"test_roc_auc": metrics["test_roc_auc"]})
    # One-vs-rest, macro: the mean of each class's AUC against the other two. By hand, of the
    # 2 x 4 (class member, other) pairs ranked right by P(class): 7 for class 0, 7 for 1, 8 for 2.
    assert metrics["test_roc_auc"] == pytest.approx((7 / 8 + 7 / 8 + 8 / 8) / 3)


def test_binary_metrics_keep_their_names_and_match_from_either_output_layer():
    labels = np.array([0, 0, 1, 1, 1])
    positive = np.array([0.2, 0.6, 0.7, 0.4, 0.9])  # predicted [0, 1, 1, 0, 1]
    metrics = evaluation_metrics(labels, np.column_stack([1 - positive, positive]))
    assert metrics == pytest.approx({
        "test_accuracy": 3 / 5, "test_precision": 2 / 3, "test_recall": 2 / 3, "test_f1": 2 / 3,
        "test_roc_auc": 5 / 6,  # 5 of the 6 (positive, negative) pairs ranked right
        "test_precision_0": 1 / 2, "test_recall_0": 1 / 2, "test_precision_1": 2 / 3, "test_recall_1": 2 / 3,
        "test_f1_macro": (1 / 2 + 2 / 3) / 2,
    })

    class Sigmoid:  # a Keras model's `predict`, one column P(1)
        def predict(self, ids, **kwargs):
            return positive[: len(ids), None].astype(np.float32)

    texts = ["good film", "Bad", "", "good", "bad bad"]
    probabilities = class_probabilities(Sigmoid(), Vocabulary(("good", "bad"), maxlen=3), texts)
    assert probabilities.shape == (5, 2) and probabilities.sum(axis=1) == pytest.approx(np.ones(5))
    assert evaluation_metrics(labels, probabilities) == pytest.approx(metrics)


def test_gate_compares_on_the_configured_metric():
    # Imbalanced labels: always answering class 0 has the better accuracy, the worse macro-F1.
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 2])
    majority, balanced = np.zeros(8, dtype=int), np.array([0, 0, 0, 1, 1, 2, 1, 2])
    assert gate_score("test_accuracy", labels, majority, 3) == pytest.approx(6 / 8)
    assert gate_score("test_accuracy", labels, balanced, 3) == pytest.approx(5 / 8)
    assert gate_score("test_f1_macro", labels, majority, 3) == pytest.approx((6 / 7) / 3)
    assert gate_score("test_f1_macro", labels, balanced, 3) == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)

    # A champion with the same split is compared by the recorded tag of the gate metric.
    tags = {"textsweep.data_fingerprint": "abc", "textsweep.test_accuracy": "0.75", "textsweep.test_f1_macro": "0.2857"}
    client = SimpleNamespace(get_model_version=lambda name, version: SimpleNamespace(tags=tags))
    data = SimpleNamespace(fingerprint="abc")
    by_f1 = champion_on_split(client, "m", "3", data, "test_f1_macro")
    assert (by_f1.version, by_f1.metric, by_f1.score, by_f1.reevaluated) == ("3", "test_f1_macro", 0.2857, False)
    won, gate = gate_outcome("test_f1_macro", 0.6111, by_f1)
    assert won and gate.startswith("beats the champion: test_f1_macro 0.6111 vs 0.2857 of version 3")
    won, gate = gate_outcome("test_accuracy", 0.625, champion_on_split(client, "m", "3", data, "test_accuracy"))
    assert not won and "test_accuracy 0.6250 vs 0.7500" in gate
    assert gate_outcome("test_f1_macro", 0.5, None) == (True, "test_f1_macro 0.5000; no version held the alias before")


def test_a_duplicate_registered_by_a_racing_promote_is_deleted(registry, first_promotion, monkeypatch):
    """What a tracking server relies on (no file lock there): the oldest version of a trial is kept."""
    name, client = "rt-duplicates", MlflowClient()
    champion = client.get_model_version(MODEL_NAME, first_promotion.version)

    def register_after_a_racer(client, config, trial, data, candidate):
        client.create_registered_model(name)
        for _ in range(2):  # the racer's version first, then this promote's
            mine = client.create_model_version(name, source=champion.source, run_id=trial.run_id,
                                               tags={"textsweep.trial_run_id": trial.run_id})
        return mine

    monkeypatch.setattr(registry_module, "log_and_register", register_after_a_racer)
    config = registry.good.model_copy(update={"registry": registry.good.registry.model_copy(update={"model_name": name})})
    trial = first_promotion.trial
    kept, created = register_once(client, config, trial, None, SimpleNamespace(kind="lstm", run_id=trial.run_id))
    assert (str(kept.version), created) == ("1", False)
    assert [str(v.version) for v in versions(name)] == ["1"]


# ---------------------------------------------------------------- two promotes at once


def race_file(registry: Registry, source: SweepConfig, model_name: str) -> Path:
    """`source`'s sweep file, registering under `model_name`."""
    directory = registry.good_file.parent
    config = yaml.safe_load((directory / f"{source.name}.yaml").read_text()) | {"registry": {"model_name": model_name, "candidates": ["lstm"]}}
    path = directory / f"{source.name}-{model_name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def promote_twice_at_once(start_textsweep, sweep_file: Path) -> list[tuple[int, str, str]]:
    """Two real `textsweep promote` processes on one store, started together: (rc, stdout, stderr) each."""
    store = os.environ["MLFLOW_TRACKING_URI"]  # the registry fixture's store
    processes = [start_textsweep(["promote", "--config", str(sweep_file)], sweep_file.parent, MLFLOW_TRACKING_URI=store)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in processes]
    return [(process.returncode, out, err) for process, (out, err) in zip(processes, outputs)]


def trial_of(name: str, version: str) -> str:
    return MlflowClient().get_model_version(name, version).tags["textsweep.trial_run_id"]


def test_two_promotes_at_once_register_one_version_and_one_holder(registry, first_promotion, start_textsweep):
    name = "rt-race"
    # Round 1: an empty model, both promote the good trial.
    # Round 2: both promote a worse trial against that champion.
    # Round 3: both promote the good trial again: nothing new.
    for round_number, (source, alias) in enumerate(
        [(registry.good, "champion"), (registry.hopeless, "challenger"), (registry.good, "champion")], start=1
    ):
        results = promote_twice_at_once(start_textsweep, race_file(registry, source, name))
        for rc, out, err in results:
            assert rc == 0, f"round {round_number}: exit {rc}\n{out}\n{err[-3000:]}"
            assert f"@{alias}" in out and "Traceback" not in err, f"round {round_number}:\n{out}\n{err[-3000:]}"
        by_trial: dict[str, list[str]] = {}
        for version in versions(name):
            by_trial.setdefault(version.tags["textsweep.trial_run_id"], []).append(str(version.version))
        assert all(len(numbers) == 1 for numbers in by_trial.values()), f"round {round_number}: {by_trial}"
        assert len(by_trial) == (1 if round_number == 1 else 2)
        held = aliases(name)
        assert held["champion"] == by_trial[registry.best_run_id][0], f"round {round_number}: {held}"
        if "challenger" in held:
            assert trial_of(name, held["challenger"]) != trial_of(name, held["champion"]), f"round {round_number}: {held}"
        assert ("challenger" in held) == (round_number > 1)
        registered = [out for _, out, _ in results if "already registered" not in out]
        assert len(registered) == (0 if round_number == 3 else 1), f"round {round_number}: {[out for _, out, _ in results]}"


def test_gate_on_macro_f1_compares_the_recorded_macro_f1(registry, first_promotion):
    """Last: it may move rt-tiny's champion. The worse trial again, now gated on test_f1_macro."""
    by_f1 = registry.hopeless.registry.model_copy(update={"gate_metric": "test_f1_macro"})
    result = promote(registry.hopeless.model_copy(update={"registry": by_f1}))
    assert not result.created  # registered by the accuracy-gated promote above: its recorded metrics are reused
    assert (result.gate_metric, result.champion.metric, result.champion.version) == ("test_f1_macro", "test_f1_macro", "1")
    champion_f1 = float(MlflowClient().get_model_version(MODEL_NAME, "1").tags["textsweep.test_f1_macro"])
    assert result.champion.score == pytest.approx(champion_f1)
    assert result.won == (result.test_metrics["test_f1_macro"] > champion_f1)
    assert f"(gate: test_f1_macro): {'beats' if result.won else 'does not beat'} the champion: test_f1_macro" in result.summary()
    assert aliases()[result.alias] == result.version
    assert "challenger" not in aliases() or aliases()["challenger"] != aliases()["champion"]
