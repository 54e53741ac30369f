"""Dense Keras models used by the examples; `keras_str.sparsify` makes them sparse."""

import keras
from keras import layers


def lenet_300_100(input_shape=(28, 28, 1), num_classes=10):
    """The LeNet-300-100 MLP of the pruning literature."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Flatten(),
            layers.Dense(300, activation="relu", name="fc1"),
            layers.Dense(100, activation="relu", name="fc2"),
            layers.Dense(num_classes, name="logits"),
        ],
        name="lenet_300_100",
    )


def small_cnn(input_shape=(28, 28, 1), num_classes=10):
    """Conv32-Pool-Conv64-Pool-Dense64-Dense, 122k weights."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(32, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu", name="fc1"),
            layers.Dense(num_classes, name="logits"),
        ],
        name="small_cnn",
    )


MODELS = {
    "lenet_300_100": lenet_300_100,
    "small_cnn": small_cnn,
}
