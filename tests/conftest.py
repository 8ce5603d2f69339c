"""Shared fixtures: small real data written in code, and a fresh MLflow store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
UZ_CSV = PROJECT_ROOT.parent / "shared" / "data" / "sentiment_uz.csv"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def uz_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """`n` rows of the real Uzbek set, both classes (the file lists all positives first)."""
    if not UZ_CSV.is_file():
        pytest.skip(f"{UZ_CSV} is missing: the tests read the Uzbek set from ../shared/data")
    return pd.read_csv(UZ_CSV).sample(n=n, random_state=seed)


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """Run in an empty directory with textsweep's default store (sqlite:///mlruns/mlflow.db)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    return tmp_path


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
def uz_slice(tmp_path) -> Path:
    """600 real Uzbek reviews as a CSV outside the repo."""
    path = tmp_path / "uz_slice.csv"
    uz_rows(600).to_csv(path, index=False)
    return path
