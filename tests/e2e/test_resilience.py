"""A sweep survives kill -9, Ctrl-C, SIGTERM, a second process and failing trials; store problems are clear errors."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e


@pytest.fixture
def start_sweep(start_textsweep):
    """`start_sweep(config, cwd)`: `textsweep sweep --quiet` started in a process of its own."""
    return lambda config, cwd: start_textsweep(["sweep", "--config", str(config), "--quiet"], cwd)


def wait_for(condition, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"sweep exited early: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def with_max_trials(config: Path, max_trials: int) -> Path:
    """The sweep file with its trial budget set to `max_trials`, the rest of its search kept."""
    settings = yaml.safe_load(config.read_text())
    settings["search"]["max_trials"] = max_trials
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    return config


@pytest.fixture
def slow_sweep_file(store, reviews_csv, write_sweep_file):
    """`slow_sweep_file(name, max_trials)`: the tiny sweep file with 3 epochs a trial, time to signal a running trial."""
    return lambda name, max_trials: with_max_trials(write_sweep_file(
        store / f"{name}.yaml", name=name, source=str(reviews_csv),
        defaults={"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 32, "epochs": 3, "recurrent_dropout": 0.0},
    ), max_trials)


def test_kill_9_then_the_same_command_finishes_the_budget(
        store, reviews_csv, client_of, trial_runs, slow_sweep_file, start_sweep):
    # Two trials: the kill meets trial 0 finished and trial 1 running (3 epochs and its model's
    # logging: seconds, against a poll every half second), and the rerun has that trial to finish.
    config = slow_sweep_file("killed", max_trials=2)
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
    assert statuses.count("FINISHED") == 2 and "RUNNING" not in statuses
    assert statuses.count("KILLED") + statuses.count("FAILED") <= 1
    done = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["textsweep.trial_id"] for r in done) == ["0", "1"]
    swept = ("max_features", "embed_dim", "lstm_out", "dropout", "batch_size")
    assert len({tuple(r.data.params[p] for p in swept) for r in done}) == 2
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1  # the same sweep run, reused
    client = client_of(store)
    assert client.get_run(parents.pop()).info.status == "FINISHED"


@pytest.mark.parametrize("stop, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_kills_the_running_trial_ends_the_sweep_and_says_how_to_resume(
        store, reviews_csv, stop, exit_code, client_of, trial_runs, slow_sweep_file, start_sweep):
    """SIGTERM is what kill, timeout, docker stop and schedulers send: handled like Ctrl-C, and the
    exit code says which it was (128 + the signal's number, the shell's convention)."""
    # A budget no machine finishes while this test polls: the signal always meets a running trial
    # (with 3 trials, a loaded machine could end the sweep between the poll and the signal).
    config = slow_sweep_file("interrupted", max_trials=100)
    sweep = start_sweep(config, store)
    wait_for(lambda: any(r.info.status == "RUNNING" for r in trial_runs(store, "interrupted")), sweep)
    sweep.send_signal(stop)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == exit_code
    assert "resume with the same command" in err and "Traceback" not in err
    runs = trial_runs(store, "interrupted")
    assert [r.info.status for r in runs if r.info.status not in ("FINISHED",)] == ["KILLED"]
    client = client_of(store)
    assert client.get_run(runs[0].data.tags["mlflow.parentRunId"]).info.status == "KILLED"


# Ctrl-C pressed once, mid-trial, inside code that loses a KeyboardInterrupt raised there, as
# measured in sweeps (textsweep.interrupts): TensorFlow's graph tracing replaces it with an error of
# its own, which KerasTuner records as the trial's failure; Python drops one raised in a finalizer.
# A real signal from a real Keras callback: the sweep must still end interrupted.
LOSES_CTRL_C = """
import signal, sys
import keras, textsweep

signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's Ctrl-C, also under a background suite

class Finalizer:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)

class PressesCtrlC(keras.callbacks.Callback):
    pressed = False  # on the class: KerasTuner copies callbacks for each trial

    def on_train_batch_end(self, batch, logs=None):
        if PressesCtrlC.pressed:
            return
        PressesCtrlC.pressed = True
        if sys.argv[2] == "replaced":
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                raise AssertionError("Nesting violated for default stack of FuncGraph objects") from None
        else:
            Finalizer()  # freed at once: the KeyboardInterrupt raised in its __del__ is dropped

