"""The seeds' LSTM as `build_model(params, num_classes)`, and the KerasTuner `HyperModel` that searches it.

Seed A (default params): Embedding(2000, 128) -> SpatialDropout1D(0.4) ->
LSTM(196, dropout=0.2, recurrent_dropout=0.2) -> Dense(2, softmax).
With `length_buckets` (the default) the Embedding masks id 0 (`mask_zero=True`, no extra
weights): the LSTM skips the padding, so a text's output does not depend on its padded
length, and `layers.RightPaddedRNN` hands the LSTM that mask right-padded with no fully masked
row, so Keras runs it on cuDNN on a GPU. `length_buckets: false` is seed A's unmasked
computation, every batch padded to maxlen (cuDNN too). `recurrent_dropout > 0` rules cuDNN out.
Seed B: `output: sigmoid`, `spatial_dropout: 0`: Embedding(5000, 32) -> LSTM(100) -> Dense(1, sigmoid).
With more classes, `output: softmax` has one unit per class (`Dense(num_classes, softmax)`);
`sigmoid` is the binary output only.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import keras_tuner as kt

from textsweep import interrupts
from textsweep.config import SWEPT_PARAMS, SpaceEntry, TrainingParams, params_with
from textsweep.errors import ConfigError
from textsweep.layers import RightPaddedRNN
from textsweep.text import EncodedSplits


def masks_padding(params: TrainingParams) -> bool:
    """Whether the model masks its padding: with length-bucketed batches, so that a text scores the
    same in a short training batch as padded to maxlen for validation, test and serving."""
    return params.length_buckets


def lstm_kernel(params: TrainingParams) -> str:
    """Which LSTM implementation Keras runs, in this process, for a model `build_model` built.

    `recurrent_dropout > 0` takes the per-gate step loop ("generic"); otherwise Keras runs cuDNN
    where its own test (`cudnn_ok`: the activations, no unroll, a bias, a visible GPU) passes
    ("cudnn"), and the step loop with fused gate products elsewhere ("fused"). The masked model
    feeds cuDNN what it accepts (layers.RightPaddedRNN), so the mask does not change the answer.
    """
    if params.recurrent_dropout > 0:
        return "generic"
    # The exact test `LSTM.inner_loop` applies; Keras exports no public name for it.
    from keras.src.backend import cudnn_ok

    eligible = cudnn_ok(keras.activations.tanh, keras.activations.sigmoid, unroll=False, use_bias=True)
    return "cudnn" if eligible else "fused"


def build_model(params: TrainingParams, num_classes: int = 2, *, use_cudnn: bool | str = "auto") -> keras.Model:
    """Build and compile the seeds' architecture for `num_classes` classes, seeded by `params.seed`.

    Labels are int class indices 0..num_classes-1 (data.PreparedData.classes orders them).
    `use_cudnn` is the LSTM's: "auto" (cuDNN where Keras can, see `lstm_kernel`), or True / False
    to insist on cuDNN (Keras raises where it cannot) or on the step loop (bench/gpu_check.py).
    """
    check_output_fits(params.output, num_classes)
    keras.utils.set_random_seed(params.seed)
    # The policy is global: set it both ways, so that a mixed-precision trial leaves no trace in
    # the next one. The output layer stays float32 either way (softmax/sigmoid on float16 saturate).
    keras.mixed_precision.set_global_policy("mixed_float16" if params.mixed_precision else "float32")
    masked = masks_padding(params)
    layers: list[keras.Layer] = [
        keras.Input(shape=(None,), dtype="int32"),
        keras.layers.Embedding(params.max_features, params.embed_dim, mask_zero=masked),
    ]
    if params.spatial_dropout > 0:
        layers.append(keras.layers.SpatialDropout1D(params.spatial_dropout))  # passes the mask on
    lstm = keras.layers.LSTM(
        params.lstm_out, dropout=params.dropout, recurrent_dropout=params.recurrent_dropout, use_cudnn=use_cudnn
    )
    recurrent = keras.layers.Bidirectional(lstm) if params.bidirectional else lstm
    # The masked input arrives pre-padded and may hold a text with no known word: the wrapper
    # hands the LSTM what cuDNN accepts, with the same answer (layers.py).
    layers.append(RightPaddedRNN(recurrent) if masked else recurrent)
    if params.output == "softmax":
        # Integer labels with sparse cross-entropy: the same loss as seed A's one-hot
        # categorical_crossentropy, without materialising one-hot arrays.
        layers.append(keras.layers.Dense(num_classes, activation="softmax", dtype="float32"))
        loss = "sparse_categorical_crossentropy"
    else:
        layers.append(keras.layers.Dense(1, activation="sigmoid", dtype="float32"))
        loss = "binary_crossentropy"
    model = keras.Sequential(layers, name="textsweep_lstm")
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=loss, metrics=["accuracy"])
    return model


def check_output_fits(output: str, num_classes: int) -> None:
    """Refuse an output layer that cannot tell `num_classes` classes apart."""
    if num_classes < 2:
        raise ConfigError(f"the data has {num_classes} class(es); a classifier needs at least 2 (check data.label_column)")
    if output == "sigmoid" and num_classes > 2:
        raise ConfigError(
            f"defaults.output: sigmoid is a single unit for two classes, but the data has {num_classes} classes; "
            "set defaults.output: softmax (one unit per class)"
        )


# ---------------------------------------------------------------- KerasTuner seam


def declare_hyperparameter(hp: kt.HyperParameters, name: str, entry: SpaceEntry, integer: bool, default: Any) -> Any:
    """Register one `search.space` entry with KerasTuner and return the trial's value.

    `default` is the sweep file's value: KerasTuner's grid starts from the hyperparameters'
    defaults, and textsweep's other oracles run them as trial 0 (config.py widens a range that
    does not hold its default).
    """
    if isinstance(default, bool):
        return hp.Boolean(name, default=default)
    if entry.values is not None:
        values = [int(v) for v in entry.values] if integer else list(entry.values)
        return hp.Choice(name, values, default=int(default) if integer else default)
    sampling = entry.sampling
    if integer:
        step = int(entry.step) if entry.step is not None else None
        return hp.Int(name, int(entry.min), int(entry.max), step=step, sampling=sampling, default=int(default))
    return hp.Float(name, entry.min, entry.max, step=entry.step, sampling=sampling, default=default)


def params_from_hp(hp: kt.HyperParameters, defaults: TrainingParams, space: dict[str, SpaceEntry]) -> TrainingParams:
    """The trial's full params: searched values from `hp`, everything else from `defaults`."""
    integer_params = {name for name in SWEPT_PARAMS if type(getattr(defaults, name)) is int}
    searched = {
        name: declare_hyperparameter(hp, name, entry, name in integer_params, getattr(defaults, name))
        for name, entry in space.items()
    }
    return params_with(defaults, searched)


