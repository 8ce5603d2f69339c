"""The served model: raw text in, label and probabilities out, in process and over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from textsweep import serving
from textsweep.config import DataConfig, TrainingParams, load_config
from textsweep.data import prepare
from textsweep.registry import promote_if_better as promote
from textsweep.errors import DataError
from textsweep.serving import (SIGNATURE, TextClassifier, checked_texts, checking_texts, class_columns, classify,
                                 signature, texts_of)
from textsweep.api import sweep as run_sweep
from textsweep.text import Vocabulary, encode_splits

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


@pytest.mark.parametrize("request_data", [[None], ["a", 3], pd.DataFrame({"text": ["a", True]}), 7, pd.DataFrame({"x": ["a"]})])
def test_in_process_predict_has_the_servers_rule(request_data):
    """`checked_texts` is the rule behind texts_of (the server's 400) and api.RawTextModel.predict."""
    with pytest.raises(MlflowException) as served:
        texts_of(request_data)
    with pytest.raises(DataError) as in_process:
        checked_texts(request_data)
    assert served.value.message.startswith(f"{in_process.value}. Send each text as a JSON string")


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


# ---------------------------------------------------------------- classify, in process


class RecordingModel:
    """A stand-in Keras model: records the ids it is fed, answers fixed class probabilities."""

    def __init__(self, probabilities):
        self.probabilities = np.asarray(probabilities, dtype=np.float32)
        self.output_shape = (None, self.probabilities.shape[-1])
        self.fed = []

    def predict(self, ids, verbose=0, batch_size=None):
        self.fed.append(ids)
        return np.repeat(self.probabilities[None, :], len(ids), axis=0)


def test_class_columns_are_safe_names_in_class_order():
    assert class_columns([0, 1]) == ["probability_0", "probability_1"]
    assert class_columns(["imdb-negative", "very good!", "позитив", True]) == [
        "probability_imdb-negative", "probability_very_good_", "probability_позитив", "probability_True"]
    assert class_columns(["a b", "a_b", "c"]) == ["probability_a_b_0", "probability_a_b_1", "probability_c"]
    assert class_columns([1, "1"]) == ["probability_1_0", "probability_1_1"]


def test_signature_types_the_label_as_the_classes_are_typed():
    def label_type(classes):
        return signature(classes).outputs.input_dict()["label"].type.name

    assert label_type([0, 1]) == "long" and label_type(["neg", "neu", "pos"]) == "string"
    assert label_type([False, True]) == "boolean" and label_type([0.5, 1]) == "double" and label_type([0, "a"]) == "string"
    assert signature(["neg", "neu", "pos"]).outputs.input_names() == [
        "label", "probability", "probability_neg", "probability_neu", "probability_pos"]
    assert signature([0, 1]).inputs == SIGNATURE.inputs


def test_binary_answers_keep_probability_of_the_second_class_and_add_a_column_per_class():
    vocabulary = Vocabulary(("good", "bad"), maxlen=4)  # classes (0, 1)
    answer = classify(RecordingModel([0.3, 0.7]), vocabulary, ["good", "bad"])
    assert list(answer.columns) == ["label", "probability", "probability_0", "probability_1"]
    assert answer["label"].dtype == np.int64 and answer["label"].tolist() == [1, 1]
    assert answer["probability"].tolist() == pytest.approx([0.7, 0.7])
    sigmoid = classify(RecordingModel([0.2]), replace(vocabulary, classes=("neg", "pos")), ["good"])
    assert sigmoid.iloc[0].to_dict() == {"label": "neg", "probability": pytest.approx(0.2),
                                         "probability_neg": pytest.approx(0.8), "probability_pos": pytest.approx(0.2)}


def test_multi_class_answers_the_predicted_class_and_its_probability():
    vocabulary = Vocabulary(("good",), maxlen=3, classes=("negative", "neutral", "positive"), cleaning="unicode")
    answer = classify(RecordingModel([0.1, 0.6, 0.3]), vocabulary, ["good", ""])
    assert answer["label"].tolist() == ["neutral", "neutral"]
    assert answer["probability"].tolist() == pytest.approx([0.6, 0.6])
    assert answer[["probability_negative", "probability_neutral", "probability_positive"]].sum(axis=1).tolist() == pytest.approx([1, 1])
    empty = classify(RecordingModel([0.1, 0.6, 0.3]), vocabulary, [])
    assert len(empty) == 0 and list(empty.columns) == list(answer.columns)
    with pytest.raises(MlflowException, match="2 outputs but its vocabulary lists 3 classes"):
        classify(RecordingModel([0.4, 0.6]), vocabulary, ["good"])


def test_texts_are_cleaned_with_the_vocabularys_mode_cyrillic_included():
    words = ("отличный", "фильм", "скучный")
    unicode, seed_a = (Vocabulary(words, maxlen=3, cleaning=mode) for mode in ("unicode", "seed_a"))
    model = RecordingModel([0.5, 0.5])
    classify(model, unicode, ["Отличный, ФИЛЬМ!!!", "Скучный…"])
    assert model.fed[-1].tolist() == [[0, 1, 2], [0, 0, 3]]
    classify(model, seed_a, ["Отличный, ФИЛЬМ!!!"])  # the notebook's rule keeps a-z only
    assert model.fed[-1].tolist() == [[0, 0, 0]]


# Short Russian reviews of three kinds, words varied, built in code.
RUSSIAN = {
    "негатив": ["ужасный", "скучный", "плохой", "отвратительный", "слабый", "провальный"],
    "нейтрально": ["обычный", "средний", "нормальный", "простой", "типичный", "стандартный"],
    "позитив": ["отличный", "прекрасный", "чудесный", "великолепный", "замечательный", "лучший"],
}
NOUNS = ["фильм", "сериал", "сюжет", "актёр", "финал", "спектакль", "роман", "мультфильм"]


@pytest.fixture(scope="module")
def russian_model(russian_reviews):
    """A tiny 3-class model trained in process on Russian texts with string labels (default cleaning)."""
    from textsweep.model import build_model

    prepared = prepare(russian_reviews(RUSSIAN, NOUNS, ["!", ".", "!!!", " :)"], 60), DataConfig(source="russian", test_size=0.2, val_size=0.1))
    encoded = encode_splits(prepared)
    params = TrainingParams(max_features=encoded.vocabulary.size, embed_dim=8, lstm_out=8, spatial_dropout=0,
                            dropout=0, recurrent_dropout=0, learning_rate=0.02, batch_size=16, seed=3)
    maxlen = encoded.resolve_maxlen(params.max_features, None)
    model = build_model(params, len(prepared.classes))
    model.fit(*encoded.arrays("train", params.max_features, maxlen), epochs=30, verbose=0)
    return model, encoded.vocabulary.capped(params.max_features, maxlen)


def test_a_trained_three_class_model_labels_raw_russian_text_with_the_users_labels(russian_model):
    model, vocabulary = russian_model
    assert vocabulary.classes == ("негатив", "нейтрально", "позитив") and vocabulary.cleaning == "unicode"
    texts = ["ОТЛИЧНЫЙ фильм, просто ЧУДЕСНЫЙ!!!", "Ужасный, скучный сериал…", "Обычный сюжет, средний.", ""]
    answer = classify(model, vocabulary, texts)
    assert list(answer.columns) == ["label", "probability", "probability_негатив", "probability_нейтрально",
                                    "probability_позитив"]
    assert answer["label"].tolist()[:3] == ["позитив", "негатив", "нейтрально"]
    per_class = answer.iloc[:, 2:].to_numpy()
    assert per_class.sum(axis=1) == pytest.approx(np.ones(4), abs=1e-5)
    assert answer["probability"].to_numpy() == pytest.approx(per_class.max(axis=1))


def test_a_legacy_model_serves_exactly_as_before(tmp_path, russian_model):
    """A vocabulary JSON without classes or cleaning (registered before they were kept): label 0/1,
    P(1), seed A's cleaning, through the pyfunc's own loading, as MLflow loads it."""
    import keras

    words = ("good", "bad", "film")
    binary = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(4, 4),
                               keras.layers.LSTM(4), keras.layers.Dense(2, activation="softmax")])
    binary.save(tmp_path / "model.keras")
    legacy = {"format": "textsweep.vocabulary/1", "maxlen": 5, "words": list(words)}
    (tmp_path / "vocabulary.json").write_text(json.dumps(legacy))
    classifier = TextClassifier()
    classifier.load_context(SimpleNamespace(artifacts={
        serving.VOCABULARY_ARTIFACT: str(tmp_path / "vocabulary.json"),
        serving.KERAS_MODEL_ARTIFACT: str(tmp_path / "model.keras"),
    }))
    texts = ["A GOOD film!", "bad", "", "Отличный фильм"]
    answer = classifier.predict(None, pd.DataFrame({"text": texts}))
    # what serving answered before classes were kept: seed A's cleaning, P(label 1), 0/1
    ids = Vocabulary(words, 5).encode_padded(["a good film", "bad", "", " "])
    before = binary.predict(ids, verbose=0)[:, 1].astype(np.float64)
    assert list(answer.columns) == ["label", "probability"] and answer["label"].dtype == np.int64
    assert answer["probability"].tolist() == pytest.approx(before.tolist())
    assert answer["label"].tolist() == (before > 0.5).astype(int).tolist()


