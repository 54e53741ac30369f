"""Every model users bring, through the whole lifecycle: sparsify, train, strip, export.

    python -m benchmarks.model_zoo [--models resnet50,transformer,...] [--target 0.9]
        [--out benchmarks/results/model_zoo.md]

For each model (keras.applications built offline with `weights=None` at a
small input size, and hand-built Transformer encoder, LSTM / GRU
classifiers, Conv1D audio model, U-Net, Conv3D model and a subclassed model):
`sparsify` (in place for the subclassed one) with
ST-3-sigma at a constant target (`--target`), a few jit-compiled training
steps on random data (the in-step update sets the threshold), then
- the share of the model's weight matrices that became sparse-trainable,
- the reached sparsity of those kernels,
- strip parity (max |stripped - sparse| over a batch),
- float32 and int8 export (`export_tflite`) with its LiteRT parity (max
  |LiteRT - Keras| over max |Keras|) and the file's size over the same
  model exported without sparsity,
- the wall time of the whole row.
TensorFlow backend (export needs it); one process; random data, no download.
With `--models`, the rows of the other models already in `--out` are kept
(in the table's order), so a few rows can be measured again.
"""

import os
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "Models to run (default: all).")
flags.DEFINE_float("target", 0.9, "ST-3-sigma's constant target sparsity.")
flags.DEFINE_integer("steps", 4, "Training steps before strip and export.")
flags.DEFINE_string("out", "benchmarks/results/model_zoo.md", "Markdown output.")


def _applications(name, size):
    import keras

    def build():
        # Logits: a softmax head would hide parity behind saturated outputs.
        return getattr(keras.applications, name)(
            weights=None, input_shape=(size, size, 3), classes=10,
            classifier_activation=None)

    return build, ("image", (size, size, 3))


