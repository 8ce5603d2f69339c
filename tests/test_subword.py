"""`tokenizer: subword`: BPE pieces fitted once per sweep, capped per trial, logged, promoted and served."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from textsweep import api
from textsweep.config import parse_config
from textsweep.errors import ConfigError
from textsweep.text import SUBWORD_FORMAT, SubwordTokenizer, load_tokenizer
from textsweep.tracking import KERAS_MODEL_NAME

MODEL_NAME = "rt-subword"
CHAMPION = f"models:/{MODEL_NAME}@champion"


# ---------------------------------------------------------------- the sweep file


def test_the_tokenizer_is_searched_by_name_and_fitted_at_the_largest_max_features():
    config = parse_config({"name": "t", "search": {"space": {"tokenizer": {"values": ["word", "subword"]},
                                                             "max_features": {"min": 1000, "max": 8000, "step": 1000}}}})
    assert config.search.space["tokenizer"].values == ["word", "subword"] and config.subword_size == 8000
    assert parse_config({"name": "t"}).subword_size is None  # word only: nothing to fit
    assert parse_config({"name": "t", "defaults": {"tokenizer": "subword", "max_features": 3000}}).subword_size == 3000
    for space, problem in [
        ({"tokenizer": {"values": ["bpe"]}}, r"space.tokenizer takes values from \['word', 'subword'\]"),
        ({"tokenizer": {"min": 0, "max": 1}}, r"space.tokenizer takes values from"),
        ({"max_features": {"values": ["many"]}}, r"space.max_features takes numbers; \['many'\] are not"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            parse_config({"name": "t", "search": {"space": space}})
    with pytest.raises(ConfigError, match="defaults.tokenizer"):
        parse_config({"name": "t", "defaults": {"tokenizer": "bpe"}})


# ---------------------------------------------------------------- end to end: sweep, promote, serve


@pytest.fixture(scope="module")
def module_store(tmp_path_factory, use_own_store):
    """The module's folder and MLflow store, made once (a store costs its migrations): the sweep's and
    the training run's, in experiments of their own."""
    directory = tmp_path_factory.mktemp("subword")
    with pytest.MonkeyPatch.context() as patch:
        use_own_store(patch, directory)
        yield directory


@pytest.fixture(scope="module")
def promoted(module_store, review_rows, write_sweep_file):
    """A 2-trial subword sweep on embedded reviews, promoted to `rt-subword@champion`: the folder, and
    what promote said.

    Through the API in this process, the code the CLI's `sweep` and `promote` wrap: this module
    tests the tokenizer, the logged and served models, and a `textsweep` process would add seconds
    of imports to each step.
    """
    directory = module_store
    review_rows(400, seed=1).to_csv(directory / "reviews.csv", index=False)
    sweep_file = write_sweep_file(
        directory / "subword.yaml", name="rt-subword", source="reviews.csv",
        data={"source": "reviews.csv", "seed": 42, "cleaning": "unicode"},
        defaults={"tokenizer": "subword", "max_features": 400, "embed_dim": 8, "lstm_out": 8, "batch_size": 32,
                  "epochs": 2, "recurrent_dropout": 0.0, "learning_rate": 0.01},
        search={"algorithm": "random", "max_trials": 2, "space": {"max_features": {"values": [250, 400]}}},
        registry={"model_name": MODEL_NAME, "candidates": ["lstm"]},  # the subword trial itself
    )
    api.sweep(sweep_file, quiet=True)
    return directory, api.promote(sweep_file).summary()


def trial_runs(experiment_name: str):
    experiment = mlflow.get_experiment_by_name(experiment_name)
    return mlflow.search_runs([experiment.experiment_id], filter_string="tags.`textsweep.kind` = 'trial'", output_format="list")


def test_each_subword_trial_logs_its_own_tokenizer_json(promoted):
    runs = trial_runs("rt-subword")
    assert len(runs) == 2 and {run.data.params["tokenizer"] for run in runs} == {"subword"}
    for run in runs:
        artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "tokenizer")]
        assert artifacts == ["tokenizer/subword.json"]
        tokenizer = load_tokenizer(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/tokenizer/subword.json"))
        assert isinstance(tokenizer, SubwordTokenizer)
        assert tokenizer.size == int(run.data.params["max_features"])  # the trial's own cap
        assert tokenizer.maxlen == int(run.data.params["maxlen_effective"])
        (model,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                               filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{KERAS_MODEL_NAME}'")
        keras_model = mlflow.tensorflow.load_model(f"models:/{model.model_id}")
        assert keras_model.layers[0].input_dim == tokenizer.size


def test_the_promoted_subword_model_is_code_json_and_keras_not_a_pickle(promoted):
    directory, promote_output = promoted
    assert f"registered as '{MODEL_NAME}' version 1" in promote_output, promote_output
    local = Path(mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(directory / "download")))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert set(mlmodel["flavors"]["python_function"]["artifacts"]) == {"subword_tokenizer", "keras_model"}
    saved = json.loads((local / "artifacts" / "subword_tokenizer.json").read_text(encoding="utf-8"))
    assert saved["format"] == SUBWORD_FORMAT and saved["classes"] == [0, 1]
    assert not [p.name for p in local.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    requirements = (local / "requirements.txt").read_text().split()
    assert any(line.startswith("tokenizers==") for line in requirements), requirements


def test_a_served_subword_model_answers_raw_text_over_http_as_its_trial_scores_it(http_server, venv_bin, promoted):
    directory, _ = promoted
    version = mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, "champion")
    trial_run = mlflow.get_run(version.tags["textsweep.trial_run_id"])
    trial = api.load_trial_model(trial_run.info.experiment_id, trial_run.info.run_id)
    texts = ["A wonderful, moving film!", "dull, lifeless and far too long", "", "unwatchableness"]
    expected = trial.predict(texts)

    environment = os.environ | {"PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    command = [str(venv_bin / "mlflow"), "models", "serve", "-m", CHAMPION, "--env-manager", "local",
               "--host", "127.0.0.1", "-p", "{port}"]
    with http_server(command, cwd=directory, env=environment, ready_path="/ping", log=directory / "serve.log") as url:
        answer = requests.post(f"{url}/invocations", json={"inputs": {"text": texts}}, timeout=60)
        refused = requests.post(f"{url}/invocations", json={"inputs": {"text": ["fine", None]}}, timeout=60)
    assert answer.status_code == 200, answer.text
    served = pd.DataFrame(answer.json()["predictions"])
    assert list(served["label"]) == list(expected["label"])
    assert np.allclose(served["probability"], expected["probability"], atol=1e-6)
    assert refused.status_code == 400 and "row 1 is missing" in refused.json()["message"]


def test_a_training_run_with_the_subword_tokenizer_logs_it_beside_its_test_accuracy(review_rows, module_store):
    config = {"name": "rt-subword-train", "data": {"source": "mem", "cleaning": "unicode"},
              "defaults": {"tokenizer": "subword", "max_features": 500, "embed_dim": 8, "lstm_out": 8, "batch_size": 32,
                           "epochs": 1, "recurrent_dropout": 0.0}}
    result = api.train(config, data=review_rows(300, seed=4))
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["tokenizer"] == "subword"
    tokenizer = load_tokenizer(mlflow.artifacts.load_text(f"runs:/{result.run_id}/tokenizer/subword.json"))
    assert isinstance(tokenizer, SubwordTokenizer) and tokenizer.size == 500
    assert 0 <= result.metrics["test_accuracy"] <= 1
