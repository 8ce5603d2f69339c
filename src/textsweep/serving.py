"""The registered model: raw text in, label and probabilities out, as an MLflow pyfunc.

Logged as a *model from code*: registry.py passes this very file as `python_model`, MLflow
copies it into the model and runs it on load, and the `set_model` call at the bottom names the
model it serves. Nothing of ours is pickled. It carries the `textsweep` package as code
(`code_paths`) for the cleaning and encoding used in training, and one of three kinds of parts
(candidates.py chooses which):
- `lstm`, a trial: its tokenizer (`vocabulary.json` in text.Vocabulary's format for word trials,
  `subword_tokenizer.json` in text.SubwordTokenizer's for subword trials; either with its
  `max_features` cap and `maxlen`) and its Keras model (`.keras`, loaded with `safe_mode=True`);
- `reference`, the sweep's linear reference (reference.py): its scikit-learn pipeline in skops'
  format (`reference.skops`, loaded with no type trusted beyond skops' defaults: no pickle);
- `blend`: both, their class probabilities averaged with the trial's weight (`served.json`).
Models with a reference part hold `served.json`: their kind, classes, cleaning mode and the
trial's weight. Every kind answers with the same columns.

Input: a DataFrame with a string `text` column (or a Series named `text`); over HTTP any JSON
format of MLflow's scoring server, e.g. `{"dataframe_split": {"columns": ["text"], "data":
[["..."]]}}`, `{"dataframe_records": [{"text": "..."}]}`, `{"inputs": {"text": ["..."]}}`,
`{"inputs": [{"text": "..."}]}` or `{"instances": [{"text": "..."}]}`. A bare list of strings
works when `TextClassifier.predict` is called directly; through `mlflow.pyfunc` the signature's
schema check wants the named column. Texts are cleaned with the vocabulary's `cleaning` mode, as
in training.

Output, one row per text (`class_columns` names the per-class columns):
- `label`: the predicted class as the training data spelled it (`neutral`; `1` for a 0/1
  column: ints stay ints, strings stay strings; a column mixing numbers and strings gives strings);
- `probability`: for two classes P(second class) (P(label = 1) for 0/1, as before; `label` is
  the second class when it is above 0.5, as Keras' accuracy counts it); for more classes the
  predicted class's probability (the highest);
- `probability_<class>`: one column per class, in class order, each row summing to 1.
A model whose vocabulary predates saved classes (LEGACY: no `classes` in its JSON) answers
exactly as it always did: `label` (0/1) and `probability` only, with seed A's cleaning.
Cleaning may leave a text without a known word (an empty string does too): the model then sees
only padding and still answers.

Malformed requests are MLflow `INVALID_PARAMETER_VALUE` errors, which the scoring server
answers with 400: a missing `text` column (MLflow's schema check) and `text` values that are not
strings (null, NaN, numbers, booleans, lists, objects), which `texts_of` refuses with the same
message in every JSON format. The empty string is a text. In-process predict (`textsweep.load_model`,
`SweepResult.best_model`) applies the same rule (`checked_texts`) and raises textsweep's DataError.

TensorFlow is imported when a model is loaded, not when this module is.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

from textsweep.data import clean_texts
from textsweep.errors import DataError
from textsweep.reference import load_reference, reference_probabilities
from textsweep.text import Tokenizer, load_tokenizer

TEXT_COLUMN = "text"
VOCABULARY_ARTIFACT = "vocabulary"
SUBWORD_ARTIFACT = "subword_tokenizer"
KERAS_MODEL_ARTIFACT = "keras_model"
REFERENCE_ARTIFACT = "reference"  # reference.skops
SERVED_ARTIFACT = "served"  # served.json: kind, classes, cleaning and the trial's weight of a model with a reference
DECISION_THRESHOLD = 0.5
PROBABILITY_PREFIX = "probability_"
INPUT_EXAMPLE = pd.DataFrame({TEXT_COLUMN: ["Juda yaxshi ilova, menga yoqdi", "Отличный фильм!", ""]})
INPUT_SCHEMA = Schema([ColSpec("string", TEXT_COLUMN)])
# What a LEGACY model answers (the signature every version had before classes were kept);
# `signature(classes)` is a model's own.
SIGNATURE = ModelSignature(
    inputs=INPUT_SCHEMA, outputs=Schema([ColSpec("long", "label"), ColSpec("double", "probability")])
)
# Characters a class name keeps in its column name: letters and digits of any script, `-`, `.`.
NOT_NAME_CHARACTERS = re.compile(r"[^\w.-]+")


def class_columns(classes: Sequence[Any]) -> list[str]:
    """The per-class probability columns: `probability_<class>`, in class order.

    Each run of characters other than letters, digits (any script), `-` and `.` becomes `_`
    (`very good!` -> `probability_very_good_`; `imdb-negative`, `0`, `True` and `позитив` are kept
    as written). Classes whose names would then clash (`a b` and `a_b`, or `1` and "1") get their
    class index appended (`probability_a_b_0`, `probability_a_b_1`).
    """
    names = [PROBABILITY_PREFIX + NOT_NAME_CHARACTERS.sub("_", str(c)) for c in classes]
    return [f"{name}_{i}" if names.count(name) > 1 else name for i, name in enumerate(names)]


def label_type(classes: Sequence[Any]) -> str:
    """The MLflow type of the `label` column: the classes' own type, or string for a mix."""
    if all(isinstance(c, bool) for c in classes):
        return "boolean"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "long"
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return "double"
    return "string"


