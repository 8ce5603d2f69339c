"""The served model: raw text in, label and probability out, in process and over HTTP."""

from __future__ import annotations

import json
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
from mlflow.pyfunc import scoring_server

from conftest import BIN, http_server, use_own_store, review_rows, write_sweep_file
from textsweep.config import load_config
from textsweep.registry import promote
from textsweep.serving import SIGNATURE, checking_texts, texts_of
from textsweep.jobs import sweep as run_sweep

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
        (pd.Series(["a", None], dtype="string"), "row 1 is missing \\(null\\)"),  # pd.NA
        (["a", float("nan"), True, ["b"]], "row 1 is missing \\(null\\), and 2 more rows .* \\(rows 2, 3\\)"),
        ({"text": 3}, "got dict"),
    ],
)
def test_malformed_requests_are_client_errors_that_say_what_to_send(request_data, problem):
    with pytest.raises(MlflowException, match=problem) as raised:
        texts_of(request_data)
    assert raised.value.get_http_status_code() == 400
    assert '"dataframe_split"' in raised.value.message


GOOD_TEXTS = ["Juda yaxshi ilova", ""]

# Every JSON body MLflow's scoring server takes, built from a list of texts.
FORMATS = {
    "inputs-columns": lambda texts: {"inputs": {"text": texts}},
    "inputs-records": lambda texts: {"inputs": [{"text": text} for text in texts]},
    "inputs-list": lambda texts: {"inputs": texts},
    "instances-records": lambda texts: {"instances": [{"text": text} for text in texts]},
    "instances-columns": lambda texts: {"instances": {"text": texts}},
    "dataframe_split": lambda texts: {"dataframe_split": {"columns": ["text"], "data": [[text] for text in texts]}},
    "dataframe_records": lambda texts: {"dataframe_records": [{"text": text} for text in texts]},
}
NOT_TEXT = {"null": None, "NaN": float("nan"), "int": 7, "float": 2.5, "bool": True,
            "list": ["a", "b"], "dict": {"a": 1}}


def with_bad_row(bad) -> list:
    return [GOOD_TEXTS[0], bad, GOOD_TEXTS[1]]


def refusal(bad) -> str:
    """The message texts_of gives for `with_bad_row(bad)`: every format must answer exactly this."""
    with pytest.raises(MlflowException) as raised:
        texts_of(with_bad_row(bad))
    return raised.value.message


def test_refusal_names_the_row_what_was_found_and_what_to_send():
    assert refusal(None) == refusal(float("nan")) == refusal(pd.NA)
    assert refusal(None).startswith("'text' must hold strings; row 1 is missing (null). Send each text as a JSON")
    assert "row 1 is 7 (int)." in refusal(7) and "row 1 is True (bool)." in refusal(True)
    assert "row 1 is {'a': 1} (dict)." in refusal({"a": 1})


@pytest.mark.parametrize("bad", NOT_TEXT.values(), ids=NOT_TEXT.keys())
@pytest.mark.parametrize("body_of", FORMATS.values(), ids=FORMATS.keys())
def test_scoring_server_parsing_refuses_non_text_before_mlflow_casts_it(body_of, bad):
    """In process: MLflow's own parser, wrapped as the served model wraps it (no model, no server)."""
    parse = checking_texts(scoring_server.infer_and_parse_data)
    with pytest.raises(MlflowException) as raised:
        parse(json.loads(json.dumps(body_of(with_bad_row(bad)))), SIGNATURE.inputs)
    assert raised.value.get_http_status_code() == 400
    assert raised.value.message == refusal(bad)
    parse(body_of(GOOD_TEXTS), SIGNATURE.inputs)  # good texts parse as before


def test_a_record_without_text_is_a_missing_text_and_other_models_are_left_to_mlflow():
    parse = checking_texts(scoring_server.infer_and_parse_data)
    with pytest.raises(MlflowException, match="row 1 is missing"):
        parse({"instances": [{"text": "a"}, {"review": "b"}]}, SIGNATURE.inputs)
    assert parse({"inputs": {"text": ["a", None]}}, None)["text"].tolist() == ["a", None]


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


@pytest.mark.parametrize("bad", NOT_TEXT.values(), ids=NOT_TEXT.keys())
@pytest.mark.parametrize("body_of", FORMATS.values(), ids=FORMATS.keys())
def test_server_refuses_non_text_in_every_format_and_keeps_serving(server, body_of, bad):
    # json.dumps, not requests' json=: it refuses NaN, which Python clients do send
    refused = requests.post(f"{server}/invocations", data=json.dumps(body_of(with_bad_row(bad))),
                            headers={"Content-Type": "application/json"}, timeout=60)
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"] == refusal(bad)

    answered = invoke(server, body_of(GOOD_TEXTS))
    assert answered.status_code == 200, answered.text
    assert len(answered.json()["predictions"]) == len(GOOD_TEXTS)
