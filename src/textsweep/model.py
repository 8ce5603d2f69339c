"""The seeds' LSTM as `build_model(params)`, and the KerasTuner `HyperModel` that searches it.

Seed A (default params): Embedding(2000, 128) -> SpatialDropout1D(0.4) ->
LSTM(196, dropout=0.2, recurrent_dropout=0.2) -> Dense(2, softmax).
Seed B: `output: sigmoid`, `spatial_dropout: 0`: Embedding(5000, 32) -> LSTM(100) -> Dense(1, sigmoid).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import keras_tuner as kt

from textsweep.config import SWEPT_PARAMS, SpaceEntry, TrainingParams, params_with
from textsweep.vocab import EncodedSplits


def lstm_kernel(params: TrainingParams, gpu: bool) -> str:
    """Which LSTM implementation Keras picks: `recurrent_dropout > 0` forces the step-by-step loop."""
    if params.recurrent_dropout > 0:
        return "generic"
    return "cudnn" if gpu else "fused"


def build_model(params: TrainingParams) -> keras.Model:
    """Build and compile the seeds' architecture, seeded by `params.seed`."""
    keras.utils.set_random_seed(params.seed)
    if params.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    layers: list[keras.Layer] = [
        keras.Input(shape=(None,), dtype="int32"),
        keras.layers.Embedding(params.max_features, params.embed_dim),
    ]
    if params.spatial_dropout > 0:
        layers.append(keras.layers.SpatialDropout1D(params.spatial_dropout))
    layers.append(
        keras.layers.LSTM(params.lstm_out, dropout=params.dropout, recurrent_dropout=params.recurrent_dropout)
    )
    if params.output == "softmax":
        # Integer labels with sparse cross-entropy: the same loss as seed A's one-hot
        # categorical_crossentropy, without materialising one-hot arrays.
        layers.append(keras.layers.Dense(2, activation="softmax", dtype="float32"))
        loss = "sparse_categorical_crossentropy"
    else:
        layers.append(keras.layers.Dense(1, activation="sigmoid", dtype="float32"))
        loss = "binary_crossentropy"
    model = keras.Sequential(layers, name="textsweep_lstm")
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=loss, metrics=["accuracy"])
    return model


def positive_probability(model: keras.Model, x: Any) -> Any:
    """P(label = 1) for each row, whichever output layer the model has."""
    scores = model.predict(x, verbose=0, batch_size=512)
    return scores[:, 1] if scores.shape[-1] == 2 else scores[:, 0]


# ---------------------------------------------------------------- KerasTuner seam


def declare_hyperparameter(hp: kt.HyperParameters, name: str, entry: SpaceEntry, integer: bool) -> Any:
    """Register one `search.space` entry with KerasTuner and return the trial's value."""
    if entry.values is not None:
        values = [int(v) for v in entry.values] if integer else list(entry.values)
        return hp.Choice(name, values)
    sampling = entry.sampling
    if integer:
        step = int(entry.step) if entry.step is not None else None
        return hp.Int(name, int(entry.min), int(entry.max), step=step, sampling=sampling)
    return hp.Float(name, entry.min, entry.max, step=entry.step, sampling=sampling)


def params_from_hp(hp: kt.HyperParameters, defaults: TrainingParams, space: dict[str, SpaceEntry]) -> TrainingParams:
    """The trial's full params: searched values from `hp`, everything else from `defaults`."""
    integer_params = {name for name in SWEPT_PARAMS if isinstance(getattr(defaults, name), int)}
    searched = {
        name: declare_hyperparameter(hp, name, entry, name in integer_params) for name, entry in space.items()
    }
    return params_with(defaults, searched)


class LstmHyperModel(kt.HyperModel):
    """`build` maps `hp` to params; `fit` caps and pads the shared encoded data for the trial."""

    def __init__(self, defaults: TrainingParams, space: dict[str, SpaceEntry]):
        super().__init__(name="textsweep_lstm", tunable=True)
        self.defaults = defaults
        self.space = space

    def params(self, hp: kt.HyperParameters) -> TrainingParams:
        return params_from_hp(hp, self.defaults, self.space)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        return build_model(self.params(hp))

    def fit(self, hp: kt.HyperParameters, model: keras.Model, encoded: EncodedSplits, **fit_kwargs: Any):
        """Train one trial. Any failure becomes KerasTuner's `FailedTrialError`, so the trial is
        recorded as FAILED, the sweep goes on, and the oracle counts consecutive failures."""
        try:
            history = fit_model(model, self.params(hp), encoded, **fit_kwargs)
        except Exception as exc:  # out of memory, a bad kernel, a bug: one trial's problem
            raise kt.errors.FailedTrialError(f"{type(exc).__name__}: {exc}") from exc
        losses = history.history.get("loss", [])
        if any(math.isnan(loss) for loss in losses):
            first = next(i for i, loss in enumerate(losses) if math.isnan(loss))
            raise kt.errors.FailedTrialError(
                f"loss became NaN at epoch {first}: the model diverged (lower defaults.learning_rate, "
                "or narrow the search space)"
            )
        return history


# Validation only runs the model forward, and no layer depends on the batch, so a larger batch
# gives the same predictions in fewer steps.
VALIDATION_BATCH_SIZE = 512


def fit_model(model: keras.Model, params: TrainingParams, encoded: EncodedSplits, **fit_kwargs: Any):
    """Train on the capped, padded training split; validate on the validation split.

    The validation split is always padded to the full `maxlen`, as serving and the test
    evaluation pad, also when training batches are length-bucketed (`params.length_buckets`).
    """
    maxlen = encoded.resolve_maxlen(params.max_features, params.maxlen)
    train = encoded.dataset(
        "train", params.max_features, maxlen, params.batch_size,
        shuffle=True, seed=params.seed, length_buckets=params.length_buckets,
    )
    val = encoded.dataset("val", params.max_features, maxlen, max(params.batch_size, VALIDATION_BATCH_SIZE))
    fit_kwargs.setdefault("epochs", params.epochs)
    fit_kwargs.setdefault("verbose", 0)
    return model.fit(train, validation_data=val, shuffle=False, **fit_kwargs)  # `train` shuffles itself
