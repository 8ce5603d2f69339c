"""Distributed sweeps on KerasTuner's chief/worker oracle, all logging to one real `mlflow server`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import mlflow
import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e


@pytest.fixture
def tiny_sweep(tmp_path, reviews_csv, write_sweep_file):
    """`tiny_sweep(name, trials=4, epochs=1)`: a sweep file `<name>.yaml` over 600 reviews."""
    return lambda name, trials=4, epochs=1: write_sweep_file(
        tmp_path / f"{name}.yaml", name=name, source=str(reviews_csv),
        defaults={"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 64, "epochs": epochs, "recurrent_dropout": 0.0},
        search={"algorithm": "random", "max_trials": trials, "space": {
            "max_features": {"values": [200, 300, 400]}, "embed_dim": {"min": 4, "max": 16, "step": 4},
            "lstm_out": {"values": [4, 8]}, "dropout": {"min": 0.0, "max": 0.3, "step": 0.1}}},
    )


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


def test_chief_and_two_workers_on_loopback_share_one_sweep_run(
        tmp_path, clean_env, free_port, mlflow_server, start_textsweep, tiny_sweep):
    config = tiny_sweep("dist")
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path, env=clean_env(), artifacts=tmp_path / "artifacts") as server_uri:
        # credentials in the tracking URI and a Hub token in the environment must never be logged
        uri = server_uri.replace("http://", "http://alice:s3cret-pw@")
        oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port()), "HF_TOKEN": "hf_s3cret_token"}

        def start(tuner_id: str) -> subprocess.Popen:
            return start_textsweep(["sweep", "--config", str(config), "--quiet"], tmp_path, MLFLOW_TRACKING_URI=uri,
                                   KERASTUNER_TUNER_ID=tuner_id, **oracle)

        # Workers first, and the chief once both are ready: a worker slowed down by a loaded
        # machine would otherwise find every trial taken.
        processes = {tuner_id: start(tuner_id) for tuner_id in ("tuner0", "tuner1")}
        early = {}
        for tuner_id, process in processes.items():
            lines = []
            for line in process.stderr:
                lines.append(line)
                if "joining the sweep of chief" in line:
                    break
            early[tuner_id] = "".join(lines)
            assert "joining the sweep of chief 127.0.0.1" in early[tuner_id], early[tuner_id][-2000:]
        processes["chief"] = start("chief")
        outputs = {tuner_id: process.communicate(timeout=600) for tuner_id, process in processes.items()}
        for tuner_id, process in processes.items():
            assert process.returncode == 0, (tuner_id, outputs[tuner_id][1][-3000:])
        assert "4 finished trials" in outputs["chief"][0]
        assert "s3cret-pw" not in "".join(out + err for out, err in outputs.values())
        finished = assert_one_sweep_with_finished_trials(server_uri, "dist", 4)
        assert {r.data.tags["textsweep.tuner_id"] for r in finished} == {"tuner0", "tuner1"}
        mlflow.set_tracking_uri(server_uri)
        assert_no_secret_logged(server_uri, "dist", ["s3cret-pw", "hf_s3cret_token"])


def test_a_dead_worker_s_trial_goes_to_the_survivor_and_the_budget_completes(
        tmp_path, clean_env, mlflow_server, start_textsweep, tiny_sweep):
    config = tiny_sweep("loss", trials=4, epochs=3)
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path, env=clean_env(), artifacts=tmp_path / "artifacts") as uri:
        launcher = start_textsweep(["sweep", "--config", str(config), "--workers", "2"], tmp_path,
                                   stderr=subprocess.STDOUT, MLFLOW_TRACKING_URI=uri)
        client = MlflowClient(uri)
        deadline = time.monotonic() + 300
        victim = None
        while victim is None:  # kill tuner1 in the middle of its first trial
            assert launcher.poll() is None and time.monotonic() < deadline
            experiment = client.get_experiment_by_name("loss")
            running = experiment and client.search_runs(
                [experiment.experiment_id], "tags.`textsweep.tuner_id` = 'tuner1' and attributes.status = 'RUNNING'")
            if running:
                for child in psutil.Process(launcher.pid).children():
                    if child.environ().get("KERASTUNER_TUNER_ID") == "tuner1":
                        victim = child
            time.sleep(0.5)
        time.sleep(2)
        victim.send_signal(signal.SIGKILL)
        output, _ = launcher.communicate(timeout=600)
        assert launcher.returncode == 0, output[-3000:]
        assert "worker tuner1 died" in output and "goes to another worker" in output
        finished = assert_one_sweep_with_finished_trials(uri, "loss", 4)
        killed = client.search_runs([client.get_experiment_by_name("loss").experiment_id], "attributes.status = 'KILLED'")
        assert len(killed) == 1 and killed[0].data.tags["textsweep.tuner_id"] == "tuner1"
        assert killed[0].data.tags["textsweep.trial_id"] in {r.data.tags["textsweep.trial_id"] for r in finished}


@pytest.fixture
def postgres(tmp_path, free_port):
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


def test_postgres_backed_server_with_two_concurrent_workers(
        tmp_path, postgres, clean_env, mlflow_server, run_textsweep, tiny_sweep):
    config = tiny_sweep("pg", trials=4)
    with mlflow_server(postgres, tmp_path, env=clean_env(), artifacts=tmp_path / "artifacts") as uri:
        launcher = run_textsweep(["sweep", "--config", str(config), "--workers", "2", "--quiet"], tmp_path,
                                 MLFLOW_TRACKING_URI=uri)
        assert launcher.returncode == 0, launcher.stdout[-2000:] + launcher.stderr[-2000:]
        finished = assert_one_sweep_with_finished_trials(uri, "pg", 4)
        assert len({r.data.tags["textsweep.tuner_id"] for r in finished}) == 2
        for run in finished:  # artifacts went through the server to its destination
            assert {"tokenizer", "learning_curves.png"} <= {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)}


def test_a_remote_worker_that_stops_reporting_loses_its_trial_to_another(
        tmp_path, clean_env, free_port, mlflow_server, start_textsweep, tiny_sweep):
    """Workers started by hand (as on other hosts), one frozen with SIGSTOP mid-trial."""
    config = tiny_sweep("silent", trials=4, epochs=3)
    settings = yaml.safe_load(config.read_text())
    settings["search"]["worker_timeout"] = "20s"
    config.write_text(yaml.safe_dump(settings))
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path, env=clean_env(), artifacts=tmp_path / "artifacts") as uri:
        oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port())}

        def start(tuner_id: str) -> subprocess.Popen:
            return start_textsweep(["sweep", "--config", str(config), "--quiet"], tmp_path, stderr=subprocess.STDOUT,
                                   MLFLOW_TRACKING_URI=uri, KERASTUNER_TUNER_ID=tuner_id, **oracle)

        workers = {tuner_id: start(tuner_id) for tuner_id in ("tuner0", "tuner1")}
        for tuner_id, process in workers.items():
            for line in process.stdout:
                if "joining the sweep of chief" in line:
                    break
        chief = start("chief")
        client = MlflowClient(uri)
        deadline = time.monotonic() + 300
        while True:  # freeze tuner0 in the middle of a trial
            assert chief.poll() is None and time.monotonic() < deadline
            experiment = client.get_experiment_by_name("silent")
            if experiment and client.search_runs([experiment.experiment_id],
                                                 "tags.`textsweep.tuner_id` = 'tuner0' and attributes.status = 'RUNNING'"):
                break
            time.sleep(0.5)
        workers["tuner0"].send_signal(signal.SIGSTOP)
        try:
            chief_output, _ = chief.communicate(timeout=600)
            survivor_output, _ = workers["tuner1"].communicate(timeout=120)
        finally:
            workers["tuner0"].kill()
            workers["tuner0"].wait()
        assert chief.returncode == 0, chief_output[-3000:]
        assert workers["tuner1"].returncode == 0, survivor_output[-3000:]
        assert "worker tuner0 reported no epoch for 20s (search.worker_timeout)" in chief_output
        assert "goes to another worker" in chief_output
        finished = assert_one_sweep_with_finished_trials(uri, "silent", 4)
        killed = client.search_runs([client.get_experiment_by_name("silent").experiment_id], "attributes.status = 'KILLED'")
        assert len(killed) == 1 and killed[0].data.tags["textsweep.tuner_id"] == "tuner0"
        assert "reported no epoch" in killed[0].data.tags["textsweep.failure_reason"]
        assert killed[0].data.tags["textsweep.trial_id"] in {r.data.tags["textsweep.trial_id"] for r in finished}


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