def _transformer():
    import keras

    tokens = keras.Input((32,), dtype="int32")
    x = keras.layers.Embedding(1000, 64)(tokens)
    for _ in range(2):
        attended = keras.layers.MultiHeadAttention(4, 16)(x, x)
        x = keras.layers.LayerNormalization()(x + attended)
        hidden = keras.layers.Dense(128, activation="relu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(64)(hidden))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(10)(x), name="transformer")


def _recurrent(layer_class):
    import keras

    def build():
        tokens = keras.Input((24,), dtype="int32")
        x = keras.layers.Embedding(500, 32)(tokens)
        x = getattr(keras.layers, layer_class)(64)(x)
        return keras.Model(tokens, keras.layers.Dense(10)(x), name=layer_class.lower())

    return build


def _audio():
    import keras

    wave = keras.Input((1024, 1))
    x = wave
    for filters in (16, 32, 64):
        x = keras.layers.Conv1D(filters, 9, strides=2, padding="same", activation="relu")(x)
        x = keras.layers.SeparableConv1D(filters, 9, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(wave, keras.layers.Dense(10)(x), name="conv1d_audio")


def _unet():
    import keras

    image = keras.Input((64, 64, 3))
    skips, x = [], image
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        skips.append(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu")(x)
    for filters, skip in zip((64, 32, 16), reversed(skips)):
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2)(x)
        x = keras.layers.Concatenate()([x, skip])
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    return keras.Model(image, keras.layers.Conv2D(10, 1)(x), name="unet")


def _conv3d():
    import keras

    clip = keras.Input((8, 32, 32, 3))
    x = keras.layers.Conv3D(16, 3, padding="same", activation="relu")(clip)
    x = keras.layers.MaxPooling3D(2)(x)
    x = keras.layers.Conv3D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    return keras.Model(clip, keras.layers.Dense(10)(x), name="conv3d")


def _subclassed():
    import keras

    class ResidualCNN(keras.Model):
        """A subclassed model: layers in attributes and a list, no graph."""

        def __init__(self):
            super().__init__(name="subclassed")
            self.stem = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")
            self.blocks = [
                keras.layers.Conv2D(32, 3, padding="same", activation="relu") for _ in range(3)
            ]
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.head = keras.layers.Dense(10)

        def call(self, images, training=None):
            x = self.stem(images)
            for block in self.blocks:
                x = x + block(x)
            return self.head(self.pool(x))

    model = ResidualCNN()
    model(keras.ops.zeros((1, 32, 32, 3)))
    return model


def model_builders():
    builders = {}
    for name, size in (
        ("MobileNetV2", 96), ("MobileNetV3Small", 96), ("MobileNetV3Large", 96),
        ("ResNet50", 64), ("EfficientNetB0", 64), ("DenseNet121", 64),
        ("ConvNeXtTiny", 64), ("Xception", 71), ("NASNetMobile", 96),
    ):
        builders[name] = _applications(name, size)[0]
    builders["transformer"] = _transformer
    builders["lstm"] = _recurrent("LSTM")
    builders["gru"] = _recurrent("GRU")
    builders["conv1d_audio"] = _audio
    builders["unet"] = _unet
    builders["conv3d"] = _conv3d
    builders["subclassed"] = _subclassed
    return builders


def random_inputs(model, batch, rng):
    import numpy as np

    if _has_graph(model):
        shape, dtype = tuple(model.inputs[0].shape[1:]), str(model.inputs[0].dtype)
    else:
        shape, dtype = tuple(next(iter(model._build_shapes_dict.values()))[1:]), "float32"
    shape = (batch,) + shape
    if "int" in dtype:
        return rng.integers(0, 100, size=shape).astype("int32")
    return rng.uniform(-1, 1, size=shape).astype("float32")


def _has_graph(model):
    import keras

    return isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"


def run_model(name, build, workdir):
    import keras
    import numpy as np

    import keras_str

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    dense = build()
    method = keras_str.ST3(FLAGS.target, keras_str.ConstantSchedule(), scope="sigma", rescale=True)
    # Subclassed models are rewritten in place (they have no graph).
    in_place = not _has_graph(dense)
    x = random_inputs(dense, 8 * FLAGS.steps, rng)
    sparse = keras_str.sparsify(dense, method=method, in_place=in_place)
    outputs = sparse(x[:2])
    y = rng.normal(size=(len(x),) + tuple(outputs.shape[1:])).astype("float32")
    sparse.compile(keras.optimizers.Adam(1e-4), "mse", jit_compile=True)
    sparse.fit(x, y, batch_size=8, epochs=1, verbose=0)
    report = keras_str.sparsity_report(sparse)
    covered = sum(row.params for row in report.rows if row.note == "")
    probe = x[:8]
    expected = keras.ops.convert_to_numpy(sparse(probe))
    plain = keras_str.strip(sparse, in_place=in_place)
    strip_diff = float(np.max(np.abs(keras.ops.convert_to_numpy(plain(probe)) - expected)))
    row = {
        "model": name,
        "kernel params": report.totals["params"],
        "sparse-trainable": covered / report.totals["params"],
        "sparsity": 1 - sum(r.nonzeros for r in report.rows if r.note == "") / max(covered, 1),
        "strip diff": strip_diff,
    }
    for precision in ("float32", "int8"):
        path = os.path.join(workdir, f"{name}_{precision}.tflite")
        try:
            exported = keras_str.export_tflite(
                plain, path, precision=precision,
                representative_data=x if precision == "int8" else None)
            row[f"{precision} size / dense"] = exported.size_ratio
            litert = keras_str.predict_tflite(path, probe)
            reference = keras.ops.convert_to_numpy(plain(probe))
            # Relative to the output scale: int8 outputs are quantized to it.
            row[f"{precision} LiteRT diff"] = float(
                np.max(np.abs(litert - reference)) / max(np.max(np.abs(reference)), 1e-12))
        except Exception as error:  # noqa: BLE001 - the table reports it
            row[f"{precision} size / dense"] = None
            row[f"{precision} LiteRT diff"] = f"{type(error).__name__}: {str(error)[:60]}"
    row["seconds"] = time.perf_counter() - start
    return row


def format_cell(value):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value.replace("|", "/").replace("\n", " ")
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) < 1e-2 and value != 0:
        return f"{value:.1e}"
    return f"{value:.3g}"


def main(argv):
    del argv
    import tempfile

    from keras_str.core.io_utils import write_text_atomic

    builders = model_builders()
    names = FLAGS.models or list(builders)
    unknown = sorted(set(names) - set(builders))
    if unknown:
        raise ValueError(f"Unknown --models {unknown}; known: {sorted(builders)}")
    columns = ["model", "kernel params", "sparse-trainable", "sparsity", "strip diff",
               "float32 size / dense", "float32 LiteRT diff", "int8 size / dense",
               "int8 LiteRT diff", "seconds"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            try:
                row = run_model(name, builders[name], workdir)
            except Exception as error:  # noqa: BLE001 - the table reports it
                traceback.print_exc()
                row = {"model": name, "strip diff": f"{type(error).__name__}: {str(error)[:80]}"}
            lines.append("| " + " | ".join(format_cell(row.get(c)) for c in columns) + " |")
            print(lines[-1], flush=True)
    lines = _keep_other_rows(FLAGS.out, lines, names, list(builders))
    header = (
        "# Model zoo (`benchmarks/model_zoo.py`)\n\n"
        f"ST-3-sigma + rescale at a constant {FLAGS.target:.0%} target, {FLAGS.steps} "
        "jit-compiled steps on random data, TensorFlow backend. `sparse-trainable`: "
        "share of the model's weight matrices in sparse layers; `sparsity`: zeros in "
        "those; `strip diff`: max |stripped - sparse|; LiteRT diffs: max |LiteRT - "
        "Keras| over max |Keras| on 8 inputs; sizes are over the same model "
        "exported without sparsity (export writes the plain file when sparsity "
        "would not make it smaller).\n\n"
    )
    write_text_atomic(FLAGS.out, header + "\n".join(lines) + "\n")
    print("\n".join(lines))


def _keep_other_rows(path, lines, measured, order):
    """`lines` plus the rows of `path` for models not measured now, in `order`."""
    rows = {line.split("|")[1].strip(): line for line in lines[2:]}
    if os.path.exists(path):
        with open(path) as existing:
            for line in existing:
                if not line.startswith("| ") or line.startswith("| model "):
                    continue
                model = line.split("|")[1].strip()
                if model not in measured:
                    rows.setdefault(model, line.rstrip("\n"))
    ranked = sorted(rows, key=lambda m: order.index(m) if m in order else len(order))
    return lines[:2] + [rows[m] for m in ranked]


if __name__ == "__main__":
    app.run(main)