def signature(classes: Sequence[Any]) -> ModelSignature:
    """The served model's signature for a vocabulary's classes: text in; label and probabilities out."""
    return ModelSignature(
        inputs=INPUT_SCHEMA,
        outputs=Schema(
            [ColSpec(label_type(classes), "label"), ColSpec("double", "probability")]
            + [ColSpec("double", name) for name in class_columns(classes)]
        ),
    )


def pip_requirements() -> list[str]:
    """Exact versions of what the model imports: the textsweep code it carries needs the rest."""
    from importlib.metadata import version

    packages = ("tensorflow", "keras", "mlflow", "pandas", "numpy", "scikit-learn", "pydantic", "pyyaml", "tokenizers", "skops")
    return [f"{package}=={version(package)}" for package in packages]


def texts_of(model_input: Any) -> list[str]:
    """The texts of a request, or an MLflow 400 error that names the rows that are not strings."""
    try:
        return checked_texts(model_input)
    except DataError as exc:
        raise _bad_request(str(exc)) from None


def checked_texts(model_input: Any) -> list[str]:
    """The texts of a `text` column, a list or one string, or a DataError that names the rows that are
    not strings: the one rule of the server (`texts_of`) and of in-process predict (api.RawTextModel)."""
    if isinstance(model_input, str):
        values = [model_input]
    elif isinstance(model_input, (list, tuple, np.ndarray, pd.Series)):
        values = list(model_input)
    elif isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN not in model_input.columns:
            raise DataError(f"no {TEXT_COLUMN!r} column (got columns {list(model_input.columns)})")
        values = model_input[TEXT_COLUMN].tolist()
    else:
        raise DataError(f"expected a table with a {TEXT_COLUMN!r} column, got {type(model_input).__name__}")
    wrong = [row for row, value in enumerate(values) if not isinstance(value, str)]
    if wrong:
        value = values[wrong[0]]
        missing = pd.api.types.is_scalar(value) and pd.isna(value)  # None, NaN and pd.NA alike
        shown = "missing (null)" if missing else f"{value!r} ({type(value).__name__})"
        others = ", ".join(map(str, wrong[1:11])) + (", ..." if len(wrong) > 11 else "")
        more = f", and {len(wrong) - 1} more rows are not strings either (rows {others})" if len(wrong) > 1 else ""
        raise DataError(f"{TEXT_COLUMN!r} must hold strings; row {wrong[0]} is {shown}{more}")
    return values


def sent_texts(payload: Any) -> list[Any] | None:
    """The `text` values of an `inputs`/`instances` payload as sent; None where it has no `text`."""
    if isinstance(payload, dict):
        if TEXT_COLUMN not in payload:
            return None
        values = payload[TEXT_COLUMN]
        return values if isinstance(values, list) else [values]
    if isinstance(payload, list) and payload and all(isinstance(row, dict) for row in payload):
        if not any(TEXT_COLUMN in row for row in payload):
            return None
        return [row.get(TEXT_COLUMN) for row in payload]  # a record without `text` is a missing text
    if isinstance(payload, list):
        return payload  # a bare list: MLflow takes it as the one column of a one-column schema
    return None


