"""tracking/queries.py: the leaderboard, finding sweep runs, and repairing the runs a dead process left."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from textsweep import tracking
from textsweep.errors import TrackingError


def fake_sweep_with_trials(client: MlflowClient, experiment: str) -> str:
    """A sweep run with two finished trials, one failed and one left RUNNING by a dead process."""
    sweep = client.create_run(experiment, tags={"textsweep.kind": "sweep"})
    client.log_param(sweep.info.run_id, "objective", "val_accuracy")
    for trial_id, status, score in (("0", "FINISHED", 0.7), ("1", "FINISHED", 0.8), ("2", "FAILED", None), ("3", "RUNNING", None)):
        run = client.create_run(experiment, tags={"mlflow.parentRunId": sweep.info.run_id, "textsweep.trial_id": trial_id,
                                                  "textsweep.tuner_id": "tuner0", "textsweep.kind": "trial"})
        for name, value in {"max_features": 100, "embed_dim": 8, "lstm_out": 4, "spatial_dropout": 0.4, "dropout": 0.1,
                            "recurrent_dropout": 0.0, "batch_size": 32, "learning_rate": 0.001,
                            "bidirectional": trial_id == "1"}.items():
            client.log_param(run.info.run_id, name, value)
        if score is not None:
            client.log_metric(run.info.run_id, "best_val_accuracy", score)
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
    return sweep.info.run_id


@pytest.fixture
def fake_sweep(tmp_path, monkeypatch, use_own_store) -> tuple[MlflowClient, str, str]:
    """A store of its own holding experiment `board` with one fake sweep: (client, experiment id, sweep run id)."""
    use_own_store(monkeypatch, tmp_path)
    client = tracking.connect()
    experiment = tracking.experiment_id(client, "board")
    return client, experiment, fake_sweep_with_trials(client, experiment)


def test_leaderboard_and_the_one_way_to_find_sweep_runs(fake_sweep):
    client, experiment, sweep_run_id = fake_sweep
    table = tracking.leaderboard(client, experiment, sweep_run_id, "val_accuracy")
    assert table["trial_id"].tolist() == ["1", "0"]  # finished trials only, best first
    assert table["best_val_accuracy"].tolist() == [0.8, 0.7]
    assert table["bidirectional"].tolist() == [True, False] and table["learning_rate"].tolist() == [0.001, 0.001]
    assert [r.info.run_id for r in tracking.find_sweep_runs(client, experiment, status="RUNNING")] == [sweep_run_id]
    assert tracking.find_sweep_runs(client, experiment, status="FINISHED") == []
    sweep, board = tracking.sweep_leaderboard("board")
    assert sweep.info.run_id == sweep_run_id and board["run_id"].tolist() == table["run_id"].tolist()
    with pytest.raises(TrackingError, match="no MLflow experiment 'nothing'.*experiments: .*board"):
        tracking.sweep_leaderboard("nothing")


def test_trial_runs_a_dead_process_left_running_end_killed_with_the_reason(fake_sweep):
    client, experiment, sweep_run_id = fake_sweep
    assert tracking.kill_running_trial_runs(client, experiment, sweep_run_id, "the process died") == 1
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{sweep_run_id}'")
    killed = [r for r in children if r.info.status == "KILLED"]
    assert len(killed) == 1 and killed[0].data.tags["textsweep.failure_reason"] == "the process died"
    assert "RUNNING" not in {r.info.status for r in children}


def test_a_trial_that_runs_again_keeps_one_finished_run(fake_sweep):
    """The process died after trial 1's run ended but before KerasTuner recorded it: resume runs it again."""
    client, experiment, sweep_run_id = fake_sweep
    assert tracking.supersede_earlier_runs(client, experiment, sweep_run_id, "1") == 1
    assert tracking.supersede_earlier_runs(client, experiment, sweep_run_id, "2") == 0  # FAILED runs stay as they are
    runs = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{sweep_run_id}' and tags.`textsweep.trial_id` = '1'")
    assert [r.info.status for r in runs] == ["KILLED"] and "superseded" in runs[0].data.tags["textsweep.failure_reason"]
    assert tracking.leaderboard(client, experiment, sweep_run_id, "val_accuracy")["trial_id"].tolist() == ["0"]

