"""A sweep survives `kill -9` and Ctrl-C: finished trials are kept, the rest run on resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import write_sweep_file

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e


def start_sweep(config: Path, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.Popen(
        [str(BIN / "textsweep"), "sweep", "--config", str(config), "--quiet"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def trial_runs(store: Path, name: str):
    client = MlflowClient(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name) if (store / "mlruns" / "mlflow.db").exists() else None
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], filter_string="tags.`textsweep.kind` = 'trial'")


def wait_for(condition, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"sweep exited early: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def slow_sweep_file(store: Path, reviews_csv: Path, name: str) -> Path:
    return write_sweep_file(
        store / f"{name}.yaml", name=name, source=str(reviews_csv),
        defaults={"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 32, "epochs": 3, "recurrent_dropout": 0.0},
    )


def test_kill_9_then_the_same_command_finishes_the_budget(store, reviews_csv):
    config = slow_sweep_file(store, reviews_csv, "killed")
    sweep = start_sweep(config, store)
    finished = lambda: any(r.info.status == "FINISHED" for r in trial_runs(store, "killed"))
    wait_for(lambda: finished() and any(r.info.status == "RUNNING" for r in trial_runs(store, "killed")), sweep)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()

    resumed = start_sweep(config, store)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert "(resumed)" in out
    runs = trial_runs(store, "killed")
    statuses = [r.info.status for r in runs]
    assert statuses.count("FINISHED") == 3 and "RUNNING" not in statuses
    assert statuses.count("KILLED") + statuses.count("FAILED") <= 1
    done = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["textsweep.trial_id"] for r in done) == ["0", "1", "2"]
    swept = ("max_features", "embed_dim", "lstm_out", "dropout", "batch_size")
    assert len({tuple(r.data.params[p] for p in swept) for r in done}) == 3
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1  # the same sweep run, reused
    client = MlflowClient(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    assert client.get_run(parents.pop()).info.status == "FINISHED"


def test_ctrl_c_kills_the_running_trial_ends_the_sweep_and_says_how_to_resume(store, reviews_csv):
    config = slow_sweep_file(store, reviews_csv, "interrupted")
    sweep = start_sweep(config, store)
    wait_for(lambda: any(r.info.status == "RUNNING" for r in trial_runs(store, "interrupted")), sweep)
    sweep.send_signal(signal.SIGINT)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130
    assert "resume with the same command" in err and "Traceback" not in err
    runs = trial_runs(store, "interrupted")
    assert [r.info.status for r in runs if r.info.status not in ("FINISHED",)] == ["KILLED"]
    client = MlflowClient(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    assert client.get_run(runs[0].data.tags["mlflow.parentRunId"]).info.status == "KILLED"


def test_changed_space_under_the_same_name_is_refused_until_restart(store, reviews_csv):
    config = write_sweep_file(store / "a.yaml", name="same", source=str(reviews_csv))
    first = start_sweep(config, store)
    assert first.wait(timeout=600) == 0
    changed = write_sweep_file(store / "b.yaml", name="same", source=str(reviews_csv),
                               search={"algorithm": "random", "max_trials": 1, "space": {"lstm_out": {"values": [4, 12]}}})
    refused = start_sweep(changed, store)
    out, err = refused.communicate(timeout=120)
    assert refused.returncode == 2 and "--restart" in err and "Traceback" not in err
    restarted = subprocess.run([str(BIN / "textsweep"), "sweep", "--config", str(changed), "--quiet", "--restart"],
                               cwd=store, capture_output=True, text=True, timeout=600)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    statuses = [r.info.status for r in trial_runs(store, "same")]
    assert "RUNNING" not in statuses and statuses.count("FINISHED") == 3 + 1


def test_diverging_trials_are_failed_runs_and_consecutive_failures_stop_the_sweep(store, reviews_csv):
    # Adam with a learning rate of 1e30 turns the loss into NaN in the first epoch: every trial fails.
    config = write_sweep_file(
        store / "nan.yaml", name="diverges", source=str(reviews_csv),
        defaults={"max_features": 400, "embed_dim": 8, "lstm_out": 8, "epochs": 1, "learning_rate": 1e30, "recurrent_dropout": 0.0},
    )
    config.write_text(config.read_text().replace("max_trials: 3", "max_trials: 5\n  max_consecutive_failures: 2"))
    result = subprocess.run([str(BIN / "textsweep"), "sweep", "--config", str(config), "--quiet"],
                            cwd=store, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "2 trials in a row failed" in result.stderr and "loss became NaN at epoch 0" in result.stderr
    runs = trial_runs(store, "diverges")
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]
    client = MlflowClient(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    for run in runs:
        assert "loss became NaN" in run.data.tags["textsweep.failure_reason"]
        assert "loss became NaN" in mlflow.artifacts.load_text(
            f"{run.info.artifact_uri}/failure.txt")
    assert client.get_run(runs[0].data.tags["mlflow.parentRunId"]).info.status == "FAILED"
