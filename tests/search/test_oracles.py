"""search/oracles.py: KerasTuner's oracles per algorithm, the defaults as trial 0, the grid's resume, the budget."""

import contextlib
import io
import time

import keras_tuner as kt
import pytest

from textsweep import cli
from textsweep.config import parse_config
from textsweep.search.tuner import build_tuner


@pytest.mark.parametrize(
    "algorithm, oracle",
    [
        ("random", kt.oracles.RandomSearchOracle),
        ("bayesian", kt.oracles.BayesianOptimizationOracle),
        ("hyperband", kt.oracles.HyperbandOracle),
        ("grid", kt.oracles.GridSearchOracle),
    ],
)
def test_each_algorithm_builds_its_keras_tuner_oracle(tmp_path, algorithm, oracle, config_for):
    tuner = build_tuner(config_for(algorithm), tmp_path / "t")
    assert isinstance(tuner.oracle, oracle)  # textsweep's subclass: the wall-clock budget, the grid's resume
    assert tuner.oracle.objective.name == "val_accuracy" and tuner.oracle.objective.direction == "max"
    assert tuner.oracle.max_trials == 5  # hyperband too: textsweep caps its brackets at the budget
    assert tuner.oracle.max_consecutive_failed_trials == 3
    names = {hp.name for hp in tuner.oracle.hyperparameters.space}
    assert names == {"embed_dim", "batch_size"}
    if algorithm == "hyperband":
        assert tuner.oracle.max_epochs == 4
        assert isinstance(tuner, kt.Hyperband)  # its brackets' epochs and weight loading stay KerasTuner's


def test_loss_objective_is_minimised(tmp_path, config_for):
    tuner = build_tuner(config_for("random", objective="val_loss"), tmp_path / "t")
    assert tuner.oracle.objective.direction == "min"



# ---------------------------------------------------------------- grid resume (KerasTuner issue 1055)


GRID_2X2 = {"embed_dim": {"values": [8, 16]}, "batch_size": {"values": [32, 64]}}


