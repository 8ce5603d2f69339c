"""The registered model: raw text in, label and probability out, as an MLflow pyfunc.

Logged as a *model from code*: registry.py passes this very file as `python_model`, MLflow
copies it into the model and runs it on load, and the `set_model` call at the bottom names the
model it serves. Nothing of ours is pickled. The model holds two artifacts, the trial's
vocabulary (`vocabulary.json`, vocab.Vocabulary's format, with its `max_features` cap and
`maxlen`) and its Keras model (`.keras`, loaded with `safe_mode=True`), and it carries the
`textsweep` package as code (`code_paths`) for the cleaning and encoding used in training.

Input: a DataFrame with a string `text` column (or a Series named `text`); over HTTP
`{"dataframe_split": {"columns": ["text"], "data": [["..."]]}}`, `{"dataframe_records": ...}` or
`{"inputs": ["...", ...]}`. A bare list of strings works when `TextClassifier.predict` is called
directly; through `mlflow.pyfunc` the signature's schema check wants the named column. Output:
one row per text, `label` (0/1) and `probability` (P(label = 1)); `label` is 1 when the
probability is above 0.5, as Keras' accuracy counts it. Cleaning may leave a text without a
known word (an empty string does too): the model then sees only padding and still answers.

Malformed requests are MLflow `INVALID_PARAMETER_VALUE` errors, which the scoring server
answers with 400: a missing `text` column (MLflow's schema check) and values that are not
strings (`texts_of`, for DataFrame payloads). MLflow itself casts `{"inputs": ...}` payloads to
the signature's types before the model sees them, so `{"inputs": {"text": [1]}}` is classified
as the text "1".

TensorFlow is imported when a model is loaded, not when this module is.
"""

from __future__ import annotations

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
from textsweep.vocab import Vocabulary

TEXT_COLUMN = "text"
VOCABULARY_ARTIFACT = "vocabulary"
KERAS_MODEL_ARTIFACT = "keras_model"
DECISION_THRESHOLD = 0.5
INPUT_EXAMPLE = pd.DataFrame({TEXT_COLUMN: ["Juda yaxshi ilova, menga yoqdi", ""]})

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", TEXT_COLUMN)]),
    outputs=Schema([ColSpec("long", "label"), ColSpec("double", "probability")]),
)


def pip_requirements() -> list[str]:
    """Exact versions of what the model imports: the textsweep code it carries needs the rest."""
    from importlib.metadata import version

    packages = ("tensorflow", "keras", "mlflow", "pandas", "numpy", "scikit-learn", "pydantic", "pyyaml")
    return [f"{package}=={version(package)}" for package in packages]


def texts_of(model_input: Any) -> list[str]:
    """The texts of a request, or an MLflow 400 error that says what to send instead."""
    if isinstance(model_input, str):
        model_input = [model_input]
    if isinstance(model_input, (list, tuple, np.ndarray, pd.Series)):
        model_input = pd.DataFrame({TEXT_COLUMN: list(model_input)})
    if not isinstance(model_input, pd.DataFrame):
        raise _bad_request(f"expected a table with a {TEXT_COLUMN!r} column, got {type(model_input).__name__}")
    if TEXT_COLUMN not in model_input.columns:
        raise _bad_request(f"no {TEXT_COLUMN!r} column (got columns {list(model_input.columns)})")
    values = model_input[TEXT_COLUMN].tolist()
    wrong = [row for row, value in enumerate(values) if not isinstance(value, str)]
    if wrong:
        value = values[wrong[0]]
        shown = "missing" if value is None or value != value else f"{value!r} ({type(value).__name__})"  # NaN != NaN
        more = f", and {len(wrong) - 1} more rows are not strings either" if len(wrong) > 1 else ""
        raise _bad_request(f"{TEXT_COLUMN!r} must hold strings; row {wrong[0]} is {shown}{more}")
    return values


def _bad_request(problem: str) -> MlflowException:
    return MlflowException(
        f"{problem}. Send raw texts as a string column {TEXT_COLUMN!r}, e.g. "
        f'{{"dataframe_split": {{"columns": ["{TEXT_COLUMN}"], "data": [["some text"]]}}}} '
        f'or {{"inputs": {{"{TEXT_COLUMN}": ["some text"]}}}}',
        error_code=INVALID_PARAMETER_VALUE,
    )


def classify(keras_model: Any, vocabulary: Vocabulary, texts: list[str]) -> pd.DataFrame:
    """Label and positive-class probability of each raw text, cleaned and encoded as in training."""
    if not texts:
        return pd.DataFrame({"label": np.empty(0, np.int64), "probability": np.empty(0)})
    ids = vocabulary.encode_padded(clean_texts(pd.Series(texts, dtype="object")).tolist())
    # model.positive_probability's rule, not imported: model.py needs KerasTuner, a served model should not.
    scores = keras_model.predict(ids, verbose=0, batch_size=512)
    probability = np.asarray(scores[:, 1] if scores.shape[-1] == 2 else scores[:, 0], dtype=np.float64)
    return pd.DataFrame({"label": (probability > DECISION_THRESHOLD).astype(np.int64), "probability": probability})


class TextClassifier(PythonModel):
    """A trial's Keras model behind its vocabulary: raw texts in, labels and probabilities out."""

    def load_context(self, context: Any) -> None:
        import keras  # deferred: TensorFlow is loaded with the model, not with this module

        self.vocabulary = Vocabulary.load(Path(context.artifacts[VOCABULARY_ARTIFACT]))
        self.keras_model = keras.saving.load_model(context.artifacts[KERAS_MODEL_ARTIFACT], safe_mode=True)

    # `pd.DataFrame` is the hint MLflow infers no schema from: SIGNATURE is the schema, and with it
    # MLflow hands over a DataFrame. Called directly, a list of strings works too.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return classify(self.keras_model, self.vocabulary, texts_of(model_input))


# Models from code: MLflow runs this file on load and serves the model set here.
mlflow.models.set_model(TextClassifier())
