"""The Python API (jobs.py, exposed as `textsweep.sweep/train/promote/load_model`), as a notebook uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import BIN, review_rows, write_sweep_file

pytestmark = pytest.mark.e2e

TINY = {
    "name": "api-sweep",
    "data": {"seed": 42},
    "defaults": {"max_features": 300, "embed_dim": 8, "lstm_out": 8, "batch_size": 64, "epochs": 2, "recurrent_dropout": 0.0},
    "search": {"algorithm": "random", "max_trials": 2,
               "space": {"embed_dim": {"values": [4, 8]}, "lstm_out": {"values": [4, 8]}}},
    "registry": {"model_name": "api-model"},
}

# What a user types in a notebook: a DataFrame built in code, a dict config, the result object.
NOTEBOOK = """
import json, sys
import pandas as pd
import textsweep
sys.path.insert(0, {tests!r})
from conftest import review_rows

frame = review_rows(500, seed=3)
frame = pd.DataFrame({{"text": frame["text"].tolist(), "label": frame["label"].tolist()}})  # built in code
result = textsweep.sweep({config!r}, data=frame, quiet=True)
predictions = result.best_model().predict(["a wonderful , moving film", "dull and far too long"])
promotion = result.promote()
served = textsweep.load_model("models:/api-model@champion").predict(["a wonderful , moving film"])
print(json.dumps({{
    "sweep_run_id": result.sweep_run_id, "experiment_id": result.experiment_id,
    "leaderboard_run_ids": result.leaderboard["run_id"].tolist(),
    "leaderboard_scores": result.leaderboard["best_val_accuracy"].tolist(),
    "best_run_id": result.best_run_id, "best_params": result.best_params,
    "labels": predictions["label"].tolist(), "probabilities": predictions["probability"].tolist(),
    "texts": predictions["text"].tolist(), "version": promotion.version, "served": served["label"].tolist(),
}}))
"""


def fresh_python(script: str, cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KERASTUNER_"))}
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_notebook_sweeps_a_dataframe_and_gets_a_result_that_matches_mlflow(tmp_path):
    tests = str(Path(__file__).parent)
    out = fresh_python(NOTEBOOK.format(tests=tests, config=TINY), tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    sweep = client.get_run(out["sweep_run_id"])
    assert sweep.info.status == "FINISHED" and sweep.data.tags["textsweep.kind"] == "sweep"
    assert sweep.data.params["data_source"] == "dataframe" and len(sweep.data.params["data_fingerprint"]) == 16
    assert {i.dataset.name for i in sweep.inputs.dataset_inputs} == {"api-sweep-train", "api-sweep-val", "api-sweep-test"}
    trials = client.search_runs([out["experiment_id"]], f"tags.`mlflow.parentRunId` = '{out['sweep_run_id']}' "
                                "and tags.`textsweep.kind` = 'trial'", order_by=["metrics.best_val_accuracy DESC"])
    assert out["leaderboard_run_ids"] == [t.info.run_id for t in trials]  # the leaderboard is what MLflow stores
    assert out["leaderboard_scores"] == [t.data.metrics["best_val_accuracy"] for t in trials]
    best = trials[0]
    assert out["best_run_id"] == best.info.run_id
    assert {k: str(out["best_params"][k]) for k in ("embed_dim", "lstm_out", "max_features")} == \
        {k: best.data.params[k] for k in ("embed_dim", "lstm_out", "max_features")}
    assert out["texts"] == ["a wonderful , moving film", "dull and far too long"]
    assert set(out["labels"]) <= {0, 1} and all(0 <= p <= 1 for p in out["probabilities"])
    version = client.get_model_version("api-model", out["version"])
    assert version.run_id == best.info.run_id and str(client.get_model_version_by_alias("api-model", "champion").version) == str(out["version"])
    assert out["served"] == out["labels"][:1]  # the registered model labels like the trial's own


def layout(store: Path, name: str) -> dict:
    """What MLflow holds for a sweep, without ids and values: run kinds, tag/param/metric keys, artifacts."""
    client = MlflowClient(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    shape = {}
    for run in runs:
        kind = run.data.tags["textsweep.kind"]
        entry = shape.setdefault(kind, {"count": 0})
        entry["count"] += 1
        entry["params"] = sorted(run.data.params)
        entry["metrics"] = sorted(run.data.metrics)
        entry["tags"] = sorted(t for t in run.data.tags if not t.startswith("mlflow.") or t == "mlflow.parentRunId")
        entry["artifacts"] = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    return {"experiment_tags": sorted(experiment.tags), "runs": shape}


def test_the_same_sweep_file_through_the_cli_and_the_api_gives_the_same_mlflow_layout(tmp_path):
    source = tmp_path / "reviews.csv"
    review_rows(400).to_csv(source, index=False)
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    cli_dir.mkdir(), api_dir.mkdir()
    config = write_sweep_file(tmp_path / "same.yaml", name="same-layout", source=str(source),
                              search={"algorithm": "random", "max_trials": 2, "space": {"lstm_out": {"values": [4, 8]}}})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KERASTUNER_"))}
    cli = subprocess.run([str(BIN / "textsweep"), "sweep", "--config", str(config), "--quiet"], cwd=cli_dir, env=env,
                         capture_output=True, text=True, timeout=900)
    assert cli.returncode == 0, cli.stderr[-3000:]
    fresh_python(f"import json, textsweep; r = textsweep.sweep({str(config)!r}, quiet=True); print(json.dumps(r.sweep_run_id))", api_dir)
    assert layout(cli_dir, "same-layout") == layout(api_dir, "same-layout")


def test_config_and_data_errors_come_before_tensorflow_loads(tmp_path):
    """A user's mistake is reported in about a second, not after TensorFlow's start-up."""
    script = f"""