class LstmHyperModel(kt.HyperModel):
    """`build` maps `hp` to params; `fit` caps and pads the shared encoded data for the trial."""

    # Trials whose params stay resolved: KerasTuner calls `build` and `fit` (and textsweep's
    # hooks call `params`) separately for one trial.
    RESOLVED_KEPT = 32

    def __init__(self, defaults: TrainingParams, space: dict[str, SpaceEntry], num_classes: int = 2,
                 vocabulary_sizes: dict[str, int] | None = None):
        super().__init__(name="textsweep_lstm", tunable=True)
        check_output_fits(defaults.output, num_classes)  # before any trial starts
        self.defaults = defaults
        self.space = space
        self.num_classes = num_classes
        # Ids at or above the vocabulary's size never occur: a larger max_features only adds
        # embedding rows no text uses (and memory), so a trial's max_features is capped to it
        # (EncodedSplits.vocabulary_sizes: one size per tokenizer kind).
        self.vocabulary_sizes = vocabulary_sizes or {}
        self._resolved: dict[tuple, TrainingParams] = {}

    def params(self, hp: kt.HyperParameters) -> TrainingParams:
        """The trial's params, resolved once per set of hp values.

        An `hp` missing a searched name (KerasTuner's first build) is resolved afresh, so that it
        gets the declarations; once it holds every name, declaring them again is a no-op.
        """
        declared = all(name in hp.values for name in self.space)
        if declared and (params := self._resolved.get(self._trial_key(hp))) is not None:
            return params
        params = params_from_hp(hp, self.defaults, self.space)
        size = self.vocabulary_sizes.get(params.tokenizer)
        if size is not None and params.max_features > size:
            params = params.model_copy(update={"max_features": size})
        if len(self._resolved) >= self.RESOLVED_KEPT:
            self._resolved.pop(next(iter(self._resolved)))  # the oldest trial
        self._resolved[self._trial_key(hp)] = params
        return params

    @staticmethod
    def _trial_key(hp: kt.HyperParameters) -> tuple:
        return tuple(sorted((name, repr(value)) for name, value in hp.values.items()))

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        params = self.params(hp)
        try:
            return build_model(params, self.num_classes)
        except Exception as exc:  # the weights may not fit on the GPU either
            interrupts.raise_if_pending(exc)  # a second Ctrl-C, which TensorFlow may have replaced
            raise kt.errors.FailedTrialError(trial_failure(exc, params)) from exc

    def fit(self, hp: kt.HyperParameters, model: keras.Model, encoded: EncodedSplits, **fit_kwargs: Any):
        """Train one trial. Any failure becomes KerasTuner's `FailedTrialError`, so the trial is
        recorded as FAILED, the sweep goes on, and the oracle counts consecutive failures."""
        params = self.params(hp)
        try:
            history = fit_model(model, params, encoded, **fit_kwargs)
        except Exception as exc:  # out of memory, a bad kernel, a bug: one trial's problem
            interrupts.raise_if_pending(exc)  # a second Ctrl-C, which TensorFlow may have replaced
            raise kt.errors.FailedTrialError(trial_failure(exc, params)) from exc
        losses = history.history.get("loss", [])
        if any(math.isnan(loss) for loss in losses):
            first = next(i for i, loss in enumerate(losses) if math.isnan(loss))
            raise kt.errors.FailedTrialError(
                f"loss became NaN at epoch {first}: the model diverged (lower defaults.learning_rate, "
                "or narrow the search space)"
            )
        return history


