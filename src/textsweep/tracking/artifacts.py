"""What a run holds as artifacts: the sweep file, the dataset, the tokenizer, the Keras model, figures."""

from __future__ import annotations

import json
from typing import Any

import mlflow

from textsweep import plots
from textsweep.config import SweepConfig, TrainingParams
from textsweep.data import PreparedData
from textsweep.text import EncodedSplits

TOKENIZER_FILE = "tokenizer/vocabulary.json"
# Each tokenizer kind's artifact (its own JSON format: text.Vocabulary, text.SubwordTokenizer).
TOKENIZER_FILES = {"word": TOKENIZER_FILE, "subword": "tokenizer/subword.json"}
KERAS_MODEL_NAME = "model"  # each trial's (and training run's) logged Keras model


def model_pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's inference of them costs ~9 s per logged model."""
    import keras
    import tensorflow as tf

    return [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]


def log_vocabulary(encoded: EncodedSplits, params: TrainingParams, maxlen: int) -> None:
    """The tokenizer the model was trained with: ids < max_features and the padded length."""
    tokenizer = encoded.seen_by(params).vocabulary
    mlflow.log_text(tokenizer.capped(params.max_features, maxlen).to_json(), TOKENIZER_FILES[params.tokenizer])


def log_keras_model(model: Any) -> Any:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    # Padded word ids in, class probabilities out.
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("int32"), (-1, -1), "token_ids")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, model.output_shape[-1]), "probabilities")]),
    )
    return mlflow.tensorflow.log_model(
        model, name=KERAS_MODEL_NAME, signature=signature, pip_requirements=model_pip_requirements()
    )


def log_learning_curves(history: dict[str, list[float]], title: str) -> None:
    mlflow.log_figure(plots.learning_curves(history, title), "learning_curves.png", save_kwargs={"dpi": 80})


def log_dataset_and_sweep_file(config: SweepConfig, data: PreparedData) -> None:
    """A job's inputs: the sweep file as `sweep.yaml`, the three splits as MLflow dataset inputs."""
    mlflow.log_text(config.to_yaml(), "sweep.yaml")
    log_dataset(data, config.name)


def log_dataset(data: PreparedData, name: str) -> None:
    """The three splits as MLflow dataset inputs, with the fingerprint textsweep gates on."""
    for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
        dataset = mlflow.data.from_pandas(data.frame(split), source=data.source, name=f"{name}-{split}", targets="label")
        mlflow.log_input(dataset, context=context)
    mlflow.log_params({"data_fingerprint": data.fingerprint, "data_source": data.source, "data_classes": json.dumps(list(data.classes)),
                       "data_cleaning": data.cleaning} | {f"data_{k}": v for k, v in data.stats.items()})