import json, sys, textsweep
errors = []
for config in ({{"name": "x", "data": {{"source": {str(tmp_path / 'missing.csv')!r}}}}}, {{"name": "x", "defualts": {{}}}}):
    try:
        textsweep.sweep(config)
    except textsweep.TextsweepError as exc:
        errors.append(type(exc).__name__)
print(json.dumps({{"errors": errors, "tensorflow": "tensorflow" in sys.modules, "keras_tuner": "keras_tuner" in sys.modules}}))
"""
    out = fresh_python(script, tmp_path)
    assert out == {"errors": ["DataError", "ConfigError"], "tensorflow": False, "keras_tuner": False}


def test_a_dict_config_is_validated_like_a_sweep_file():
    import textsweep

    with pytest.raises(textsweep.ConfigError, match="unknown key 'search.max_trails'; did you mean 'max_trials'"):
        textsweep.sweep({"name": "x", "search": {"max_trails": 3}})
    with pytest.raises(textsweep.ConfigError, match="config must be a sweep-file path, a dict"):
        textsweep.sweep(42)
    with pytest.raises(textsweep.DataError, match="data must be a pandas DataFrame"):
        from textsweep.jobs import prepare_data, resolve_config

        prepare_data(resolve_config({"name": "x"}), data=[["text", 1]])


def test_max_time_stops_the_sweep_within_an_epoch_finished_and_tagged_and_a_larger_budget_resumes(store):
    import textsweep

    config = TINY | {"name": "timed", "search": TINY["search"] | {"max_trials": 50, "max_time": "8s"}}
    config["defaults"] = TINY["defaults"] | {"epochs": 400}  # one trial alone would take far longer than 8 s
    data = review_rows(400, seed=5)
    first = textsweep.sweep(config, data=data, quiet=True)
    client = MlflowClient(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    sweep_run = client.get_run(first.sweep_run_id)
    assert sweep_run.info.status == "FINISHED" and first.stopped_by == "max_time"
    assert sweep_run.data.tags["textsweep.stopped_by"] == "max_time"
    deadline_ms = float(sweep_run.data.tags["textsweep.deadline"]) * 1000
    trials = client.search_runs([first.experiment_id], "tags.`textsweep.kind` = 'trial'")
    assert trials and {t.info.status for t in trials} == {"FINISHED"}  # the cut trial is recorded as finished
    assert all(t.info.start_time <= deadline_ms for t in trials)  # no trial started after the budget
    epochs = {t.info.run_id: [m.timestamp for m in client.get_metric_history(t.info.run_id, "val_accuracy")] for t in trials}
    cut = [times for times in epochs.values() if len(times) < 400]
    assert len(cut) == 1  # the trial running at the deadline, cut short
    longest_epoch = max(b - a for a, b in zip(cut[0], cut[0][1:]))
    assert cut[0][-1] <= deadline_ms + longest_epoch + 2_000  # stopped at the first epoch end after the deadline
    assert len(first.leaderboard) == len(trials) and first.promote is not None

    resumed = textsweep.sweep(config | {"search": config["search"] | {"max_time": "15s"}}, data=data, quiet=True)
    assert resumed.resumed and resumed.sweep_run_id == first.sweep_run_id
    assert len(resumed.leaderboard) > len(first.leaderboard)
