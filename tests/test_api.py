"""The Python API (api.py, exposed as `textsweep.sweep/train/promote/load_model`), as a notebook uses it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

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
import json
import pandas as pd
import textsweep

with open("rows.json") as rows:  # texts and labels the user has at hand
    rows = json.load(rows)
frame = pd.DataFrame({{"text": rows["text"], "label": rows["label"]}})  # built in code
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
    "chosen": promotion.chosen, "candidate_runs": {{c.kind: c.run_id for c in promotion.candidates}},
}}))
"""


@pytest.fixture(scope="session")
def fresh_python(clean_env):
    """`fresh_python(script, cwd) -> dict`: a script in a new Python, as a notebook runs it; its last line, as JSON."""

    def run(script: str, cwd: Path) -> dict:
        result = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


def test_a_notebook_sweeps_a_dataframe_and_gets_a_result_that_matches_mlflow(tmp_path, review_rows, fresh_python):
    rows = review_rows(500, seed=3)
    (tmp_path / "rows.json").write_text(json.dumps({"text": rows["text"].tolist(), "label": rows["label"].tolist()}))
    out = fresh_python(NOTEBOOK.format(config=TINY), tmp_path)
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
    assert out["candidate_runs"]["lstm"] == best.info.run_id  # the best trial competed with the reference and blend
    assert version.run_id == out["candidate_runs"][out["chosen"]] and version.tags["textsweep.candidate"] == out["chosen"]
    assert str(client.get_model_version_by_alias("api-model", "champion").version) == str(out["version"])
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
        # MLflow samples system metrics every 10 s: whether a short trial has any depends on the machine's speed.
        entry["metrics"] = sorted(m for m in run.data.metrics if not m.startswith("system/"))
        entry["tags"] = sorted(t for t in run.data.tags if not t.startswith("mlflow.") or t == "mlflow.parentRunId")
        entry["artifacts"] = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    return {"experiment_tags": sorted(experiment.tags), "runs": shape}


def test_the_same_sweep_file_through_the_cli_and_the_api_gives_the_same_mlflow_layout(tmp_path, fresh_python, review_rows, run_textsweep, write_sweep_file):
    source = tmp_path / "reviews.csv"
    review_rows(400).to_csv(source, index=False)
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    cli_dir.mkdir(), api_dir.mkdir()
    config = write_sweep_file(tmp_path / "same.yaml", name="same-layout", source=str(source),
                              search={"algorithm": "random", "max_trials": 2, "space": {"lstm_out": {"values": [4, 8]}}})
    cli = run_textsweep(["sweep", "--config", str(config), "--quiet"], cli_dir)
    assert cli.returncode == 0, cli.stderr[-3000:]
    fresh_python(f"import json, textsweep; r = textsweep.sweep({str(config)!r}, quiet=True); print(json.dumps(r.sweep_run_id))", api_dir)
    assert layout(cli_dir, "same-layout") == layout(api_dir, "same-layout")


def test_config_and_data_errors_come_before_tensorflow_loads(tmp_path, fresh_python):
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
        from textsweep.api import prepare_data, resolve_config

        prepare_data(resolve_config({"name": "x"}), data=[["text", 1]])


