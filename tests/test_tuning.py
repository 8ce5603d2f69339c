import keras_tuner as kt
import pytest

from textsweep.config import parse_config
from textsweep.errors import ConfigError
from textsweep.tuning import build_tuner, check_resumable, sweep_identity, write_state

SPACE = {"embed_dim": {"min": 8, "max": 32, "step": 8}, "batch_size": {"values": [32, 64]}}


def config_for(algorithm, **search):
    return parse_config({"name": "t", "defaults": {"epochs": 4}, "search": {"algorithm": algorithm, "max_trials": 5, "space": SPACE} | search})


@pytest.mark.parametrize(
    "algorithm, oracle",
    [
        ("random", kt.oracles.RandomSearchOracle),
        ("bayesian", kt.oracles.BayesianOptimizationOracle),
        ("hyperband", kt.oracles.HyperbandOracle),
        ("grid", kt.oracles.GridSearchOracle),
    ],
)
def test_each_algorithm_builds_its_keras_tuner_oracle(tmp_path, algorithm, oracle):
    tuner = build_tuner(config_for(algorithm), tmp_path / "t")
    assert type(tuner.oracle) is oracle
    assert tuner.oracle.objective.name == "val_accuracy" and tuner.oracle.objective.direction == "max"
    assert tuner.oracle.max_trials == 5  # hyperband too: textsweep caps its brackets at the budget
    assert tuner.oracle.max_consecutive_failed_trials == 3
    names = {hp.name for hp in tuner.oracle.hyperparameters.space}
    assert names == {"embed_dim", "batch_size"}
    if algorithm == "hyperband":
        assert tuner.oracle.max_epochs == 4


def test_loss_objective_is_minimised(tmp_path):
    tuner = build_tuner(config_for("random", objective="val_loss"), tmp_path / "t")
    assert tuner.oracle.objective.direction == "min"


def test_resume_refuses_a_changed_space_or_data(tmp_path):
    config = config_for("random")
    identity = sweep_identity(config, "fp1")
    write_state(tmp_path, identity | {"sweep_run_id": "abc"})
    assert check_resumable(tmp_path, identity, "t")["sweep_run_id"] == "abc"
    changed = config_for("random", space={"embed_dim": {"min": 8, "max": 64, "step": 8}})
    with pytest.raises(ConfigError, match="different search space.*--restart"):
        check_resumable(tmp_path, sweep_identity(changed, "fp1"), "t")
    with pytest.raises(ConfigError, match="different data.*--restart"):
        check_resumable(tmp_path, sweep_identity(config, "fp2"), "t")
    # the budget and promote flag may change between runs of the same sweep
    assert check_resumable(tmp_path, sweep_identity(config_for("random", promote=True, max_trials=9), "fp1"), "t")