def finish(oracle, trial, score=0.5):
    """What a tuner does at the end of a trial, without training."""
    oracle.update_trial(trial.trial_id, {"val_accuracy": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    oracle.save()


def grid_points(oracle):
    return sorted(tuple(t.hyperparameters.values[k] for k in ("embed_dim", "batch_size")) for t in oracle.trials.values())


def grid_left_by_a_dead_process(config_for, directory, finished: int):
    """A 2x2 grid sweep whose process ran `finished` trials and died; its config and tuner."""
    config = config_for("grid", max_trials=10, space=GRID_2X2)
    first = build_tuner(config, directory)
    first.save()
    for _ in range(finished):
        finish(first.oracle, first.oracle.create_trial("tuner0"))
    return config, first


def test_grid_resumed_after_a_dead_process_makes_every_point_once(tmp_path, config_for):
    config, first = grid_left_by_a_dead_process(config_for, tmp_path / "t", finished=2)
    running = first.oracle.create_trial("tuner0")  # the process dies during this trial

    resumed = build_tuner(config, tmp_path / "t").oracle
    retried = resumed.create_trial("tuner0")
    assert retried.trial_id == running.trial_id
    finish(resumed, retried)
    while (trial := resumed.create_trial("tuner0")).status == "RUNNING":  # KerasTuner 1.4.8: KeyError here
        finish(resumed, trial)
    assert trial.status == "STOPPED"
    assert grid_points(resumed) == [(8, 32), (8, 64), (16, 32), (16, 64)]
    assert all(t.status == "COMPLETED" for t in resumed.trials.values())
    again = build_tuner(config, tmp_path / "t").oracle  # a finished grid stays finished
    assert again.create_trial("tuner0").status == "STOPPED" and len(again.trials) == 4


def test_grid_resumed_between_trials_finishes_the_grid(tmp_path, config_for):
    # KerasTuner 1.4.8 alone answers STOPPED here: its queue of points to extend starts empty.
    config, _ = grid_left_by_a_dead_process(config_for, tmp_path / "t", finished=3)
    resumed = build_tuner(config, tmp_path / "t").oracle
    last = resumed.create_trial("tuner0")
    assert last.status == "RUNNING" and last.trial_id == "03"
    finish(resumed, last)
    assert resumed.create_trial("tuner0").status == "STOPPED"
    assert grid_points(resumed) == [(8, 32), (8, 64), (16, 32), (16, 64)]



# ---------------------------------------------------------------- the wall-clock budget of a chief's oracle


def test_a_chief_s_oracle_past_its_deadline_hands_out_only_a_first_result(tmp_path, config_for):
    oracle = build_tuner(config_for("random"), tmp_path / "t", deadline=time.time() - 1).oracle
    first = oracle.create_trial("tuner0")
    assert first.status == "RUNNING"  # no trial has finished yet: the first one still starts
    assert oracle.create_trial("tuner1").status == "STOPPED"  # one is running: it will be the result
    first.status = "FAILED"  # ... unless it fails: then another takes its place
    oracle.end_trial(first)
    second = oracle.create_trial("tuner0")
    assert second.status == "RUNNING" and second.trial_id != first.trial_id
    finish(oracle, second)
    assert oracle.create_trial("tuner0").status == "STOPPED" and len(oracle.trials) == 2 and oracle.stopped_by_time


def test_a_chief_s_oracle_stops_handing_out_trials_at_the_deadline(tmp_path, config_for):
    oracle = build_tuner(config_for("random"), tmp_path / "t", deadline=time.time() + 600).oracle
    running = oracle.create_trial("tuner0")
    assert running.status == "RUNNING"
    oracle.deadline = time.time() - 1
    assert oracle.create_trial("tuner0") is running  # a worker asking again for the trial it runs
    assert oracle.create_trial("tuner1").status == "STOPPED"
    assert "tuner1" not in oracle.tuner_ids and oracle.stopped_by_time  # so the chief can exit
    finish(oracle, running)
    assert oracle.create_trial("tuner0").status == "STOPPED" and len(oracle.trials) == 1



# ---------------------------------------------------------------- the defaults first


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "hyperband", "grid"])
def test_every_sweep_s_first_trial_is_the_defaults_then_the_search_goes_on(tmp_path, algorithm):
    config = parse_config({
        "name": "t", "defaults": {"epochs": 2, "embed_dim": 24, "batch_size": 64, "dropout": 0.3},
        "search": {"algorithm": algorithm, "max_trials": 4, "space": {
            "embed_dim": {"min": 8, "max": 32, "step": 8}, "batch_size": {"values": [32, 64, 128]},
            "dropout": {"min": 0.0, "max": 0.5, "step": 0.1}}},
    })
    oracle = build_tuner(config, tmp_path / "t").oracle
    first = oracle.create_trial("tuner0")
    searched = {k: v for k, v in first.hyperparameters.values.items() if not k.startswith("tuner/")}
    assert searched == {"embed_dim": 24, "batch_size": 64, "dropout": pytest.approx(0.3)}
    first.status = "COMPLETED"
    oracle.update_trial(first.trial_id, {"val_accuracy": 0.5})
    oracle.end_trial(first)
    second = oracle.create_trial("tuner0")
    assert second.status == "RUNNING"
    assert {k: v for k, v in second.hyperparameters.values.items() if not k.startswith("tuner/")} != searched


def test_a_default_outside_its_searched_values_is_added_and_said(tmp_path):
    config = parse_config({
        "name": "t", "defaults": {"embed_dim": 100, "max_features": 3000, "dropout": 0.7},
        "search": {"space": {"embed_dim": {"min": 32, "max": 128, "step": 32}, "max_features": {"values": [1000, 2000]},
                             "dropout": {"min": 0.1, "max": 0.5}}},
    })
    assert config.widened_space == {"embed_dim": 100, "max_features": 3000, "dropout": 0.7}
    assert config.search.space["embed_dim"].values == [32, 64, 96, 100, 128]
    assert config.search.space["max_features"].values == [1000, 2000, 3000]
    assert (config.search.space["dropout"].min, config.search.space["dropout"].max) == (0.1, 0.7)
    first = build_tuner(config, tmp_path / "t").oracle.create_trial("tuner0")
    assert first.hyperparameters.values == {"embed_dim": 100, "max_features": 3000, "dropout": pytest.approx(0.7)}
    path = tmp_path / "wide.yaml"
    path.write_text("name: wide\ndefaults: {embed_dim: 100}\nsearch:\n  space:\n    embed_dim: {min: 32, max: 128, step: 32}\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["sweeps", "show", str(path)]) == 0
    assert "# search.space.embed_dim was widened to hold its default 100" in out.getvalue()

