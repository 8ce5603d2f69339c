"""The GPU path, checked on a CPU: what the LSTM is fed satisfies what cuDNN demands.

Keras' TensorFlow backend takes its cuDNN branch only where it sees a GPU; on this CPU it never
does, and a model that would crash on a GPU passes here. `cudnn_branch` lets Keras take that
branch on the CPU: `_is_gpu_available` answers yes, and `_cudnn_lstm` runs Keras' own mask check
(`_assert_valid_mask`: right-padded, no fully masked row) on what it is handed, counts the call,
and then raises `NotImplementedError`, which is how Keras falls back to its step loop when the
cuDNN op is missing. So every computation is Keras' real one, and an input cuDNN would refuse
fails the test exactly where it would fail on a GPU: at run time inside `fit`/`predict`.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from mlflow.tracking import MlflowClient

from textsweep.config import DataConfig, TrainingParams
from textsweep.data import prepare
from textsweep.layers import keep_legacy_lstms_off_cudnn, lstm_layers
from textsweep.model import build_model, fit_model, lstm_kernel
from textsweep.serving import class_probabilities
from textsweep.text import encode_splits

# The module holding the branch under test (it has no public name; the package re-exports a
# function called `rnn`, so it is imported by its full name).
keras_tf_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")

TINY = dict(max_features=60, embed_dim=8, lstm_out=6, recurrent_dropout=0.0, epochs=1, batch_size=32)


@dataclass
class CudnnBranch:
    calls: int = 0  # times Keras handed an LSTM to cuDNN (at trace time)
    masked_calls: int = 0


@pytest.fixture
def cudnn_branch(monkeypatch) -> CudnnBranch:
    """Keras takes its cuDNN branch on this CPU, its mask check kept (module docstring)."""
    record = CudnnBranch()

    def checking_cudnn_lstm(inputs, initial_state_h, initial_state_c, kernel, recurrent_kernel, bias, mask,
                            time_major, go_backwards, return_sequences):
        if mask is not None:
            record.masked_calls += 1
            try:
                keras_tf_rnn._assert_valid_mask(mask)  # in a graph: an op that fails when the batch runs
            except tf.errors.InvalidArgumentError as exc:  # eagerly: Keras' `lstm` would swallow it
                raise AssertionError(f"cuDNN would refuse this mask: {exc.message[:120]}") from None
        record.calls += 1
        raise NotImplementedError  # no cuDNN kernel on a CPU: Keras runs its step loop

    monkeypatch.setattr(keras_tf_rnn, "_is_gpu_available", lambda: True)
    monkeypatch.setattr(keras_tf_rnn, "_cudnn_lstm", checking_cudnn_lstm)
    return record


@pytest.fixture
def texts_with_unknown_words(review_rows) -> pd.DataFrame:
    """400 real reviews, plus rows made only of words no vocabulary of 60 keeps: fully masked rows."""
    frame = review_rows(400, seed=5)
    rare = pd.DataFrame({"text": [f"qq{i}zz xx{i}yy" for i in range(40)], "label": [i % 2 for i in range(40)]})
    return pd.concat([frame, rare], ignore_index=True)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_training_validation_test_reload_and_serving_feed_cudnn_what_it_accepts(cudnn_branch, tmp_path, bidirectional, texts_with_unknown_words):
    data = prepare(texts_with_unknown_words, DataConfig(source="mem"))
    encoded = encode_splits(data)
    params = TrainingParams(**TINY, bidirectional=bidirectional)
    maxlen = encoded.maxlen_for(params)
    test_x, _ = encoded.arrays("test", params.max_features, maxlen)
    assert (test_x == 0).all(axis=1).any()  # the test split holds texts with no known word

    model = build_model(params)
    fit_model(model, params, encoded)  # length-bucketed training batches and the padded validation split
    assert cudnn_branch.calls > 0 and cudnn_branch.masked_calls == cudnn_branch.calls
    trained = model.predict(test_x, verbose=0)

    model.save(tmp_path / "trial.keras")  # what a trial logs, reloaded as promote and serving reload it
    reloaded = keep_legacy_lstms_off_cudnn(keras.saving.load_model(tmp_path / "trial.keras", safe_mode=True))
    calls = cudnn_branch.calls
    np.testing.assert_allclose(reloaded.predict(test_x, verbose=0), trained, atol=1e-6)
    vocabulary = encoded.vocabulary.capped(params.max_features, maxlen)
    served = class_probabilities(reloaded, vocabulary, ["", "qq1zz only unknown words", data.test.texts[0]])
    assert cudnn_branch.calls > calls  # the reloaded model took the cuDNN branch too
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(served[0], served[1], atol=1e-6)  # no known word: the same answer


def plain_masked_lstm(params: TrainingParams) -> keras.Model:
    """How textsweep built the masked model before (pre-padded masks, `use_cudnn=False`)."""
    lstm = keras.layers.LSTM(params.lstm_out, dropout=params.dropout, use_cudnn=False)
    return keras.Sequential([
        keras.Input(shape=(None,), dtype="int32"),
        keras.layers.Embedding(params.max_features, params.embed_dim, mask_zero=True),
        keras.layers.SpatialDropout1D(params.spatial_dropout),
        keras.layers.Bidirectional(lstm) if params.bidirectional else lstm,
        keras.layers.Dense(2, activation="softmax", dtype="float32"),
    ])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_texts_probabilities_are_those_of_the_plain_masked_lstm_alone_or_in_a_batch(bidirectional):
    params = TrainingParams(**TINY, bidirectional=bidirectional)
    model = build_model(params)
    before = plain_masked_lstm(params)
    before.set_weights(model.get_weights())
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, params.max_features, size=n) for n in (1, 3, 9, 12)] + [np.zeros(0, np.int64)]
    batch = keras.utils.pad_sequences(rows, maxlen=12)  # pre-padded, one row with no id at all
    np.testing.assert_allclose(model.predict(batch, verbose=0), before.predict(batch, verbose=0), atol=1e-5)
    for row, padded in zip(rows, batch):
        alone = keras.utils.pad_sequences([row], maxlen=max(len(row), 1))
        np.testing.assert_allclose(model.predict(alone, verbose=0)[0], before.predict(padded[None], verbose=0)[0], atol=1e-5)
    right_padded = keras.utils.pad_sequences(rows, maxlen=12, padding="post")
    np.testing.assert_allclose(model.predict(right_padded, verbose=0), before.predict(batch, verbose=0), atol=1e-5)


def test_a_model_saved_before_the_wrapper_reloads_off_cudnn_and_answers_as_before(cudnn_branch, tmp_path):
    params = TrainingParams(**TINY)
    legacy = plain_masked_lstm(params)
    batch = keras.utils.pad_sequences([[5, 6, 7], [8], []], maxlen=6)
    with tf.device("/CPU:0"):
        expected = legacy.predict(batch, verbose=0)
    legacy.save(tmp_path / "legacy.keras")
    # Keras 3 does not save use_cudnn: reloaded as-is, the pre-padded mask goes to cuDNN and fails
    as_saved = keras.saving.load_model(tmp_path / "legacy.keras", safe_mode=True)
    assert as_saved.layers[2].use_cudnn == "auto"
    with pytest.raises((tf.errors.InvalidArgumentError, AssertionError), match="right-padded|refuse"):
        as_saved.predict(batch, verbose=0)
    calls = cudnn_branch.calls
    kept = keep_legacy_lstms_off_cudnn(keras.saving.load_model(tmp_path / "legacy.keras", safe_mode=True))
    np.testing.assert_allclose(kept.predict(batch, verbose=0), expected, atol=1e-6)
    assert cudnn_branch.calls == calls  # the step loop, as it was built


@pytest.fixture
def cudnn_answers_zeros(monkeypatch) -> list:
    """Keras' cuDNN branch on this CPU with an op that answers zeros: for what Keras accepts, not what it computes."""
    seen = []

    def zeros_cudnn_lstm(inputs, initial_state_h, initial_state_c, kernel, recurrent_kernel, bias, mask,
                         time_major, go_backwards, return_sequences):
        if mask is not None:
            keras_tf_rnn._assert_valid_mask(mask)
        seen.append(mask is not None)
        h = tf.zeros_like(initial_state_h)
        return h, tf.expand_dims(h, 1), [h, tf.zeros_like(initial_state_c)]

    monkeypatch.setattr(keras_tf_rnn, "_is_gpu_available", lambda: True)
    monkeypatch.setattr(keras_tf_rnn, "_cudnn_lstm", zeros_cudnn_lstm)
    return seen


