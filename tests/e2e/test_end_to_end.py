"""`mlflow run` of the MLproject end to end, asserting on what MLflow stored and `textsweep runs` prints."""

from __future__ import annotations

import json

import mlflow
import pytest

pytestmark = pytest.mark.e2e


def logged_models_of(run):
    """The run's MLflow 3 LoggedModels, checked to hold a loadable Keras model."""
    model_ids = [output.model_id for output in run.outputs.model_outputs]
    for model_id in model_ids:
        assert mlflow.get_logged_model(model_id).source_run_id == run.info.run_id
    return model_ids


def test_mlflow_run_train_logs_one_complete_run(store, reviews_csv, write_sweep_file, mlflow_run, runs_of):
    config = write_sweep_file(store / "train.yaml", name="rt-train", source=str(reviews_csv))
    mlflow_run("train", config, store)
    client, runs = runs_of("rt-train")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["textsweep.kind"] == "train"
    params = run.data.params
    for name, value in {"max_features": "400", "embed_dim": "8", "lstm_out": "8", "batch_size": "64", "epochs": "2",
                        "spatial_dropout": "0.4", "dropout": "0.2", "recurrent_dropout": "0.0"}.items():
        assert params[name] == value, name
    assert len(params["data_fingerprint"]) == 16
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [0, 1], metric
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
    tags = run.data.tags
    assert tags["textsweep.device"] == "CPU" and tags["textsweep.tensorflow_version"].startswith("2.21")
    assert "textsweep.git_commit" in tags or "mlflow.source.git.commit" in tags
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"rt-train-train", "rt-train-val", "rt-train-test"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "tokenizer")] == ["tokenizer/vocabulary.json"]
    vocabulary = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/tokenizer/vocabulary.json")
    assert '"format": "textsweep.vocabulary/1"' in vocabulary
    (model_id,) = logged_models_of(run)
    keras_model = mlflow.tensorflow.load_model(f"models:/{model_id}")
    assert keras_model.layers[0].input_dim == 400
    # the run `mlflow run` opened in the Default experiment points to the real one
    default = client.get_experiment_by_name("Default")
    launcher = client.search_runs([default.experiment_id])
    assert [r.data.tags.get("textsweep.run_id") for r in launcher] == [run.info.run_id]
    # artifacts stay beside the store
    assert (store / "mlruns" / "artifacts").is_dir()


def test_mlflow_run_sweep_logs_one_parent_and_a_nested_run_per_trial(store, reviews_csv, write_sweep_file, mlflow_run,
                                                                      runs_of, run_textsweep):
    config = write_sweep_file(store / "sweep.yaml", name="rt-sweep", source=str(reviews_csv))
    result = mlflow_run("sweep", config, store)
    assert "top trials:" in result.stdout and "mlflow ui --backend-store-uri" in result.stdout
    client, runs = runs_of("rt-sweep")
    parents = [r for r in runs if r.data.tags.get("textsweep.kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("textsweep.kind") == "trial"]
    assert len(parents) == 1 and len(trials) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    assert sorted(t.data.tags["textsweep.trial_id"] for t in trials) == ["0", "1", "2"]
    assert {t.data.tags["textsweep.tuner_id"] for t in trials} == {"tuner0"}
    swept = ("max_features", "embed_dim", "lstm_out", "dropout", "batch_size")
    assert len({tuple(t.data.params[p] for p in swept) for t in trials}) == 3  # distinct configurations
    trial_0 = next(t for t in trials if t.data.tags["textsweep.trial_id"] == "0")
    assert {p: trial_0.data.params[p] for p in swept} == {  # the sweep file's defaults come first
        "max_features": "400", "embed_dim": "8", "lstm_out": "8", "dropout": "0.2", "batch_size": "64"}
    references = [r for r in runs if r.data.tags.get("textsweep.kind") == "reference"]
    assert len(references) == 1 and references[0].info.status == "FINISHED"
    assert references[0].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert 0.5 < references[0].data.metrics["val_accuracy"] <= 1 and 0.5 < references[0].data.metrics["test_accuracy"] <= 1
    assert "linear reference (TF-IDF word+char n-grams, logistic regression): val_accuracy" in result.stdout
    for trial in trials:
        run_id = trial.info.run_id
        assert trial.info.status == "FINISHED"
        assert trial.data.params["spatial_dropout"] == "0.4"  # not searched: stays at its default
        assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [0, 1]
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(trial.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert {"tokenizer", "learning_curves.png"} <= artifacts
        capped = mlflow.artifacts.load_text(f"runs:/{run_id}/tokenizer/vocabulary.json")
        # capped at the trial's cap: Keras' num_words keeps ids 1..max_features-1
        assert len(json.loads(capped)["words"]) == int(trial.data.params["max_features"]) - 1
        assert len(logged_models_of(trial)) == 1
    best = max(trials, key=lambda t: t.data.metrics["best_val_accuracy"])
    assert parent.data.tags["textsweep.best_trial_id"] == best.data.tags["textsweep.trial_id"]
    assert parent.data.metrics["best_val_accuracy"] == best.data.metrics["best_val_accuracy"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep.yaml", "leaderboard.csv", "parallel_coordinates.png", "hyperparameter_importance.png"} <= artifacts
    assert parent.data.params["algorithm"] == "random" and parent.data.params["max_trials"] == "3"
    # the leaderboard as `textsweep runs` prints it, from what MLflow stored
    runs_output = run_textsweep(["runs", "rt-sweep"], store)
    assert runs_output.returncode == 0 and "3 finished trials" in runs_output.stdout
    assert f"test_accuracy {references[0].data.metrics['test_accuracy']:.4f}; the best trial" in runs_output.stdout
    lines = runs_output.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["trial_id", "run_id"])
    first_row = lines[header + 1].split()
    assert "classes (label names, in output order): [0, 1]" in runs_output.stdout
    assert first_row[:2] == [best.data.tags["textsweep.trial_id"], best.info.run_id]