class WaitForTheDeadline:
    """A Keras callback that, at the end of a trial's first epoch, waits until the sweep's
    search.max_time has passed: the budget then runs out within that epoch on any machine, however
    loaded (the test waits on the deadline, an event, rather than guessing epochs per second)."""

    def __new__(cls):
        import keras
        import mlflow

        class Wait(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 0:
                    sweep_run = MlflowClient().get_run(mlflow.active_run().data.tags["mlflow.parentRunId"])
                    time.sleep(max(float(sweep_run.data.tags["textsweep.deadline"]) - time.time(), 0) + 0.01)

        return Wait()


class OneEpoch:
    """A Keras callback that ends every trial after its first epoch (a finished trial)."""

    def __new__(cls):
        import keras

        class Stop(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                self.model.stop_training = True

        return Stop()


def test_max_time_stops_the_sweep_within_an_epoch_finished_and_tagged_and_a_larger_budget_resumes(store, review_rows):
    import textsweep

    config = TINY | {"name": "timed", "search": TINY["search"] | {"max_trials": 3, "max_time": "2s"}}
    config["defaults"] = TINY["defaults"] | {"epochs": 400}  # only the budget can end a trial
    data = review_rows(400, seed=5)
    first = textsweep.sweep(config, data=data, quiet=True, callbacks=[WaitForTheDeadline()])
    client = MlflowClient(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    sweep_run = client.get_run(first.sweep_run_id)
    assert sweep_run.info.status == "FINISHED" and first.stopped_by == "max_time"
    assert sweep_run.data.tags["textsweep.stopped_by"] == "max_time"
    assert sweep_run.data.params["space.embed_dim"].startswith('{"values": [4, 8]')  # integers, not [4.0, 8.0]
    trials = client.search_runs([first.experiment_id], "tags.`textsweep.kind` = 'trial'")
    assert [(t.data.tags["textsweep.trial_id"], t.info.status) for t in trials] == [("0", "FINISHED")]  # none after it
    assert len(client.get_metric_history(trials[0].info.run_id, "val_accuracy")) == 1  # cut after the epoch it ran out in
    assert "best_val_accuracy" in trials[0].data.metrics and len(first.leaderboard) == 1
    assert first.stop_reason.startswith("search.max_time (2s) ended the search after 1 finished trial; here an epoch "
                                        "takes about ")
    assert "and a trial of 400 epochs about " in first.stop_reason and "Rerun the same command with a larger" in first.stop_reason

    resumed = textsweep.sweep(config | {"search": config["search"] | {"max_time": "1h"}}, data=data, quiet=True,
                              callbacks=[OneEpoch()])
    assert resumed.resumed and resumed.sweep_run_id == first.sweep_run_id
    assert len(resumed.leaderboard) == 3 and resumed.stopped_by is None and resumed.stop_reason is None
    assert client.get_run(first.sweep_run_id).data.tags["textsweep.stopped_by"] == "budget"


def test_a_one_second_budget_ends_the_sweep_with_its_first_trial_and_says_how_long_a_trial_takes(store, reviews_csv, run_textsweep, write_sweep_file):
    """search.max_time: 1s ends before the sweep even starts a trial: the first trial still runs
    (cut after its first epoch, on any machine: 200 epochs never fit in a second), so the sweep
    ends FINISHED with a result, and the message measures how long an epoch and a trial take."""
    config = write_sweep_file(
        store / "second.yaml", name="one-second", source=str(reviews_csv),
        defaults={"max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 64, "epochs": 200, "recurrent_dropout": 0.0},
        search={"algorithm": "random", "max_trials": 4, "max_time": "1s", "space": {"lstm_out": {"values": [4, 8]}}},
    )
    result = run_textsweep(["sweep", "--config", str(config), "--quiet"], store)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "1 finished trials" in result.stdout
    said = next(line for line in result.stdout.splitlines() if line.startswith("search.max_time"))
    assert said.startswith("search.max_time (1s) ended the search after 1 finished trial; here an epoch takes about ")
    assert "and a trial of 200 epochs about " in said and ", more than the whole budget." in said
    assert "failure.txt" not in result.stdout + result.stderr
    client = MlflowClient(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("one-second").experiment_id])
    kinds = sorted((r.data.tags["textsweep.kind"], r.data.tags.get("textsweep.trial_id"), r.info.status) for r in runs)
    assert kinds == [("reference", None, "FINISHED"), ("sweep", None, "FINISHED"), ("trial", "0", "FINISHED")]
    sweep_run = next(r for r in runs if r.data.tags["textsweep.kind"] == "sweep")
    assert sweep_run.data.tags["textsweep.stopped_by"] == "max_time" and "textsweep.failure_reason" not in sweep_run.data.tags
    trial = next(r for r in runs if r.data.tags["textsweep.kind"] == "trial")
    assert 1 <= len(client.get_metric_history(trial.info.run_id, "val_accuracy")) < 200


def test_checks_that_need_the_data_fail_before_any_run_exists(store, review_rows):
    """A sigmoid output for 3 classes (or callbacks that are not Keras callbacks) used to surface only
    once the sweep run and its reference run existed, leaving a FAILED sweep behind."""
    import textsweep

    rows = review_rows(300, seed=2)
    three = rows.assign(label=[("neg", "mid", "pos")[i % 3] for i in range(len(rows))])
    sigmoid = TINY | {"name": "three", "defaults": TINY["defaults"] | {"output": "sigmoid"}}
    for job in (textsweep.sweep, textsweep.train):
        with pytest.raises(textsweep.ConfigError, match="defaults.output: sigmoid is a single unit for two classes, "
                                                        "but the data has 3 classes; set defaults.output: softmax"):
            job(sigmoid, data=three)
    client = MlflowClient(f"sqlite:///{store / 'mlruns' / 'mlflow.db'}")
    assert client.get_experiment_by_name("three") is None  # no sweep run, no reference run, no training run

    for callbacks, problem in ((42, "got 42"), ([42], "42 (int) is not one")):
        with pytest.raises(textsweep.ConfigError, match=rf"callbacks must be .*Keras callbacks.*{re.escape(problem)}"):
            textsweep.sweep(TINY | {"name": "callbacks"}, data=rows, callbacks=callbacks)
    assert client.get_experiment_by_name("callbacks") is None