@pytest.mark.parametrize("bidirectional", [False, True])
def test_use_cudnn_true_is_accepted_for_the_default_params_and_refused_with_recurrent_dropout(cudnn_answers_zeros, bidirectional):
    batch = keras.utils.pad_sequences([[5, 6, 7], [8], []], maxlen=6)
    params = TrainingParams(**(TINY | {"recurrent_dropout": 0.0}), bidirectional=bidirectional)
    assert lstm_kernel(params) == "cudnn"
    build_model(params, use_cudnn=True).predict(batch, verbose=0)  # Keras raises where a setting rules cuDNN out
    assert cudnn_answers_zeros and all(cudnn_answers_zeros)
    seed_a = params.model_copy(update={"recurrent_dropout": 0.2})
    assert lstm_kernel(seed_a) == "generic"
    with pytest.raises(ValueError, match="use_cudnn=True was specified"):
        build_model(seed_a, use_cudnn=True).predict(batch, verbose=0)


def test_mixed_precision_keeps_a_float32_output_and_the_next_model_float32():
    params = TrainingParams(**TINY, mixed_precision=True)
    model = build_model(params)
    assert model.layers[0].compute_dtype == "float16" and model.layers[-1].compute_dtype == "float32"
    scores = model.predict(keras.utils.pad_sequences([[5, 6, 7], []], maxlen=5), verbose=0)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    # the policy is global: a trial without mixed precision after it is all float32 again
    plain = build_model(TrainingParams(**TINY))
    assert {layer.compute_dtype for layer in plain.layers} == {"float32"}


