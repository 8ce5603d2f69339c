"""tracking/: the MLflow store, experiments, runs and the queries the API and the CLI read."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from textsweep import tracking
from textsweep.config import parse_config
from textsweep.errors import TrackingError


def test_redact_hides_credentials_and_keeps_the_rest():
    assert tracking.redact("postgresql://alice:s3cret@db.example:5432/mlflow") == "postgresql://***@db.example:5432/mlflow"
    assert tracking.redact("sqlite:////tmp/mlruns/mlflow.db") == "sqlite:////tmp/mlruns/mlflow.db"


def test_the_default_store_is_an_absolute_sqlite_file_under_mlruns(store):
    assert tracking.tracking_uri() == f"sqlite:///{store / 'mlruns' / 'mlflow.db'}"
    client = tracking.connect()
    assert (store / "mlruns" / "mlflow.db").is_file() and client.search_experiments()


def test_experiments_are_model_training_experiments_also_those_made_before(tmp_path, monkeypatch, use_own_store):
    uri = use_own_store(monkeypatch, tmp_path)
    client = tracking.connect()
    made_before = MlflowClient(uri).create_experiment("older")  # as textsweep 0.1 created them: untagged
    assert tracking.experiment_id(client, "older") == made_before
    new = tracking.experiment_id(client, "newer")
    for experiment_id in (made_before, new):
        assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_experiment(new).artifact_location == (tmp_path / "mlruns" / "artifacts" / "newer").as_uri()


def test_a_deleted_experiment_is_refused_with_the_fix(tmp_path, monkeypatch, use_own_store):
    use_own_store(monkeypatch, tmp_path)
    client = tracking.connect()
    client.delete_experiment(tracking.experiment_id(client, "gone"))
    with pytest.raises(TrackingError, match="'gone' is deleted; restore it"):
        tracking.experiment_id(client, "gone")


def test_job_run_ends_finished_failed_or_killed(tmp_path, monkeypatch, use_own_store):
    use_own_store(monkeypatch, tmp_path)
    client = tracking.connect()
    config = parse_config({"name": "jobs"})
    with tracking.job_run(client, config, kind="train") as finished:
        pass
    with pytest.raises(ValueError), tracking.job_run(client, config, kind="train") as failed:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), tracking.job_run(client, config, kind="train") as killed:
        raise KeyboardInterrupt
    statuses = [client.get_run(r.info.run_id).info.status for r in (finished, failed, killed)]
    assert statuses == ["FINISHED", "FAILED", "KILLED"]
    assert client.get_run(finished.info.run_id).data.tags["textsweep.kind"] == "train"
    assert mlflow.active_run() is None


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


def test_two_processes_creating_one_new_store_at_once_both_succeed(tmp_path):
    """MLflow's migrations race on a new SQLite file; textsweep serialises the creation."""
    script = (
        "import sys; from textsweep import tracking; c = tracking.connect(); "
        "print(tracking.experiment_id(c, 'race'))"
    )
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", "PATH": str(Path(sys.executable).parent)}
    processes = [subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], [err[-1500:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1  # one experiment, found by all three


def test_tuner_state_lives_beside_a_sqlite_store(tmp_path, monkeypatch, use_own_store):
    use_own_store(monkeypatch, tmp_path)
    assert tracking.tuner_directory("my sweep/1") == tmp_path / "mlruns" / "tuner" / "my_sweep_1"
    assert tracking.tuner_directory("my sweep/1", tmp_path / "sweeps" / "a.yaml") == tmp_path / "mlruns" / "tuner" / "my_sweep_1"


def test_with_a_remote_store_tuner_state_lives_beside_the_sweep_file(tmp_path, monkeypatch):
    """Not in whatever folder the command runs from: a sweep resumes from any folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    sweep_file = tmp_path / "sweeps" / "a.yaml"
    assert tracking.tuner_directory("a", sweep_file) == tmp_path / "sweeps" / ".textsweep" / "tuner" / "a"
    assert tracking.tuner_directory("a", "sweeps/a.yaml") == tmp_path / "sweeps" / ".textsweep" / "tuner" / "a"
    assert tracking.tuner_directory("a") == tmp_path / ".textsweep" / "tuner" / "a"  # a dict from Python: here


def test_reading_commands_on_an_empty_folder_create_no_store(store):
    with pytest.raises(TrackingError, match=r"there is no MLflow store here \(.*mlruns/mlflow.db does not exist\).*"
                                            r"Run this from the folder you ran `textsweep sweep` in"):
        tracking.connect(create=False)
    with pytest.raises(TrackingError, match="there is no MLflow store here"):
        tracking.sweep_leaderboard("anything")
    assert not (store / "mlruns").exists()
    tracking.connect()  # a job that writes creates it
    assert (store / "mlruns" / "mlflow.db").is_file() and tracking.connect(create=False)


@pytest.mark.parametrize("listener", ["closed port", "silent port"])
def test_an_unreachable_database_store_is_one_error_in_seconds_naming_host_and_port(store, monkeypatch, listener):
    """MLflow itself retries a database it cannot open for ~100 s, then prints a long traceback."""
    with socket.socket() as silent:  # accepts TCP connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1] if listener == "silent port" else 1  # nothing listens on port 1
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://alice:s3cret@127.0.0.1:{port}/mlflow")
        started = time.monotonic()
        with pytest.raises(TrackingError) as error:
            tracking.connect()
    message = str(error.value)
    assert time.monotonic() - started < 3 * tracking.CONNECT_TIMEOUT_S
    assert message.startswith("the MLflow database store postgresql://***@127.0.0.1:")
    if listener == "closed port":
        assert "is unreachable: nothing accepts connections on 127.0.0.1:1 (Connection refused); start the database" in message
    else:
        assert f"did not accept a connection on 127.0.0.1:{port}: connection timeout expired; check that" in message
    assert "s3cret" not in message and "\n" not in message
    assert not (store / "mlruns").exists()


def test_a_trial_that_runs_again_keeps_one_finished_run(fake_sweep):
    """The process died after trial 1's run ended but before KerasTuner recorded it: resume runs it again."""
    client, experiment, sweep_run_id = fake_sweep
    assert tracking.supersede_earlier_runs(client, experiment, sweep_run_id, "1") == 1
    assert tracking.supersede_earlier_runs(client, experiment, sweep_run_id, "2") == 0  # FAILED runs stay as they are
    runs = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{sweep_run_id}' and tags.`textsweep.trial_id` = '1'")
    assert [r.info.status for r in runs] == ["KILLED"] and "superseded" in runs[0].data.tags["textsweep.failure_reason"]
    assert tracking.leaderboard(client, experiment, sweep_run_id, "val_accuracy")["trial_id"].tolist() == ["0"]
