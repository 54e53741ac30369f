"""Dense Keras models used by the examples; `keras_str.sparsify` makes them sparse."""

import keras


def lenet_300_100(input_shape=(28, 28, 1), num_classes=10, keras_module=keras):
    """The LeNet-300-100 MLP of the pruning literature.

    `keras_module=tf_keras` builds the same architecture for tfmot.
    """
    k = keras_module
    return k.Sequential(
        [
            k.Input(input_shape),
            k.layers.Flatten(),
            k.layers.Dense(300, activation="relu", name="fc1"),
            k.layers.Dense(100, activation="relu", name="fc2"),
            k.layers.Dense(num_classes, name="logits"),
        ],
        name="lenet_300_100",
    )


def small_cnn(input_shape=(28, 28, 1), num_classes=10, keras_module=keras):
    """Conv32-Pool-Conv64-Pool-Dense64-Dense, 122k weights.

    `keras_module=tf_keras` builds the same architecture for tfmot.
    """
    k = keras_module
    return k.Sequential(
        [
            k.Input(input_shape),
            k.layers.Conv2D(32, 3, activation="relu", name="conv1"),
            k.layers.MaxPooling2D(),
            k.layers.Conv2D(64, 3, activation="relu", name="conv2"),
            k.layers.MaxPooling2D(),
            k.layers.Flatten(),
            k.layers.Dense(64, activation="relu", name="fc1"),
            k.layers.Dense(num_classes, name="logits"),
        ],
        name="small_cnn",
    )


# (pointwise filters, depthwise stride) of MobileNetV1's 13 blocks.
_MOBILENET_V1_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


def mobilenet_v1_xnnpack(
    input_shape=(128, 128, 3),
    num_classes=10,
    alpha=0.5,
    head=True,
    explicit_padding=True,
):
    """MobileNetV1 built to XNNPACK's sparse-inference rules.

    Unlike `keras.applications.MobileNet`, stride-2 layers pad explicitly
    by one pixel on every side (`ZeroPadding2D(1)` + `padding="valid"`),
    the entry conv sees 3 channels, and the classifier is
    `GlobalAveragePooling2D()` + `Dense` (a 1x1 conv head after pooling
    breaks XNNPACK's sparse path). With enough zeros in the 1x1 convs,
    XNNPACK runs them with sparse kernels on ARM CPUs.

    Args:
        input_shape: `(height, width, 3)`.
        num_classes: Classifier outputs.
        alpha: Width multiplier.
        head: `False` ends at the pooled features (no classifier).
        explicit_padding: `False` uses `padding="same"` on stride-2 layers,
            as `keras.applications.MobileNet` does; on even input sizes that
            pads asymmetrically and XNNPACK's sparse path does not apply.
    """
    layers = keras.layers
    inputs = keras.Input(input_shape)
    if explicit_padding:
        x = layers.ZeroPadding2D(1, name="entry_pad")(inputs)
    else:
        x = inputs
    x = layers.Conv2D(
        int(32 * alpha),
        3,
        strides=2,
        padding="valid" if explicit_padding else "same",
        use_bias=False,
        name="conv1",
    )(x)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(6.0, name="conv1_relu")(x)
    for i, (filters, stride) in enumerate(_MOBILENET_V1_BLOCKS, start=1):
        pad_explicitly = stride == 2 and explicit_padding
        if pad_explicitly:
            x = layers.ZeroPadding2D(1, name=f"dw{i}_pad")(x)
        x = layers.DepthwiseConv2D(
            3,
            strides=stride,
            padding="valid" if pad_explicitly else "same",
            use_bias=False,
            name=f"dw{i}",
        )(x)
        x = layers.BatchNormalization(name=f"dw{i}_bn")(x)
        x = layers.ReLU(6.0, name=f"dw{i}_relu")(x)
        x = layers.Conv2D(int(filters * alpha), 1, use_bias=False, name=f"pw{i}")(x)
        x = layers.BatchNormalization(name=f"pw{i}_bn")(x)
        x = layers.ReLU(6.0, name=f"pw{i}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if head:
        x = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, x, name="mobilenet_v1_xnnpack")


def resnet20(input_shape=(28, 28, 1), num_classes=10, width=16):
    """ResNet-20 for small images (He et al., 2016, the CIFAR variant).

    Three stages of three basic blocks (3x3 conv-BN-ReLU twice plus an
    identity or 1x1-conv shortcut) with `width`, `2*width` and `4*width`
    filters, global average pooling and a dense classifier: 0.27 M weights
    at `width=16`.
    """
    layers = keras.layers

    def conv_bn(x, filters, kernel_size, strides, name, relu=True):
        x = layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=name,
        )(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x) if relu else x

    inputs = keras.Input(input_shape)
    x = conv_bn(inputs, width, 3, 1, "conv1")
    for stage in range(3):
        filters = width * 2**stage
        for block in range(3):
            strides = 2 if stage > 0 and block == 0 else 1
            name = f"stage{stage + 1}_block{block + 1}"
            shortcut = x
            y = conv_bn(x, filters, 3, strides, f"{name}_conv1")
            y = conv_bn(y, filters, 3, 1, f"{name}_conv2", relu=False)
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = conv_bn(
                    shortcut, filters, 1, strides, f"{name}_shortcut", relu=False
                )
            x = layers.Add(name=f"{name}_add")([shortcut, y])
            x = layers.ReLU(name=f"{name}_out")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet20")


def mlp(input_dim=2048, hidden=(2048, 2048, 2048), num_classes=1000):
    """A plain MLP (default: 3x2048 + 1000, the sparse-FC benchmark shape)."""
    layers = keras.layers
    model = keras.Sequential([keras.Input((input_dim,))], name="mlp")
    for i, units in enumerate(hidden, start=1):
        model.add(layers.Dense(units, activation="relu", name=f"fc{i}"))
    model.add(layers.Dense(num_classes, name="logits"))
    return model


def wide_mlp(input_shape=(28, 28, 1), num_classes=10, hidden=(2048, 2048)):
    """Flatten-2048-2048-classes, 5.8 M weights: FC layers big enough to time."""
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs)
    for i, units in enumerate(hidden, start=1):
        x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="wide_mlp")


MODELS = {
    "lenet_300_100": lenet_300_100,
    "wide_mlp": wide_mlp,
    "small_cnn": small_cnn,
    "mobilenet_v1_xnnpack": mobilenet_v1_xnnpack,
    "resnet20": resnet20,
}
