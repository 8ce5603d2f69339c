"""tracking/store.py: the MLflow store, its URI, experiments and where tuner state lives."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from textsweep import tracking
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
    assert time.monotonic() - started < 3 * tracking.store.CONNECT_TIMEOUT_S
    assert message.startswith("the MLflow database store postgresql://***@127.0.0.1:")
    if listener == "closed port":
        assert "is unreachable: nothing accepts connections on 127.0.0.1:1 (Connection refused); start the database" in message
    else:
        assert f"did not accept a connection on 127.0.0.1:{port}: connection timeout expired; check that" in message
    assert "s3cret" not in message and "\n" not in message
    assert not (store / "mlruns").exists()