try:
    result = textsweep.sweep(sys.argv[1], quiet=True, callbacks=[PressesCtrlC()])
except KeyboardInterrupt:
    sys.exit("interrupted")
print(f"finished: {len(result.leaderboard)} trials")
"""


@pytest.mark.parametrize("lost", ["replaced", "dropped"])
def test_ctrl_c_that_a_library_loses_still_ends_the_sweep_and_kills_the_running_trial(
        store, reviews_csv, lost, client_of, trial_runs, slow_sweep_file, run_command, venv_bin):
    config = slow_sweep_file("lost", max_trials=2)
    script = store / "loses_ctrl_c.py"
    script.write_text(LOSES_CTRL_C)
    done = run_command([str(venv_bin / "python"), str(script), str(config), lost], store)
    assert (done.returncode, done.stdout) == (1, ""), done.stdout + done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == "interrupted", done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-3000:]
    runs = trial_runs(store, "lost")
    assert [r.info.status for r in runs] == ["KILLED"]
    assert client_of(store).get_run(runs[0].data.tags["mlflow.parentRunId"]).info.status == "KILLED"


def test_changed_space_under_the_same_name_is_refused_until_restart(
        store, reviews_csv, monkeypatch, run_textsweep, trial_runs, use_own_store, write_sweep_file, start_sweep):
    import textsweep

    # The first sweep only leaves a sweep's state behind (one trial is enough): run here, in
    # this process; the refusal and the restart are the commands a user types.
    config = with_max_trials(write_sweep_file(store / "a.yaml", name="same", source=str(reviews_csv)), 1)
    use_own_store(monkeypatch, store)
    assert len(textsweep.sweep(config, quiet=True).leaderboard) == 1
    changed = write_sweep_file(store / "b.yaml", name="same", source=str(reviews_csv),
                               search={"algorithm": "random", "max_trials": 1, "space": {"lstm_out": {"values": [4, 12]}}})
    refused = start_sweep(changed, store)
    out, err = refused.communicate(timeout=120)
    assert refused.returncode == 2 and "--restart" in err and "Traceback" not in err
    restarted = run_textsweep(["sweep", "--config", str(changed), "--quiet", "--restart"], store)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    statuses = [r.info.status for r in trial_runs(store, "same")]
    assert "RUNNING" not in statuses and statuses.count("FINISHED") == 1 + 1  # the first sweep's trial is kept


class FailsByConstruction:
    """A Keras callback that fails the trials it is told to, at the end of their first epoch:
    a failure on every CPU, unlike a diverging learning rate (which saturates on some)."""

    def __new__(cls, failing_trials: int):
        import keras

        class FailingTrials(keras.callbacks.Callback):
            started = 0  # KerasTuner deep-copies the callbacks per trial; the class counts trials

            def on_train_begin(self, logs=None):
                type(self).started += 1

            def on_epoch_end(self, epoch, logs=None):
                if type(self).started <= failing_trials:
                    raise RuntimeError(f"injected failure in trial {type(self).started - 1}")

        return FailingTrials()


def test_failed_trials_are_failed_runs_and_consecutive_failures_stop_the_sweep(
        store, reviews_csv, client_of, trial_runs, write_sweep_file):
    import textsweep

    config = yaml.safe_load(write_sweep_file(store / "fails.yaml", name="fails", source=str(reviews_csv)).read_text())
    config["search"] |= {"max_trials": 5, "max_consecutive_failures": 2}
    with pytest.raises(textsweep.SweepError) as error:
        textsweep.sweep(config, quiet=True, callbacks=[FailsByConstruction(failing_trials=5)])
    assert "2 trials in a row failed" in str(error.value) and "injected failure in trial 1" in str(error.value)
    runs = trial_runs(store, "fails")
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]
    client = client_of(store)
    for run in runs:
        assert "injected failure" in run.data.tags["textsweep.failure_reason"]
        assert "injected failure" in mlflow.artifacts.load_text(f"{run.info.artifact_uri}/failure.txt")
    assert client.get_run(runs[0].data.tags["mlflow.parentRunId"]).info.status == "FAILED"


def test_a_sweep_in_which_no_trial_finished_ends_failed_with_the_reason(
        store, reviews_csv, client_of, trial_runs, write_sweep_file):
    import textsweep

    config = yaml.safe_load(write_sweep_file(store / "none.yaml", name="none-finished", source=str(reviews_csv)).read_text())
    config["search"] |= {"max_trials": 2, "max_consecutive_failures": 3}  # the budget ends first
    with pytest.raises(textsweep.SweepError, match="ended with no finished trial"):
        textsweep.sweep(config, quiet=True, callbacks=[FailsByConstruction(failing_trials=2)])
    runs = trial_runs(store, "none-finished")
    assert [r.info.status for r in runs] == ["FAILED", "FAILED"]
    client = client_of(store)
    sweep_run = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert sweep_run.info.status == "FAILED" and sweep_run.data.tags["textsweep.failure_reason"] == "no trial finished"


@pytest.mark.parametrize("existing_store", [False, True], ids=["new-store", "existing-store"])
def test_a_second_process_on_a_running_sweep_is_refused_and_names_the_first(
        store, reviews_csv, existing_store, client_of, trial_runs, slow_sweep_file, start_sweep):
    if existing_store:  # the store and the experiment exist already: made by a client on the folder's store
        client_of(store).create_experiment("owned")
    # Two trials of 3 epochs: the winner holds the sweep for many seconds after both reach its lock.
    config = slow_sweep_file("owned", max_trials=2)
    first, second = start_sweep(config, store), start_sweep(config, store)  # started together
    (_, err2), (_, err1) = second.communicate(timeout=600), first.communicate(timeout=600)
    outcomes = sorted([(first.returncode, err1), (second.returncode, err2)], key=lambda o: o[0])
    (winner_code, winner_err), (loser_code, loser_err) = outcomes
    assert winner_code == 0, winner_err[-2000:]
    assert loser_code == 2 and "Traceback" not in loser_err, loser_err[-2000:]
    owner_pid = first.pid if second.returncode == 2 else second.pid
    assert f"sweep 'owned' is already running (process {owner_pid} on" in loser_err
    assert "--workers 2" in loser_err  # how to run in parallel instead
    runs = trial_runs(store, "owned")
    assert sorted(r.data.tags["textsweep.trial_id"] for r in runs) == ["0", "1"]  # each trial once
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_store_without_its_database_driver_names_the_package_to_install(
        store, reviews_csv, run_textsweep, write_sweep_file):
    config = write_sweep_file(store / "driver.yaml", name="driver", source=str(reviews_csv))
    # PyMySQL is not installed
    result = run_textsweep(["train", "--config", str(config)], store, MLFLOW_TRACKING_URI="mysql://user:secret@127.0.0.1:1/mlflow")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "needs the database driver 'MySQLdb'" in result.stderr and "pip install mysqlclient" in result.stderr
    assert "secret" not in result.stderr  # credentials are redacted


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no write reaches: a read-only tmpfs when running as root (root ignores modes)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
        assert mounted.returncode == 0, f"cannot mount a read-only tmpfs: {mounted.stderr}"
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_an_unwritable_store_fails_fast_naming_the_path(
        store, reviews_csv, read_only_folder, run_textsweep, write_sweep_file):
    config = write_sweep_file(store / "ro.yaml", name="ro", source=str(reviews_csv))
    started = time.monotonic()
    result = run_textsweep(["sweep", "--config", str(config), "--quiet"], store,
                           MLFLOW_TRACKING_URI=f"sqlite:///{read_only_folder}/mlflow.db")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"the MLflow store {read_only_folder}/mlflow.db cannot be written" in result.stderr
    assert time.monotonic() - started < 30  # not MLflow's ~2 minutes of retries


def test_an_unreachable_database_store_is_one_message_in_seconds_and_nothing_is_created(
        store, reviews_csv, run_textsweep, write_sweep_file):
    """psycopg is installed (the dev extra), so MLflow itself would retry for ~100 s, then print a
    200-line SQLAlchemy traceback."""
    config = write_sweep_file(store / "pg.yaml", name="pg", source=str(reviews_csv))
    for command in (["sweep", "--config", str(config), "--quiet"], ["train", "--config", str(config)]):
        started = time.monotonic()
        result = run_textsweep(command, store, MLFLOW_TRACKING_URI="postgresql://u:s3cret@127.0.0.1:1/db")
        elapsed = time.monotonic() - started
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert result.stderr.strip().splitlines() == [
            "textsweep: error: the MLflow database store postgresql://***@127.0.0.1:1/db is unreachable: nothing "
            "accepts connections on 127.0.0.1:1 (Connection refused); start the database, or fix the host and port "
            "in MLFLOW_TRACKING_URI (or unset it to use the local store)"]  # one message, no retry warnings
        assert "s3cret" not in result.stdout + result.stderr
        assert elapsed < 60, elapsed  # not MLflow's ~100 s of retries
    assert sorted(p.name for p in store.iterdir()) == ["pg.yaml", "reviews.csv"]  # no store, no tuner state


def test_reading_commands_on_an_empty_folder_say_there_is_no_store_and_create_none(
        store, reviews_csv, run_textsweep, write_sweep_file):
    config = write_sweep_file(store / "read.yaml", name="read", source=str(reviews_csv))
    for command in (["runs", "read"], ["predict", "--model", "models:/read@champion", "a fine film"],
                    ["promote", "--config", str(config)]):
        result = run_textsweep(command, store)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (command, result.stderr[-3000:])
        assert f"there is no MLflow store here ({store}/mlruns/mlflow.db does not exist)" in result.stderr, result.stderr
        assert "set MLFLOW_TRACKING_URI to the store you used" in result.stderr
    assert sorted(p.name for p in store.iterdir()) == ["read.yaml", "reviews.csv"]  # no mlruns/, no mlflow.db


def test_promote_names_the_option_as_the_caller_passes_it(
        store, reviews_csv, client_of, run_textsweep, write_sweep_file):
    """The CLI's flag `--sweep-run-id`, the API's keyword argument `sweep_run_id=`."""
    import textsweep

    config = write_sweep_file(store / "opt.yaml", name="opt", source=str(reviews_csv))
    client_of(store).create_experiment("opt")
    unknown = "0" * 32
    with pytest.raises(textsweep.RegistryError) as from_python:
        textsweep.promote(str(config), sweep_run_id=unknown)
    assert str(from_python.value).startswith(f"sweep_run_id='{unknown}': no such run")
    with pytest.raises(textsweep.RegistryError, match=r"name an unfinished one with sweep_run_id=$"):
        textsweep.promote(str(config))
    from_cli = run_textsweep(["promote", "--config", str(config), "--sweep-run-id", unknown], store)
    assert from_cli.returncode == 2 and f"error: --sweep-run-id {unknown}: no such run" in from_cli.stderr


def sweep_state(folder: Path, name: str) -> dict:
    return json.loads((folder / name / "textsweep_state.json").read_text())


def test_tuner_state_whose_sqlite_store_was_deleted_is_refused_not_resumed_as_a_partial_sweep(
        store, reviews_csv, monkeypatch, run_textsweep, trial_runs, use_own_store, write_sweep_file):
    import textsweep

    config = write_sweep_file(
        store / "gone.yaml", name="gone", source=str(reviews_csv),
        defaults={"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 64, "epochs": 1, "recurrent_dropout": 0.0},
        search={"algorithm": "random", "max_trials": 2, "space": {"lstm_out": {"values": [4, 8]}}},
    )
    first = run_textsweep(["sweep", "--config", str(config), "--quiet"], store)
    assert first.returncode == 0, first.stderr[-3000:]
    database = store / "mlruns" / "mlflow.db"
    state = sweep_state(store / "mlruns" / "tuner", "gone")
    assert state["store"] == f"sqlite:///{database}" and state["experiment"] == "gone"
    old_run = state["sweep_run_id"]

    database.unlink()  # the tuner state stays: a store deleted by hand
    refused = run_textsweep(["sweep", "--config", str(config), "--quiet"], store)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert (f"the tuner state of sweep 'gone' in {store}/mlruns/tuner/gone belongs to sweep run {old_run} in store "
            f"sqlite:///{database}, but sqlite:///{database} holds no such run in experiment 'gone'") in refused.stderr
    assert "Pass --restart to start the sweep afresh" in refused.stderr
    assert MlflowClient(f"sqlite:///{database}").get_experiment_by_name("gone") is None  # nothing created

    # The restart runs here, in this process: MLflow keeps one engine per store URI in a process,
    # and this one opened the store only after the deletion (the first sweep ran in a process of
    # its own), so it reads the new database. The refusals stay the commands a user types.
    use_own_store(monkeypatch, store)
    assert textsweep.sweep(config, quiet=True, restart=True).resumed is False
    runs = trial_runs(store, "gone")
    assert sorted((r.data.tags["textsweep.trial_id"], r.info.status) for r in runs) == [("0", "FINISHED"), ("1", "FINISHED")]
    new_run = sweep_state(store / "mlruns" / "tuner", "gone")["sweep_run_id"]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {new_run} != {old_run}

    MlflowClient(f"sqlite:///{database}").delete_run(new_run)  # deleted in the UI
    deleted = run_textsweep(["sweep", "--config", str(config), "--quiet"], store)
    assert deleted.returncode == 2 and "Traceback" not in deleted.stderr
    assert f"that run is deleted in sqlite:///{database}" in deleted.stderr
    assert f"restore it (mlflow runs restore --run-id {new_run}) to resume" in deleted.stderr


def test_tuner_state_of_another_tracking_server_is_refused_not_resumed_as_a_partial_sweep(
        tmp_path, reviews_csv, monkeypatch, clean_env, mlflow_server, run_textsweep, write_sweep_file):
    """Two real `mlflow server`s, the same sweep file run from the same folder on one, then the other.

    Before, the second server ended with 1 of N trials (with 2: 1 of 2): the chief resumed the
    first server's KerasTuner state and ran only the trials it had left.
    """
    import textsweep

    sweeps, work = tmp_path / "sweeps", tmp_path / "work"
    sweeps.mkdir(), work.mkdir()
    config = write_sweep_file(
        sweeps / "two.yaml", name="two-servers", source=str(reviews_csv),
        defaults={"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 64, "epochs": 1, "recurrent_dropout": 0.0},
        search={"algorithm": "random", "max_trials": 2, "space": {"lstm_out": {"values": [4, 8]}, "embed_dim": {"values": [4, 8]}}},
    )
    command = ["sweep", "--config", str(config), "--quiet"]
    server_env = clean_env()
    state_folder = sweeps / ".textsweep" / "tuner"  # with a remote store: beside the sweep file
    # The sweeps that only make state (the first) or that the refusal points to (the restart) run
    # here, in this process, as `textsweep.sweep`; the refusal is the command a user types.
    monkeypatch.chdir(work)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)

    # Both servers start at once, their start-ups overlapping.
    with contextlib.ExitStack() as servers, ThreadPoolExecutor(2) as starting:
        first, second = starting.map(servers.enter_context, [
            mlflow_server(f"sqlite:///{tmp_path / name}.db", tmp_path, env=server_env, artifacts=tmp_path / name)
            for name in ("first", "second")])

        monkeypatch.setenv("MLFLOW_TRACKING_URI", first)
        swept = textsweep.sweep(config, quiet=True)
        assert len(swept.leaderboard) == 2  # what `textsweep sweep` prints as "2 finished trials"
        state = sweep_state(state_folder, "two-servers")
        assert state["store"] == first and state["experiment"] == "two-servers"
        assert MlflowClient(first).get_run(state["sweep_run_id"]).info.status == "FINISHED"
        assert not (work / "mlruns").exists() and not (work / ".textsweep").exists()  # not in the working folder

        refused = run_textsweep(command, work, MLFLOW_TRACKING_URI=second)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
        assert [line for line in refused.stderr.splitlines() if line.startswith("textsweep:")] == [
            f"textsweep: error: the tuner state of sweep 'two-servers' in {state_folder / 'two-servers'} belongs to "
            f"sweep run {state['sweep_run_id']} in store {first}, but {second} holds no such run in experiment "
            "'two-servers': resuming it would leave a partial sweep here, without the trials that run holds. Pass "
            f"--restart to start the sweep afresh in {second} (discarding that tuner state), or set "
            f"MLFLOW_TRACKING_URI to {first} to resume it there."]
        client = MlflowClient(second)
        assert client.get_experiment_by_name("two-servers") is None  # nothing created on the second server

        monkeypatch.setenv("MLFLOW_TRACKING_URI", second)
        assert textsweep.sweep(config, quiet=True, restart=True).resumed is False
        experiment = client.get_experiment_by_name("two-servers").experiment_id
        runs = client.search_runs([experiment])
        sweeps_run = [r for r in runs if r.data.tags["textsweep.kind"] == "sweep"]
        trials = [r for r in runs if r.data.tags["textsweep.kind"] == "trial"]
        assert len(sweeps_run) == 1 and sweeps_run[0].info.status == "FINISHED"
        assert sorted((r.data.tags["textsweep.trial_id"], r.info.status) for r in trials) == \
            [(str(i), "FINISHED") for i in range(2)]  # the whole budget, not 1 of 2 trials
        assert sweep_state(state_folder, "two-servers")["store"] == second