class OutOfMemoryInOneTrial(keras.callbacks.Callback):
    """The error TensorFlow raises when a GPU's memory runs out, in the trial whose LSTM has
    recurrent_dropout 0.1 (callbacks are copied per trial, so the trial is told by its model)."""

    def on_train_batch_begin(self, batch, logs=None):
        lstms = lstm_layers(self.model)
        if lstms and lstms[0].recurrent_dropout == pytest.approx(0.1):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[32,6]")


@pytest.mark.e2e
def test_a_sweep_logs_the_kernel_each_trial_ran_on_and_an_out_of_memory_trial_fails_alone(store, cudnn_branch, texts_with_unknown_words):
    import textsweep

    config = {
        "name": "gpu-path",
        "data": {"seed": 42},
        "defaults": TINY,
        "search": {"algorithm": "grid", "max_trials": 3, "reference": False,
                   "space": {"recurrent_dropout": {"values": [0.0, 0.1, 0.2]}}},
        "registry": {"model_name": "gpu-path"},
    }
    result = textsweep.sweep(config, data=texts_with_unknown_words, quiet=True, callbacks=[OutOfMemoryInOneTrial()])
    client = MlflowClient()
    runs = client.search_runs([result.experiment_id], f"tags.`mlflow.parentRunId` = '{result.sweep_run_id}'")
    by_dropout = {float(run.data.params["recurrent_dropout"]): run for run in runs}
    assert sorted(by_dropout) == [0.0, 0.1, 0.2]
    assert by_dropout[0.0].data.params["lstm_kernel"] == "cudnn"  # as Keras ran it, on its (forced) GPU
    assert by_dropout[0.2].data.params["lstm_kernel"] == "generic"
    assert by_dropout[0.0].info.status == by_dropout[0.2].info.status == "FINISHED"
    oom = by_dropout[0.1]
    assert oom.info.status == "FAILED"
    reason = oom.data.tags["textsweep.failure_reason"]
    assert "out of host memory (ResourceExhaustedError) with batch_size=32" in reason and "lower them" in reason
    assert client.get_run(result.sweep_run_id).info.status == "FINISHED" and len(result.leaderboard) == 2
    assert by_dropout[0.0].data.tags["textsweep.gpu"] == "none"  # no real GPU in this process

    calls = cudnn_branch.calls
    answers = result.best_model().predict(["", "qq3zz", "a wonderful film"])  # the trial's reloaded model
    if result.best_params["recurrent_dropout"] == 0:
        assert cudnn_branch.calls > calls
    promotion = result.promote()  # test-split evaluation, registry, the served pyfunc
    served = textsweep.load_model("models:/gpu-path@champion").predict(["", "qq3zz", "a wonderful film"])
    assert promotion.version and served["probability"].between(0, 1).all()
    np.testing.assert_allclose(served["probability"], answers["probability"], atol=1e-5)


def test_gpu_memory_growth_is_on_by_default_and_a_user_choice_is_kept():
    probe = "import os, textsweep; print(os.environ.get('TF_FORCE_GPU_ALLOW_GROWTH'))"
    env = {k: v for k, v in os.environ.items() if k != "TF_FORCE_GPU_ALLOW_GROWTH"}
    default = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    chosen = subprocess.run([sys.executable, "-c", probe], env=env | {"TF_FORCE_GPU_ALLOW_GROWTH": "false"},
                            capture_output=True, text=True, check=True)
    assert (default.stdout.strip(), chosen.stdout.strip()) == ("true", "false")
