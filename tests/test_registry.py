"""Promotion: real tiny sweeps, then the registry and the trial runs as MLflow stores them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import use_own_store, review_rows, write_sweep_file
from textsweep import cli
from textsweep.config import SweepConfig, load_config
from textsweep.data import load_data
from textsweep.errors import RegistryError
from textsweep.registry import promote
from textsweep.tracking import run_sweep

MODEL_NAME = "rt-tiny"
# A model that can learn in two epochs on 400 reviews, and one that cannot: a vocabulary of one
# word and a crawling learning rate leave it near chance.
GOOD = {"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 32, "epochs": 2,
        "recurrent_dropout": 0.0, "output": "sigmoid", "learning_rate": 0.01}
HOPELESS = GOOD | {"max_features": 2, "embed_dim": 1, "lstm_out": 1, "epochs": 1, "learning_rate": 1e-5}


def sweep_file(directory: Path, name: str, defaults: dict, *, trials: int, data_seed: int = 42) -> Path:
    return write_sweep_file(
        directory / f"{name}.yaml",
        name=name,
        source="reviews.csv",
        data={"source": "reviews.csv", "seed": data_seed},
        defaults=defaults,
        search={"algorithm": "random", "max_trials": trials, "space": {"embed_dim": {"values": [4, 8]}}},
        registry={"model_name": MODEL_NAME},
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
def registry(tmp_path_factory) -> Registry:
    """Three tiny sweeps in one store (about 30 s): the good one, a hopeless one, one on another split."""
    directory = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as patch:
        use_own_store(patch, directory)
        review_rows(400).to_csv(directory / "reviews.csv", index=False)
        good_file = sweep_file(directory, "rt-good", GOOD, trials=2)
        good = load_config(good_file)
        sweep = run_sweep(good, quiet=True)
        hopeless = load_config(sweep_file(directory, "rt-hopeless", HOPELESS, trials=1))
        run_sweep(hopeless, quiet=True)
        other_split = load_config(sweep_file(directory, "rt-other-split", HOPELESS, trials=1, data_seed=7))
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
    for name in ("test_accuracy", "test_precision", "test_recall", "test_f1", "test_roc_auc"):
        assert 0.0 <= run.data.metrics[name] <= 1.0
        assert run.data.metrics[name] == pytest.approx(first_promotion.test_metrics[name])
    artifacts = {a.path for a in MlflowClient().list_artifacts(registry.best_run_id)}
    assert {"test_confusion_matrix.png", "test_roc_curve.png", "tokenizer"} <= artifacts
    assert (run.info.status, run.info.end_time) == ("FINISHED", registry.best_run_ended)  # reopened, closed as it was


def test_champion_serves_raw_text_as_it_was_evaluated(registry, first_promotion):
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    predictions = model.predict(pd.DataFrame({"text": ["Juda yaxshi ilova, menga yoqdi!", "", "Yomon, ishlamayapti"]}))
    assert list(predictions.columns) == ["label", "probability"] and len(predictions) == 3
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
    assert "does not beat the champion" in result.summary()
    assert aliases() == {"champion": "1", "challenger": result.version}


def test_champion_from_other_data_is_re_evaluated_on_the_candidate_split(registry, first_promotion):
    result = promote(registry.other_split)
    assert result.data_fingerprint != load_data(registry.good.data).fingerprint
    assert result.champion.version == "1" and result.champion.reevaluated
    assert not result.won and aliases()["champion"] == "1" and aliases()["challenger"] == result.version
    tags = MlflowClient().get_model_version(MODEL_NAME, result.version).tags
    assert float(tags["textsweep.champion_test_accuracy"]) == pytest.approx(result.champion.test_accuracy, abs=1e-5)
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
    with pytest.raises(RegistryError, match="has no FINISHED sweep run.*--sweep-run-id"):
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
    assert "textsweep: error: cannot load model 'models:/uz-tiny@nobody'" in captured.err
    assert "Traceback" not in captured.err