# ---------------------------------------------------------------- a registered model


@dataclass
class Served:
    directory: Path
    tracking_uri: str


@pytest.fixture(scope="module")
def served(tmp_path_factory, use_own_store, review_rows, write_sweep_file) -> Served:
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
            registry={"model_name": MODEL_NAME, "candidates": ["lstm"]},  # the trial's model: what these tests serve
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
        assert list(predictions.columns) == ["label", "probability", "probability_0", "probability_1"]
        assert len(predictions) == 3
        assert predictions["label"].isin([0, 1]).all() and predictions["probability"].between(0, 1).all()
    with pytest.raises(MlflowException, match="missing inputs \\['text'\\]"):
        model.predict(pd.DataFrame({"review": texts}))


# ---------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def server(served, model_server):
    """`mlflow models serve` of the champion, as a user starts it (uvicorn from the venv's bin)."""
    with model_server(CHAMPION, served.tracking_uri, served.directory) as url:
        yield url


def invoke(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/invocations", json=body, timeout=60)


def test_server_answers_raw_text_and_survives_malformed_requests(server):
    good = {"dataframe_split": {"columns": ["text"], "data": [["Juda yaxshi ilova"], [""]]}}
    first = invoke(server, good)
    assert first.status_code == 200, first.text
    predictions = first.json()["predictions"]
    assert len(predictions) == 2 and set(predictions[0]) == {"label", "probability", "probability_0", "probability_1"}
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