def checking_texts(parse: Callable[..., Any]) -> Callable[..., Any]:
    """The scoring server's `infer_and_parse_data`, refusing non-string texts in every JSON format.

    MLflow casts `inputs`/`instances` payloads to the signature's types before the model sees
    them (null -> "None", 1 -> "1", and numpy joins a row of 1 with strings as "1"), so their
    texts are checked as sent. The `dataframe_*` formats keep the values as sent; checking them
    here too gives every format the same message (errors raised in `predict` get MLflow's
    "Failed to predict data ..." prefix).
    """

    def parse_request(data: dict[str, Any], schema: Schema | None = None) -> Any:
        ours = schema == INPUT_SCHEMA  # other models served from this process are left alone
        for key in ("inputs", "instances"):
            if ours and key in data and (values := sent_texts(data[key])) is not None:
                texts_of(values)
        parsed = parse(data, schema)
        if ours and isinstance(parsed, pd.DataFrame) and TEXT_COLUMN in parsed.columns:
            texts_of(parsed)
        return parsed

    parse_request.checks_texts = True
    return parse_request


def _check_texts_in_scoring_server() -> None:
    """Put `checking_texts` into MLflow's scoring server, where one runs in this process.

    MLflow has no hook before it parses a request, and it casts the texts while parsing, so the
    check goes in the one function all JSON formats pass through (looked up at call time).
    """
    scoring_server = sys.modules.get("mlflow.pyfunc.scoring_server")  # imported by `mlflow models serve`
    if scoring_server is not None and not getattr(scoring_server.infer_and_parse_data, "checks_texts", False):
        scoring_server.infer_and_parse_data = checking_texts(scoring_server.infer_and_parse_data)


def _bad_request(problem: str) -> MlflowException:
    return MlflowException(
        f"{problem}. Send each text as a JSON string (\"\" for an empty text) in a column {TEXT_COLUMN!r}, e.g. "
        f'{{"dataframe_split": {{"columns": ["{TEXT_COLUMN}"], "data": [["some text"]]}}}} '
        f'or {{"inputs": {{"{TEXT_COLUMN}": ["some text"]}}}}',
        error_code=INVALID_PARAMETER_VALUE,
    )


def class_probabilities(keras_model: Any, vocabulary: Tokenizer, texts: list[str]) -> np.ndarray:
    """P(class i) of each raw text (rows x classes), cleaned (the vocabulary's mode) and encoded as in training.

    A sigmoid model's one column P(second class) becomes [1 - P, P], so binary and multi-class
    models are read alike.
    """
    if texts:
        cleaned = clean_texts(pd.Series(texts, dtype="object"), vocabulary.cleaning).tolist()
        scores = np.asarray(keras_model.predict(vocabulary.encode_padded(cleaned), verbose=0, batch_size=512), np.float64)
    else:
        scores = np.empty((0, keras_model.output_shape[-1]))
    return np.column_stack([1.0 - scores[:, 0], scores[:, 0]]) if scores.shape[-1] == 1 else scores


def classify(keras_model: Any, vocabulary: Tokenizer, texts: list[str], *, per_class: bool = True) -> pd.DataFrame:
    """Label and probabilities of each raw text (the module docstring's output) by a trial's model.

    `per_class=False` gives a LEGACY model's answer: `label` and `probability` only.
    """
    classes = list(vocabulary.classes)
    scores = class_probabilities(keras_model, vocabulary, texts)
    if scores.shape[-1] != len(classes):
        raise MlflowException(
            f"the model has {scores.shape[-1]} outputs but its vocabulary lists {len(classes)} classes {classes}; "
            "register the trial's own model and vocabulary together"
        )
    return answer(classes, scores, per_class=per_class)


def answer(classes: list[Any], scores: np.ndarray, *, per_class: bool = True) -> pd.DataFrame:
    """The served columns from a class-probability matrix (rows x classes): every kind answers alike."""
    if len(classes) == 2:
        probability = scores[:, 1]
        predicted = (probability > DECISION_THRESHOLD).astype(np.int64)
    else:
        predicted = scores.argmax(axis=1)
        probability = scores[np.arange(len(scores)), predicted]
    answer = pd.DataFrame({"label": label_values(classes, predicted), "probability": probability})
    if per_class:
        answer[class_columns(classes)] = scores
    return answer


