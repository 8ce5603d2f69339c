import keras_tuner as kt
import numpy as np
import pytest

from textsweep.config import SpaceEntry, TrainingParams
from textsweep.errors import ConfigError
from textsweep.model import LstmHyperModel, build_model, lstm_kernel, params_from_hp


def layer_summary(model):
    return [(type(layer).__name__, layer.count_params()) for layer in model.layers]


def test_seed_a_architecture_and_parameter_count():
    model = build_model(TrainingParams())
    # The masked default hands its LSTM right-padded masks (layers.RightPaddedRNN: no weights)
    assert [name for name, _ in layer_summary(model)] == ["Embedding", "SpatialDropout1D", "RightPaddedRNN", "Dense"]
    assert model.count_params() == 511_194  # the notebook's model summary
    lstm = model.layers[2].layer
    assert (lstm.units, lstm.dropout, lstm.recurrent_dropout) == (196, 0.2, 0.2)
    unmasked = build_model(TrainingParams(length_buckets=False))
    assert [name for name, _ in layer_summary(unmasked)] == ["Embedding", "SpatialDropout1D", "LSTM", "Dense"]
    assert unmasked.count_params() == 511_194
    assert model.loss == "sparse_categorical_crossentropy"


def test_seed_b_is_reachable_through_params():
    params = TrainingParams(max_features=5000, embed_dim=32, lstm_out=100, spatial_dropout=0, dropout=0,
                            recurrent_dropout=0, output="sigmoid", batch_size=64, epochs=3, maxlen=500, seed=7)
    model = build_model(params)
    assert [name for name, _ in layer_summary(model)] == ["Embedding", "RightPaddedRNN", "Dense"]  # masked: the default
    assert model.count_params() == 5000 * 32 + 4 * (100 * (32 + 100) + 100) + 101
    assert model.loss == "binary_crossentropy"


def test_softmax_has_one_unit_per_class():
    two, four = build_model(TrainingParams(), 2), build_model(TrainingParams(), 4)
    assert two.count_params() == 511_194 and two.output_shape == (None, 2)
    assert four.output_shape == (None, 4) and four.layers[-1].activation.__name__ == "softmax"
    assert four.count_params() == 511_194 + 2 * (196 + 1)  # two more units on the 196 LSTM outputs
    assert four.loss == "sparse_categorical_crossentropy"
    labels = np.array([0, 3, 1, 2])  # int class indices, as for two classes
    assert np.isfinite(four.evaluate(np.ones((4, 5), "int32"), labels, verbose=0)[0])


def test_sigmoid_stays_binary_and_more_classes_are_refused_with_the_fix():
    sigmoid = TrainingParams(output="sigmoid", embed_dim=4, lstm_out=4)
    assert build_model(sigmoid, 2).output_shape == (None, 1)
    with pytest.raises(ConfigError, match="data has 3 classes; set defaults.output: softmax"):
        build_model(sigmoid, 3)
    with pytest.raises(ConfigError, match="defaults.output: softmax"):
        LstmHyperModel(sigmoid, SPACE, num_classes=5)  # refused before any trial runs
    with pytest.raises(ConfigError, match="at least 2"):
        build_model(TrainingParams(), 1)


def test_hypermodel_builds_for_its_number_of_classes():
    hp = kt.HyperParameters()
    model = LstmHyperModel(TrainingParams(embed_dim=4, lstm_out=4), SPACE, num_classes=3).build(hp)
    assert model.output_shape == (None, 3)


def test_build_is_seeded():
    a, b = build_model(TrainingParams(embed_dim=4, lstm_out=4)), build_model(TrainingParams(embed_dim=4, lstm_out=4))
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_lstm_kernel_on_this_cpu():
    # No GPU here: Keras runs its step loop, per-gate with recurrent dropout. On a (forced) GPU,
    # tests/test_gpu.py.
    assert lstm_kernel(TrainingParams(recurrent_dropout=0.2)) == "generic"
    assert lstm_kernel(TrainingParams(recurrent_dropout=0.0)) == "fused"
    assert lstm_kernel(TrainingParams(recurrent_dropout=0.0, length_buckets=False)) == "fused"


def test_default_params_bucket_and_mask_and_false_is_seed_a_unmasked():
    assert TrainingParams().length_buckets is True
    masked, seed_a = build_model(TrainingParams()), build_model(TrainingParams(length_buckets=False))
    # Both leave the choice to Keras ("auto"): cuDNN on a GPU wherever recurrent_dropout is 0
    assert masked.layers[0].mask_zero and masked.layers[2].layer.use_cudnn == "auto"
    assert not seed_a.layers[0].mask_zero and seed_a.layers[2].use_cudnn == "auto"
    assert masked.count_params() == seed_a.count_params() == 511_194  # a mask adds no weights


