"""A grid sweep killed with `kill -9` resumes to exactly its full grid (KerasTuner issue 1055)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

GRID = {"embed_dim": {"values": [4, 8]}, "lstm_out": {"values": [4, 8]}}  # 4 points
GRID_POINTS = {("4", "4"), ("4", "8"), ("8", "4"), ("8", "8")}


def sweep_arguments(config: Path) -> list[str]:
    return ["sweep", "--config", str(config), "--quiet"]


def count(runs: list, status: str) -> int:
    return sum(run.info.status == status for run in runs)


def test_killed_grid_sweep_resumes_to_exactly_its_full_grid(
        store, reviews_csv, monkeypatch, client_of, run_textsweep, start_textsweep, trial_runs, use_own_store,
        write_sweep_file):
    import textsweep

    config = write_sweep_file(
        store / "grid.yaml", name="grid", source=str(reviews_csv),
        defaults={"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 32, "epochs": 3, "recurrent_dropout": 0.0},
        # A budget above the grid's size: the grid's own end must stop the search, with no point twice.
        search={"algorithm": "grid", "max_trials": 6, "space": GRID},
    )
    sweep = start_textsweep(sweep_arguments(config), store, stdout=subprocess.DEVNULL)
    # Two trials finished and the third running: KerasTuner saved both as COMPLETED (the third
    # trial's run only starts after the oracle recorded the second's end).
    deadline = time.monotonic() + 300
    while not (count(runs := trial_runs(store, "grid"), "FINISHED") >= 2 and count(runs, "RUNNING") == 1):
        assert sweep.poll() is None, f"sweep exited early: {sweep.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "timed out waiting for the second finished trial"
        time.sleep(0.3)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    assert count(trial_runs(store, "grid"), "FINISHED") == 2

    # The same command resumes; before the fix the first rerun died with a KeyError in
    # GridSearchOracle and the second ended with half the grid. Once must be enough now.
    rerun = run_textsweep(sweep_arguments(config), store)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr and "(resumed)" in rerun.stdout

    runs = trial_runs(store, "grid")
    finished = [run for run in runs if run.info.status == "FINISHED"]
    points = [(run.data.params["embed_dim"], run.data.params["lstm_out"]) for run in finished]
    assert sorted(points) == sorted(GRID_POINTS)  # every grid point once, none twice
    assert [run.info.status for run in runs if run.info.status != "FINISHED"] == ["KILLED"]  # the trial kill -9 cut
    parents = {run.data.tags["mlflow.parentRunId"] for run in runs}
    assert len(parents) == 1 and client_of(store).get_run(parents.pop()).info.status == "FINISHED"

    # A further rerun has nothing left to do and runs no trial again. Here, in this process: what
    # it checks is the saved state, not a command (no store file is replaced behind this process).
    use_own_store(monkeypatch, store)
    again = textsweep.sweep(config, quiet=True)
    assert again.resumed and len(again.leaderboard) == 4
    assert count(trial_runs(store, "grid"), "FINISHED") == 4