def trial_failure(exc: Exception, params: TrainingParams) -> str:
    """One line on why a trial failed; for running out of (GPU) memory, what to lower."""
    import tensorflow as tf

    if isinstance(exc, tf.errors.ResourceExhaustedError) or "OOM when allocating" in str(exc):
        device = "GPU" if tf.config.list_logical_devices("GPU") else "host"
        return (
            f"out of {device} memory (ResourceExhaustedError) with batch_size={params.batch_size}, "
            f"max_features={params.max_features}, embed_dim={params.embed_dim}, lstm_out={params.lstm_out}: "
            "lower them in search.space (or set defaults.mixed_precision: true on a GPU); the sweep goes on"
        )
    return f"{type(exc).__name__}: {exc}"


class InterruptBeforeBatch(keras.callbacks.Callback):
    """Before every batch, the safe point of a fit: Ctrl-C or SIGTERM received meanwhile ends it
    (textsweep.interrupts). Not after the batch: Keras may run end-of-batch hooks in a thread."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        interrupts.raise_if_pending()

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        interrupts.raise_if_pending()


# Validation only runs the model forward, and no layer depends on the batch, so a larger batch
# gives the same predictions in fewer steps.
VALIDATION_BATCH_SIZE = 512


def fit_model(model: keras.Model, params: TrainingParams, encoded: EncodedSplits, **fit_kwargs: Any):
    """Train on the capped, padded training split; validate on the validation split.

    The validation split is always padded to the full `maxlen`, as serving and the test
    evaluation pad, also when training batches are length-bucketed (`params.length_buckets`):
    the model then masks the padding, so the two paddings give the same predictions.
    """
    encoded, maxlen = encoded.seen_by(params), encoded.maxlen_for(params)
    train = encoded.dataset(
        "train", params.max_features, maxlen, params.batch_size,
        shuffle=True, seed=params.seed, length_buckets=params.length_buckets,
    )
    val = encoded.dataset("val", params.max_features, maxlen, max(params.batch_size, VALIDATION_BATCH_SIZE))
    fit_kwargs.setdefault("epochs", params.epochs)
    fit_kwargs.setdefault("verbose", 0)
    fit_kwargs["callbacks"] = [*fit_kwargs.get("callbacks", ()), InterruptBeforeBatch()]
    with interrupts.deferred():  # a signal inside TensorFlow would break it (textsweep.interrupts)
        return model.fit(train, validation_data=val, shuffle=False, **fit_kwargs)  # `train` shuffles itself