def test_a_texts_probabilities_do_not_depend_on_how_far_it_is_padded(review_rows):
    """Alone padded to its own length (a length bucket), or among longer texts padded to maxlen
    (validation, test), or through serving: the same probabilities, for the default params."""
    from textsweep.config import DataConfig
    from textsweep.data import prepare
    from textsweep.model import fit_model
    from textsweep.serving import class_probabilities
    from textsweep.text import cap_ids, encode_splits, pad

    data = prepare(review_rows(600), DataConfig(source="mem"))
    encoded = encode_splits(data)
    params = TrainingParams(max_features=300, embed_dim=8, lstm_out=8, epochs=2)  # seed A's settings, tiny
    model = build_model(params)
    fit_model(model, params, encoded)
    maxlen = encoded.resolve_maxlen(params.max_features, params.maxlen)
    in_batch = model.predict(encoded.arrays("val", params.max_features, maxlen)[0], verbose=0)
    sequences = cap_ids(encoded.val, params.max_features)
    short = [i for i, seq in enumerate(sequences) if 0 < len(seq) < maxlen // 2][:8]
    assert short  # texts under half of maxlen, in a batch padded to maxlen (the longest text's length)
    for i in short:
        alone = model.predict(pad([sequences[i]], len(sequences[i])), verbose=0)
        np.testing.assert_allclose(alone[0], in_batch[i], atol=1e-5)

    vocabulary = encoded.vocabulary.capped(params.max_features, maxlen)
    texts = data.val.texts
    served_alone = np.vstack([class_probabilities(model, vocabulary, [texts[i]]) for i in short])
    np.testing.assert_allclose(served_alone, class_probabilities(model, vocabulary, texts)[short], atol=1e-5)
    np.testing.assert_allclose(served_alone, in_batch[short], atol=1e-5)

    # The seed-exact unmasked model (length_buckets: false) does see the padding.
    unmasked = build_model(params.model_copy(update={"length_buckets": False}))
    i = short[0]
    assert not np.allclose(unmasked.predict(pad([sequences[i]], len(sequences[i])), verbose=0)[0],
                           unmasked.predict(pad([sequences[i]], maxlen), verbose=0)[0], atol=1e-5)


SPACE = {
    "max_features": SpaceEntry(values=[1000, 2000]),
    "embed_dim": SpaceEntry(min=32, max=256, step=32),
    "dropout": SpaceEntry(min=0.0, max=0.5, step=0.1),
    "batch_size": SpaceEntry(min=16, max=256, sampling="log"),
}


def test_hp_mapping_declares_only_the_searched_params_and_keeps_defaults():
    hp = kt.HyperParameters()
    params = params_from_hp(hp, TrainingParams(), SPACE)
    declared = {p.name: type(p).__name__ for p in hp.space}
    assert declared == {"max_features": "Choice", "embed_dim": "Int", "dropout": "Float", "batch_size": "Int"}
    assert hp.space[3].sampling == "log"
    # the declarations' defaults are the sweep file's defaults: trial 0 of every sweep, grid's start
    assert [p.default for p in hp.space] == [2000, 128, 0.2, 32]
    assert (params.max_features, params.embed_dim, params.dropout, params.batch_size) == (2000, 128, 0.2, 32)
    assert (params.lstm_out, params.spatial_dropout, params.recurrent_dropout, params.epochs) == (196, 0.4, 0.2, 7)


def test_hp_values_become_the_trial_params():
    hp = kt.HyperParameters()
    params_from_hp(hp, TrainingParams(), SPACE)
    hp.values.update({"max_features": 2000, "embed_dim": 96, "dropout": 0.3, "batch_size": 100})
    params = LstmHyperModel(TrainingParams(), SPACE).params(hp)
    assert (params.max_features, params.embed_dim, params.dropout, params.batch_size) == (2000, 96, 0.3, 100)
    model = LstmHyperModel(TrainingParams(), SPACE).build(hp)
    assert model.layers[0].output_dim == 96 and model.layers[0].input_dim == 2000


def test_trial_params_are_resolved_once_per_trial_and_fresh_hp_still_gets_declared():
    hypermodel = LstmHyperModel(TrainingParams(), SPACE)
    for _ in range(2):  # KerasTuner's first build passes an empty hp: each must get the declarations
        fresh = kt.HyperParameters()
        hypermodel.params(fresh)
        assert {p.name for p in fresh.space} == set(SPACE)
    hp = kt.HyperParameters()
    first = hypermodel.params(hp)
    assert hypermodel.params(hp) is first  # build, fit and the hooks share one resolution
    hp.values["embed_dim"] = 96
    other = hypermodel.params(hp)
    assert other is not first and other.embed_dim == 96
    hp.values["embed_dim"] = first.embed_dim
    assert hypermodel.params(hp) is first
    for size in range(100):  # many trials: the cache stays small
        hp.values["batch_size"] = 16 + size
        hypermodel.params(hp)
    assert len(hypermodel._resolved) <= LstmHyperModel.RESOLVED_KEPT


def test_learning_rate_and_a_bidirectional_lstm_are_searchable():
    space = {"learning_rate": SpaceEntry(min=1e-4, max=1e-2, sampling="log"), "bidirectional": SpaceEntry(values=[0, 1])}
    hp = kt.HyperParameters()
    params = params_from_hp(hp, TrainingParams(), space)
    declared = {p.name: type(p).__name__ for p in hp.space}
    assert declared == {"learning_rate": "Float", "bidirectional": "Boolean"} and hp.space[0].sampling == "log"
    assert (params.learning_rate, params.bidirectional) == (0.001, False)  # the defaults: trial 0
    hp.values.update({"learning_rate": 0.005, "bidirectional": True})
    params = params_from_hp(hp, TrainingParams(), space)
    assert (params.learning_rate, params.bidirectional) == (0.005, True)
    model = build_model(params)
    assert type(model.layers[2].layer).__name__ == "Bidirectional"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.005)
    # twice the LSTM's weights: seed A's LSTM(196) over 128 inputs, both ways
    assert model.count_params() == 2000 * 128 + 2 * 4 * (196 * (128 + 196) + 196) + (2 * 196 + 1) * 2