def label_values(classes: list[Any], predicted: np.ndarray) -> pd.Series:
    """The classes at the predicted indices, typed as the signature says (`label_type`)."""
    kind = label_type(classes)
    if kind == "string":
        return pd.Series([str(classes[i]) for i in predicted], dtype=object)
    dtype = {"boolean": bool, "long": np.int64, "double": np.float64}[kind]
    return pd.Series(np.asarray(classes, dtype=dtype)[predicted], dtype=dtype)


def saves_classes(vocabulary_json: str) -> bool:
    """Whether a vocabulary JSON holds its classes (LEGACY ones were saved before they were kept)."""
    return "classes" in json.loads(vocabulary_json)


class TextClassifier(PythonModel):
    """A trial's Keras model behind its vocabulary, the linear reference, or both blended:
    raw texts in, labels and probabilities out."""

    def load_context(self, context: Any) -> None:
        artifacts = context.artifacts
        served = json.loads(Path(artifacts[SERVED_ARTIFACT]).read_text(encoding="utf-8")) if SERVED_ARTIFACT in artifacts else {}
        self.lstm_weight = float(served.get("lstm_weight", 1.0))
        self.keras_model = self.vocabulary = self.reference = None
        if KERAS_MODEL_ARTIFACT in artifacts:
            self.load_trial(artifacts)
        if REFERENCE_ARTIFACT in artifacts:
            self.reference = load_reference(artifacts[REFERENCE_ARTIFACT])
        self.classes = list(served["classes"]) if served else list(self.vocabulary.classes)
        self.cleaning = served["cleaning"] if served else self.vocabulary.cleaning
        self.per_class = bool(served) or self.saves_classes
        _check_texts_in_scoring_server()

    def load_trial(self, artifacts: dict[str, str]) -> None:
        import keras  # deferred: TensorFlow is loaded with the model, not with this module

        artifact = SUBWORD_ARTIFACT if SUBWORD_ARTIFACT in artifacts else VOCABULARY_ARTIFACT
        vocabulary_json = Path(artifacts[artifact]).read_text(encoding="utf-8")
        self.vocabulary = load_tokenizer(vocabulary_json)
        self.saves_classes = saves_classes(vocabulary_json)
        from textsweep.layers import keep_legacy_lstms_off_cudnn  # also registers RightPaddedRNN for loading

        keras_model = keras.saving.load_model(artifacts[KERAS_MODEL_ARTIFACT], safe_mode=True)
        self.keras_model = keep_legacy_lstms_off_cudnn(keras_model)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """P(class i) of each raw text: the trial's, the reference's, or their weighted average."""
        return blended_probabilities(
            texts, keras_model=self.keras_model, vocabulary=self.vocabulary, reference=self.reference,
            cleaning=self.cleaning, lstm_weight=self.lstm_weight, classes=len(self.classes),
        )

    # `pd.DataFrame` is the hint MLflow infers no schema from: the logged signature (`signature`,
    # SIGNATURE for LEGACY models) is the schema, and with it MLflow hands over a DataFrame.
    # Called directly, a list of strings works too.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        texts = texts_of(model_input)
        if self.reference is None:  # a trial's model answers as it always has (LEGACY ones too)
            return classify(self.keras_model, self.vocabulary, texts, per_class=self.per_class)
        return answer(self.classes, self.probabilities(texts))


def blended_probabilities(texts: list[str], *, keras_model: Any = None, vocabulary: Tokenizer | None = None,
                          reference: Any = None, cleaning: str = "", lstm_weight: float = 1.0, classes: int) -> np.ndarray:
    """`lstm_weight` x the trial's probabilities + (1 - `lstm_weight`) x the reference's, of raw texts.

    The one computation behind every served kind and the promotion's evaluation: what candidates.py
    measures on validation and test is what the registered model answers.
    """
    scores = np.zeros((len(texts), classes))
    if keras_model is not None and lstm_weight > 0:
        scores += lstm_weight * class_probabilities(keras_model, vocabulary, texts)
    if reference is not None and lstm_weight < 1:
        cleaned = clean_texts(pd.Series(texts, dtype="object"), cleaning).tolist() if texts else []
        scores += (1 - lstm_weight) * reference_probabilities(reference, cleaned, classes)
    return scores


# Models from code: MLflow runs this file on load and serves the model set here.
mlflow.models.set_model(TextClassifier())
