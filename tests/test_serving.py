"""The served model: raw text in, label and probability out, in process and over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
import yaml
from mlflow.exceptions import MlflowException

from conftest import BIN, http_server, use_own_store, review_rows, write_sweep_file
from textsweep.config import load_config
from textsweep.registry import promote
from textsweep.serving import texts_of
from textsweep.tracking import run_sweep

MODEL_NAME = "rt-served"
CHAMPION = f"models:/{MODEL_NAME}@champion"


# ---------------------------------------------------------------- request checks (no model needed)


def test_texts_of_accepts_a_text_column_a_list_or_a_string():
    assert texts_of(pd.DataFrame({"text": ["a", ""], "other": [1, 2]})) == ["a", ""]
    assert texts_of(["a", "b"]) == ["a", "b"]
    assert texts_of("one") == ["one"]


@pytest.mark.parametrize(
    ("request_data", "problem"),
    [
        (pd.DataFrame({"txt": ["a"]}), "no 'text' column"),
        (pd.DataFrame({"text": [1, 2]}), "row 0 is 1 \\(int\\), and 1 more rows"),
        (pd.DataFrame({"text": ["a", None]}, dtype=object), "row 1 is missing"),
        (pd.DataFrame({"text": ["a", None]}), "row 1 is missing"),
        ({"text": 3}, "got dict"),
    ],
)
def test_malformed_requests_are_client_errors_that_say_what_to_send(request_data, problem):
    with pytest.raises(MlflowException, match=problem) as raised:
        texts_of(request_data)
    assert raised.value.get_http_status_code() == 400
    assert '"dataframe_split"' in raised.value.message


def test_importing_serving_does_not_load_tensorflow():
    probe = "import sys, textsweep.serving; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr[-2000:]


# ---------------------------------------------------------------- a registered model


@dataclass
class Served:
    directory: Path
    tracking_uri: str


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    """One tiny sweep (1 trial) promoted to `rt-served@champion` in a store of its own."""
    directory = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as patch:
        use_own_store(patch, directory)
        review_rows(300, seed=1).to_csv(directory / "reviews.csv", index=False)
        sweep_file = write_sweep_file(
            directory / "served.yaml",
            name="rt-served",
            source="reviews.csv",
            data={"source": "reviews.csv", "seed": 42},
            defaults={"max_features": 300, "embed_dim": 8, "lstm_out": 8, "batch_size": 32, "epochs": 1,
                      "recurrent_dropout": 0.0, "output": "softmax", "learning_rate": 0.01},
            search={"algorithm": "random", "max_trials": 1, "space": {"embed_dim": {"values": [8]}}},
            registry={"model_name": MODEL_NAME},
        )
        config = load_config(sweep_file)
        run_sweep(config, quiet=True)
        promote(config)
        yield Served(directory, os.environ["MLFLOW_TRACKING_URI"])


def test_registered_model_is_code_and_two_artifacts_not_a_pickle(served):
    local = Path(mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(served.directory / "download")))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert set(pyfunc["artifacts"]) == {"vocabulary", "keras_model"}
    assert (local / "artifacts" / "vocabulary.json").is_file() and (local / "artifacts" / "model.keras").is_file()
    assert not [p.name for p in local.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    requirements = (local / "requirements.txt").read_text().split()
    for package in ("tensorflow", "keras", "mlflow", "pandas", "numpy"):
        assert any(line.startswith(f"{package}==") for line in requirements), requirements
    assert '"name": "text"' in mlmodel["signature"]["inputs"]


def test_loaded_model_labels_raw_text_including_the_empty_string(served):
    model = mlflow.pyfunc.load_model(CHAMPION)
    texts = ["Juda yaxshi ilova, menga yoqdi!", "", "Yomon!!! Ishlamayapti :("]
    for request_data in (pd.DataFrame({"text": texts}), pd.Series(texts, name="text")):
        predictions = model.predict(request_data)
        assert list(predictions.columns) == ["label", "probability"] and len(predictions) == 3
        assert predictions["label"].isin([0, 1]).all() and predictions["probability"].between(0, 1).all()
    with pytest.raises(MlflowException, match="missing inputs \\['text'\\]"):
        model.predict(pd.DataFrame({"review": texts}))


# ---------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def server(served):
    """`mlflow models serve` of the champion, as a user starts it (uvicorn from the venv's bin)."""
    environment = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MLFLOW_TRACKING_URI": served.tracking_uri}
    command = [str(BIN / "mlflow"), "models", "serve", "-m", CHAMPION, "--env-manager", "local",
               "--host", "127.0.0.1", "-p", "{port}"]
    with http_server(command, cwd=served.directory, env=environment, ready_path="/ping", log=served.directory / "serve.log") as url:
        yield url


def invoke(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/invocations", json=body, timeout=60)


def test_server_answers_raw_text_and_survives_malformed_requests(server):
    good = {"dataframe_split": {"columns": ["text"], "data": [["Juda yaxshi ilova"], [""]]}}
    first = invoke(server, good)
    assert first.status_code == 200, first.text
    predictions = first.json()["predictions"]
    assert len(predictions) == 2 and set(predictions[0]) == {"label", "probability"}
    assert predictions[0]["label"] in (0, 1) and 0 <= predictions[0]["probability"] <= 1

    inputs = invoke(server, {"inputs": {"text": ["Juda yaxshi ilova", ""]}})
    assert inputs.status_code == 200 and inputs.json()["predictions"] == predictions

    no_text_column = invoke(server, {"dataframe_split": {"columns": ["review"], "data": [["Juda yaxshi"]]}})
    assert no_text_column.status_code == 400
    assert "missing inputs ['text']" in no_text_column.json()["message"]

    numbers = invoke(server, {"dataframe_split": {"columns": ["text"], "data": [[1], [2.5]]}})
    assert numbers.status_code == 400
    assert "'text' must hold strings" in numbers.json()["message"]

    missing = invoke(server, {"dataframe_records": [{"text": "a"}, {"text": None}]})
    assert missing.status_code == 400 and "row 1 is missing" in missing.json()["message"]

    again = invoke(server, good)
    assert again.status_code == 200 and again.json()["predictions"] == predictions
