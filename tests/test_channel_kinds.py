"""The channel taxonomy shrink_channels and the in-step channel MACs share."""

import keras
import pytest

import keras_str
from keras_str.core.channel_kinds import channel_kind
from keras_str.core.channel_kinds import computes_as
from keras_str.core.channel_kinds import folds_exactly
from keras_str.core.channel_kinds import producer_kind

IMAGE = (None, 8, 8, 4)


@pytest.mark.parametrize(
    "layer, kind",
    [
        (keras.layers.Conv2D(6, 3), "kernel"),
        (keras_str.STRConv2D(6, 3), "kernel"),
        (keras.layers.Dense(6, activation="softmax"), "kernel"),
        (keras.layers.DepthwiseConv2D(3), "depthwise"),
        (keras.layers.BatchNormalization(), "batch_norm"),
        (keras.layers.ZeroPadding2D(), "padding"),
        (keras.layers.MaxPooling2D(), "preserving"),
        (keras.layers.ReLU(), "elementwise"),
        (keras.layers.Flatten(), "flatten"),
    ],
)
def test_one_input_kinds(layer, kind):
    assert channel_kind(layer, [IMAGE]) == (kind, None)


def test_merges_need_equal_shapes_and_concatenation_the_last_axis():
    assert channel_kind(keras.layers.Add(), [IMAGE, IMAGE]) == ("merge", None)
    kind, why = channel_kind(keras.layers.Add(name="add"), [IMAGE, (None, 8, 8, 1)])
    assert kind is None and why == "'add' broadcasts its inputs"
    assert channel_kind(keras.layers.Concatenate(), [IMAGE, IMAGE]) == ("concatenate", None)
    assert channel_kind(keras.layers.Concatenate(axis=1), [IMAGE, IMAGE])[0] is None


def test_what_keeps_its_channels_says_why():
    grouped = keras.layers.Conv2D(6, 3, groups=2, name="grouped")
    assert channel_kind(grouped, [IMAGE]) == (None, "Conv2D layer 'grouped' keeps its channels")
    shared = keras.layers.Conv2D(6, 3, name="shared")
    assert channel_kind(shared, [IMAGE], calls=2)[1] == (
        "layer 'shared' is shared (called more than once)"
    )
    softmax = keras.layers.Activation("softmax")
    assert channel_kind(softmax, [IMAGE])[0] is None
    multiplied = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)
    assert producer_kind(multiplied) is None
    first = keras.layers.Conv2D(6, 3, data_format="channels_first")
    assert channel_kind(first, [(None, 4, 8, 8)])[0] is None


def test_a_subclass_computes_as_itself():
    class Scaled(keras.layers.Dense):
        pass

    assert computes_as(keras_str.STRDense(4)) is keras.layers.Dense
    assert computes_as(Scaled(4)) is Scaled
    assert channel_kind(Scaled(4), [(None, 8)])[0] is None


def test_same_padding_folds_only_zero_constants():
    assert folds_exactly(keras.layers.Dense(4))
    assert folds_exactly(keras.layers.Conv2D(4, 3, padding="valid"))
    assert folds_exactly(keras.layers.Conv2D(4, 1, padding="same"))
    assert not folds_exactly(keras.layers.DepthwiseConv2D(3, padding="same"))
