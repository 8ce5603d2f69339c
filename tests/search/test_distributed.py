"""Distributed sweeps on KerasTuner's chief/worker oracle, all logging to one real `mlflow server`.

Two sweeps, each run once by a module fixture and read by two tests: workers started by hand (as on
other hosts) with their chief, one worker frozen mid-trial; and `--workers 2` on a PostgreSQL-backed
server, one worker killed mid-trial. The worker signalled is caught in its second trial, so both
workers have finished trials for the tests that ask how the budget was shared.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import psutil
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e

# An epoch of these tiny models takes ~0.15 s after the trial's ~3 s of start-up: ten give a signal
# sent once a trial has logged its first epoch a second or more to land inside its training.
EPOCHS = 10
TUNER = "textsweep.tuner_id"


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory, review_rows, write_sweep_file):
    """`sweep_file(folder, name, **search)`: a sweep file `<name>.yaml` over 600 reviews, 4 trials of EPOCHS epochs."""
    reviews = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    review_rows(600).to_csv(reviews, index=False)
    return lambda folder, name, **search: write_sweep_file(
        folder / f"{name}.yaml", name=name, source=str(reviews),
        defaults={"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 64, "epochs": EPOCHS, "recurrent_dropout": 0.0},
        search={"algorithm": "random", "max_trials": 4, "space": {
            "max_features": {"values": [200, 300, 400]}, "embed_dim": {"min": 4, "max": 16, "step": 4},
            "lstm_out": {"values": [4, 8]}, "dropout": {"min": 0.0, "max": 0.3, "step": 0.1}}} | search,
    )


def workers_training_a_second_trial(client: MlflowClient, name: str) -> list[str]:
    """Workers that have finished a trial and logged the first epoch, but not the last, of the one they run now."""
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.`textsweep.kind` = 'trial'") if experiment else []
    finished = {run.data.tags[TUNER] for run in runs if run.info.status == "FINISHED"}
    return [run.data.tags[TUNER] for run in runs
            if run.info.status == "RUNNING" and run.data.tags[TUNER] in finished
            and 1 <= len(client.get_metric_history(run.info.run_id, "loss")) < EPOCHS]


def stop_a_worker_training_its_second_trial(
        client: MlflowClient, name: str, workers: Callable[[], dict[str, psutil.Process]],
        sweep_running: Callable[[], bool]) -> tuple[str, psutil.Process]:
    """SIGSTOP the first worker caught training its second trial; returns its tuner id and process.

    Checked again once the worker is stopped: a trial that ended in between (its last epoch logged)
    lets the worker go on, and the next one is waited for.
    """
    deadline = time.monotonic() + 300
    while True:
        assert sweep_running() and time.monotonic() < deadline, "no worker was caught training a second trial"
        processes = workers()
        for tuner_id in workers_training_a_second_trial(client, name):
            process = processes[tuner_id]
            process.send_signal(signal.SIGSTOP)
            while process.status() != psutil.STATUS_STOPPED:  # the signal is delivered asynchronously
                assert time.monotonic() < deadline, f"worker {tuner_id} did not stop"
                time.sleep(0.05)
            if tuner_id in workers_training_a_second_trial(client, name):
                return tuner_id, process
            process.send_signal(signal.SIGCONT)
        time.sleep(0.3)


@dataclass
class DistributedSweep:
    """What one distributed sweep left: its server's URI, each process's exit code and output, and
    the worker signalled in the middle of its second trial."""

    uri: str
    name: str
    exit_codes: dict[str, int]
    stdout: dict[str, str]
    stderr: dict[str, str]
    signalled: str

    @property
    def survivor(self) -> str:
        return ({"tuner0", "tuner1"} - {self.signalled}).pop()

    def killed_runs(self) -> list:
        client = MlflowClient(self.uri)
        return client.search_runs([client.get_experiment_by_name(self.name).experiment_id], "attributes.status = 'KILLED'")


def assert_one_sweep_with_finished_trials(uri: str, name: str, trials: int) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    sweeps = [r for r in runs if r.data.tags.get("textsweep.kind") == "sweep"]
    trial_runs = [r for r in runs if r.data.tags.get("textsweep.kind") == "trial"]
    assert len(sweeps) == 1 and sweeps[0].info.status == "FINISHED"
    finished = [r for r in trial_runs if r.info.status == "FINISHED"]
    ids = sorted(r.data.tags["textsweep.trial_id"] for r in finished)
    assert ids == [str(i) for i in range(trials)], ids  # every trial once: none lost, none twice
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs} == {sweeps[0].info.run_id}
    assert "RUNNING" not in {r.info.status for r in trial_runs}
    return finished


def assert_no_secret_logged(uri: str, name: str, secrets: list[str]) -> None:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    texts_read = 0
    for run in client.search_runs([experiment.experiment_id]):
        logged = str(run.data.params) + str(run.data.tags)
        for artifact in ("sweep.yaml", "tokenizer/vocabulary.json"):
            if artifact.split("/")[0] in {a.path for a in client.list_artifacts(run.info.run_id)}:
                logged += mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{artifact}")
                texts_read += 1
        for secret in secrets:
            assert secret not in logged, f"{secret!r} leaked into run {run.info.run_id}"
    assert texts_read >= 2  # the sweep file and at least one tokenizer were really read


# ---------------------------------------------------------------- workers started by hand, one frozen


@pytest.fixture(scope="module")
def hand_started_sweep(tmp_path_factory, sweep_file, clean_env, free_port, mlflow_server, start_textsweep):
    """Workers tuner0 and tuner1 started by hand (as on other hosts), then their chief, all on loopback
    with a SQLite-backed server; credentials in the tracking URI and a Hub token in the environment.
    The first worker caught training its second trial is frozen with SIGSTOP (search.worker_timeout 20s)."""
    folder = tmp_path_factory.mktemp("hand-started")
    config = sweep_file(folder, "dist", worker_timeout="20s")
    with mlflow_server(f"sqlite:///{folder / 'server.db'}", folder, env=clean_env(), artifacts=folder / "artifacts") as server_uri:
        # credentials in the tracking URI and a Hub token in the environment must never be logged
        uri = server_uri.replace("http://", "http://alice:s3cret-pw@")
        oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port()), "HF_TOKEN": "hf_s3cret_token"}
        processes: dict[str, subprocess.Popen] = {}

        def start(tuner_id: str) -> None:
            with (folder / f"{tuner_id}.out").open("w") as stdout, (folder / f"{tuner_id}.err").open("w") as stderr:
                processes[tuner_id] = start_textsweep(["sweep", "--config", str(config), "--quiet"], folder, stdout=stdout,
                                                      stderr=stderr, MLFLOW_TRACKING_URI=uri, KERASTUNER_TUNER_ID=tuner_id, **oracle)

        try:
            # All at once, the workers first: they wait for the chief's sweep run. A worker slowed down
            # by a loaded machine still gets trials, since the first worker to start a second trial is
            # frozen in it and leaves the rest of the budget to the other.
            for tuner_id in ("tuner0", "tuner1", "chief"):
                start(tuner_id)
            workers = {tuner_id: psutil.Process(processes[tuner_id].pid) for tuner_id in ("tuner0", "tuner1")}
            frozen, _ = stop_a_worker_training_its_second_trial(MlflowClient(server_uri), "dist", lambda: workers,
                                                                lambda: processes["chief"].poll() is None)
            processes["chief"].wait(timeout=600)
            processes[({"tuner0", "tuner1"} - {frozen}).pop()].wait(timeout=120)
        finally:
            for process in processes.values():  # the frozen worker, and every process on a failure
                if process.poll() is None:
                    process.kill()
                    process.wait()
        yield DistributedSweep(
            server_uri, "dist", {tuner_id: process.returncode for tuner_id, process in processes.items()},
            {tuner_id: (folder / f"{tuner_id}.out").read_text() for tuner_id in processes},
            {tuner_id: (folder / f"{tuner_id}.err").read_text() for tuner_id in processes}, frozen)


def test_chief_and_two_workers_on_loopback_share_one_sweep_run(hand_started_sweep):
    sweep = hand_started_sweep
    for tuner_id in ("chief", sweep.survivor):  # the frozen worker was killed by the fixture
        assert sweep.exit_codes[tuner_id] == 0, (tuner_id, sweep.stderr[tuner_id][-3000:])
    for tuner_id in ("tuner0", "tuner1"):
        assert "joining the sweep of chief 127.0.0.1" in sweep.stderr[tuner_id], sweep.stderr[tuner_id][-2000:]
    assert "4 finished trials" in sweep.stdout["chief"]
    assert "s3cret-pw" not in "".join(sweep.stdout.values()) + "".join(sweep.stderr.values())
    finished = assert_one_sweep_with_finished_trials(sweep.uri, "dist", 4)
    assert {r.data.tags[TUNER] for r in finished} == {"tuner0", "tuner1"}
    mlflow.set_tracking_uri(sweep.uri)
    assert_no_secret_logged(sweep.uri, "dist", ["s3cret-pw", "hf_s3cret_token"])


def test_a_remote_worker_that_stops_reporting_loses_its_trial_to_another(hand_started_sweep):
    """Workers started by hand (as on other hosts), one frozen with SIGSTOP mid-trial."""
    sweep = hand_started_sweep
    chief_output = sweep.stdout["chief"] + sweep.stderr["chief"]
    assert sweep.exit_codes["chief"] == 0, chief_output[-3000:]
    assert sweep.exit_codes[sweep.survivor] == 0, sweep.stderr[sweep.survivor][-3000:]
    assert f"worker {sweep.signalled} reported no epoch for 20s (search.worker_timeout)" in chief_output
    assert "goes to another worker" in chief_output
    finished = assert_one_sweep_with_finished_trials(sweep.uri, "dist", 4)
    killed = sweep.killed_runs()
    assert len(killed) == 1 and killed[0].data.tags[TUNER] == sweep.signalled
    assert "reported no epoch" in killed[0].data.tags["textsweep.failure_reason"]
    assert killed[0].data.tags["textsweep.trial_id"] in {r.data.tags["textsweep.trial_id"] for r in finished}


# ---------------------------------------------------------------- `--workers 2` on PostgreSQL, one killed


@pytest.fixture(scope="module")
def postgres(free_port):
    """A real PostgreSQL server on 127.0.0.1 (Debian's package, installed by .ci/run)."""
    bindir = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is needed for MLflow's PostgreSQL store")
    # Outside pytest's tmp_path: its parents are private to root, and PostgreSQL refuses root.
    root = Path(tempfile.mkdtemp(prefix="textsweep-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    run_as = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        for path in (root, sockets):
            shutil.chown(path, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    init = subprocess.run(run_as + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                          capture_output=True, text=True)
    if init.returncode != 0:
        pytest.skip(f"initdb failed: {init.stderr[-500:]}")
    start = subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "pg.log"), "-o",
                                     f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1", "start"],
                           capture_output=True, text=True)
    if start.returncode != 0:
        pytest.skip(f"PostgreSQL did not start: {start.stderr[-500:]}")
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"], check=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def launched_workers(launcher: subprocess.Popen) -> dict[str, psutil.Process]:
    """The worker processes `textsweep sweep --workers N` started, by tuner id."""
    workers = {}
    for child in psutil.Process(launcher.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if tuner_id := child.environ().get("KERASTUNER_TUNER_ID"):
                workers[tuner_id] = child
    return workers


@pytest.fixture(scope="module")
def launched_sweep(tmp_path_factory, sweep_file, postgres, clean_env, mlflow_server, start_textsweep):
    """`textsweep sweep --workers 2` on a PostgreSQL-backed server that takes the artifacts too; the
    first worker caught training its second trial is killed (SIGKILL)."""
    folder = tmp_path_factory.mktemp("launched")
    config = sweep_file(folder, "pg")
    with mlflow_server(postgres, folder, env=clean_env(), artifacts=folder / "artifacts") as uri:
        with (folder / "launcher.out").open("w") as output:
            launcher = start_textsweep(["sweep", "--config", str(config), "--workers", "2"], folder, stdout=output,
                                       stderr=subprocess.STDOUT, MLFLOW_TRACKING_URI=uri)
        try:
            # Stopped first, so that the check that it is inside its trial still holds when it dies.
            victim, process = stop_a_worker_training_its_second_trial(MlflowClient(uri), "pg", lambda: launched_workers(launcher),
                                                                      lambda: launcher.poll() is None)
            process.send_signal(signal.SIGKILL)
            launcher.wait(timeout=600)
        finally:
            if launcher.poll() is None:  # a failure above: nothing of this sweep may outlive the module
                for member in [*psutil.Process(launcher.pid).children(recursive=True), psutil.Process(launcher.pid)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        member.kill()
                launcher.wait()
        yield DistributedSweep(uri, "pg", {"launcher": launcher.returncode}, {"launcher": (folder / "launcher.out").read_text()},
                               {"launcher": ""}, victim)


def test_a_dead_worker_s_trial_goes_to_the_survivor_and_the_budget_completes(launched_sweep):
    sweep = launched_sweep
    output = sweep.stdout["launcher"]
    assert sweep.exit_codes["launcher"] == 0, output[-3000:]
    assert f"worker {sweep.signalled} died (exit code -9)" in output and "goes to another worker" in output
    finished = assert_one_sweep_with_finished_trials(sweep.uri, "pg", 4)
    killed = sweep.killed_runs()
    assert len(killed) == 1 and killed[0].data.tags[TUNER] == sweep.signalled
    assert killed[0].data.tags["textsweep.trial_id"] in {r.data.tags["textsweep.trial_id"] for r in finished}


def test_postgres_backed_server_with_two_concurrent_workers(launched_sweep):
    sweep = launched_sweep
    assert sweep.exit_codes["launcher"] == 0, sweep.stdout["launcher"][-3000:]
    finished = assert_one_sweep_with_finished_trials(sweep.uri, "pg", 4)
    assert len({r.data.tags[TUNER] for r in finished}) == 2
    for run in finished:  # artifacts went through the server to its destination
        assert {"tokenizer", "learning_curves.png"} <= {a.path for a in MlflowClient(sweep.uri).list_artifacts(run.info.run_id)}


def test_a_database_store_is_checked_before_mlflow_opens_it(tmp_path, monkeypatch, postgres):
    """textsweep on a real PostgreSQL store directly: a database that does not exist is one error
    naming host and port (MLflow alone retries it for ~100 s); the right one opens."""
    from textsweep import tracking
    from textsweep.errors import TrackingError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres.replace("/mlflow", "/no_such_db"))
    with pytest.raises(TrackingError, match=r"did not accept a connection on 127\.0\.0\.1:\d+: .*\"no_such_db\" does not exist"):
        tracking.connect()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres)
    assert tracking.connect().search_experiments()
