"""The one Keras layer textsweep adds: a masked RNN fed the way cuDNN accepts, whatever the padding.

Keras' TensorFlow backend runs an LSTM on cuDNN only when its mask is right-padded (contiguous
`True`s, then `False`s) and no row is fully masked; otherwise cuDNN stops at run time on
`_assert_valid_mask` ("You are passing a RNN mask that does not correspond to right-padded
sequences"). textsweep pre-pads, as seed A's `pad_sequences` does, and a text may have no known
word (an empty text, or every word outside the vocabulary), so `RightPaddedRNN` wraps the LSTM and,
inside the model:
1. moves each row's unmasked steps to the front, in order, and its padding to the end;
2. unmasks the first step of a row that has no unmasked step, so that cuDNN never sees a fully
   masked row, and zeroes that row's output afterwards: a masked Keras RNN returns its initial
   (zero) state for such a row, so the answer is the one the plain masked LSTM gives.
A masked LSTM carries its state over masked steps, so where the padding sits does not change its
output: the wrapped LSTM answers as the unwrapped one does on the same input (tests/test_gpu.py).
Being inside the model, the rule holds for every caller at once: training batches, validation,
test evaluation, a reloaded `.keras` file and a served model, which is why it is a layer and not a
step of the input pipeline. No Keras layer does this; `keras.layers.Masking` only derives a mask.

A model saved by textsweep before this layer existed (a masked LSTM with `use_cudnn=False`, which
Keras 3's `LSTM.get_config` does not save) reloads with `use_cudnn="auto"`; `keep_legacy_lstms_off_cudnn`
puts such layers back on the step loop.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="textsweep")
class RightPaddedRNN(keras.layers.Wrapper):
    """Runs the wrapped RNN (an LSTM or a `Bidirectional` one, `return_sequences=False`) on its
    masked input right-padded, with no fully masked row (module docstring)."""

    def __init__(self, layer: keras.Layer, **kwargs: Any):
        super().__init__(layer, **kwargs)
        self.supports_masking = True

    def call(self, inputs: Any, mask: Any = None, training: bool | None = None) -> Any:
        if mask is None:
            return self.layer(inputs, training=training)
        steps = ops.shape(inputs)[1]
        positions = ops.expand_dims(ops.arange(steps, dtype="int32"), 0)
        # Unmasked steps sort first, each group in its own order: the keys are all distinct.
        keys = ops.where(mask, positions, positions + steps)
        order = ops.argsort(keys, axis=1)
        right_padded = ops.take_along_axis(inputs, ops.expand_dims(order, -1), axis=1)
        right_mask = ops.take_along_axis(mask, order, axis=1)
        has_steps = ops.any(right_mask, axis=1)
        # A row without steps runs one step over its padding; its output is zeroed below.
        right_mask = ops.logical_or(right_mask, ops.equal(positions, 0))
        outputs = self.layer(right_padded, mask=right_mask, training=training)
        return outputs * ops.cast(ops.expand_dims(has_steps, -1), outputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None  # the wrapped RNN returns one vector per row


def nested_layers(layers: list[keras.Layer]) -> list[keras.Layer]:
    """The layers and every layer inside them (`Bidirectional`'s two directions, a wrapper's layer)."""
    found = []
    for layer in layers:
        found.append(layer)
        if isinstance(layer, keras.layers.Bidirectional):
            found += nested_layers([layer.forward_layer, layer.backward_layer])
        elif isinstance(layer, keras.layers.Wrapper):
            found += nested_layers([layer.layer])
    return found


def lstm_layers(model: keras.Model) -> list[keras.layers.LSTM]:
    """Every LSTM in the model, inside `Bidirectional` and `RightPaddedRNN` too."""
    return [layer for layer in nested_layers(model.layers) if isinstance(layer, keras.layers.LSTM)]


def keep_legacy_lstms_off_cudnn(model: keras.Model) -> keras.Model:
    """A model saved before `RightPaddedRNN` feeds its LSTM pre-padded masks: keep it on the step
    loop (`use_cudnn=False`, as it was built), since its reloaded `"auto"` would hand them to cuDNN
    on a GPU. Models with the wrapper, and unmasked ones, are left as they are."""
    if any(isinstance(layer, RightPaddedRNN) for layer in model.layers):
        return model
    embeddings = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    if any(getattr(layer, "mask_zero", False) for layer in embeddings):
        for lstm in lstm_layers(model):
            lstm.use_cudnn = False
    return model
